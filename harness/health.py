"""Pre-use health checks and quarantine.

Before a device's first test of a run: free disk in its workdir, battery (when it has one) and
its hottest thermal zone, in one command. A device that fails is skipped with the reason; after
QUARANTINE_AFTER failed checks in a row (connection failures included) it is quarantined: its
tests are skipped at once, naming the last problem, until ``edgelab devices --release NAME`` or
a check passes again with ``--recheck-quarantined``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.probes.thermal import to_celsius
from harness.transport.base import Transport

QUARANTINE_AFTER = 3
MIN_FREE_MB = 200
MIN_BATTERY_PCT = 15
MAX_TEMP_C = 80.0

_SCRIPT = r"""
df -Pk "$1" 2>/dev/null | awk 'NR==2 {print "free_kb=" $4}'
for f in /sys/class/power_supply/*/capacity; do
  kind=$(cat "$(dirname "$f")/type" 2>/dev/null)
  case "$kind" in [Bb]attery) echo "battery_pct=$(cat "$f")"; break ;; esac
done
hot=0
for t in /sys/class/thermal/thermal_zone*/temp; do
  [ -r "$t" ] || continue
  v=$(cat "$t" 2>/dev/null) || continue
  case "$v" in ''|*[!0-9-]*) continue ;; esac
  [ "$v" -gt "$hot" ] && hot=$v
done
echo "hottest_mc=$hot"
"""


@dataclass
class Health:
    ok: bool
    problems: list[str] = field(default_factory=list)
    facts: dict[str, float] = field(default_factory=dict)


def check(transport: Transport, workdir: str) -> Health:
    result = transport.run(["sh", "-c", _SCRIPT, "health", workdir], timeout=60)
    facts: dict[str, float] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        try:
            facts[key.strip()] = float(value)
        except ValueError:
            continue
    problems = []
    free_mb = facts.get("free_kb", 0.0) / 1024
    if "free_kb" in facts and free_mb < MIN_FREE_MB:
        problems.append(f"only {free_mb:.0f} MB free in {workdir} (< {MIN_FREE_MB} MB)")
    battery = facts.get("battery_pct")
    if battery is not None and battery < MIN_BATTERY_PCT:
        problems.append(f"battery at {battery:.0f}% (< {MIN_BATTERY_PCT}%)")
    hottest = to_celsius(facts.get("hottest_mc", 0.0))
    if hottest >= MAX_TEMP_C:
        problems.append(f"hottest thermal zone at {hottest:.0f} C (>= {MAX_TEMP_C:.0f} C)")
    return Health(not problems, problems, facts)


def _folder() -> Path:
    configured = os.environ.get("EDGELAB_HEALTH_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "edgelab" / "health"


_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def _file(device: str) -> Path:
    """One file per device name: a plain name keeps its own (``pixel8.json``); any other gets a
    digest after a '+' (a character plain names never have), so 'a b', 'a_b' and 'a/b' differ."""
    if _SAFE_NAME.fullmatch(device) and device not in (".", ".."):
        return _folder() / f"{device}.json"
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in device)[:60]
    digest = hashlib.sha256(device.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]
    return _folder() / f"{safe}+{digest}.json"


def record(device: str, ok: bool, problem: str = "") -> dict[str, Any]:
    """Count consecutive failures; returns the device's state."""
    path = _file(device)
    state = status(device)
    if ok:
        state = {"failures": 0, "quarantined": False, "last_problem": "", "since": time.time()}
    else:
        state["failures"] = int(state.get("failures", 0)) + 1
        state["last_problem"] = problem
        if state["failures"] >= QUARANTINE_AFTER:
            state["quarantined"] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(state))
    os.replace(temporary, path)
    return state


def status(device: str) -> dict[str, Any]:
    try:
        return dict(json.loads(_file(device).read_text()))
    except (OSError, ValueError):
        return {"failures": 0, "quarantined": False, "last_problem": ""}


def release(device: str) -> bool:
    """Take the device out of quarantine; True when it was in."""
    was = bool(status(device).get("quarantined"))
    _file(device).unlink(missing_ok=True)
    return was
