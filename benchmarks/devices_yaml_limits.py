"""What a hostile devices.yaml costs to refuse: a 365-byte alias bomb and a 50 MB fleet file.

Run (after ``pip install -e .``)::

    python benchmarks/devices_yaml_limits.py [--timeout-s 300]

Each case loads the file with ``harness.config.load_fleet`` in a fresh child process, which prints
its wall time for the load and its own peak resident set (VmHWM) minus the one it had before the
load; a child still loading after --timeout-s is killed, with the peak it had reached. Writes
benchmarks/results/devices_yaml_limits.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "devices_yaml_limits.json"

def bomb_text() -> str:
    """The classic bomb inside a device entry: nine levels of nine aliases, 9^9 strings expanded."""
    body, previous = ["a: &a [l,l,l,l,l,l,l,l,l]"], "a"
    for level in "bcdefghi":
        body.append(f"{level}: &{level} [" + ",".join(f"*{previous}" for _ in range(9)) + "]")
        previous = level
    return "devices:\n b:\n  kind: local\n  labels:\n" + "".join(f"   {line}\n" for line in body)


def big_fleet(path: Path, megabytes: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("devices:\n")
        index = 0
        while handle.tell() < megabytes << 20:
            handle.write(
                f"  board-{index}:\n    kind: ssh\n    host: 10.0.{index % 250}.{index % 200}\n"
                f"    user: pi\n    tags: [linux, board, shelf-{index % 40}]\n"
                f"    labels: {{soc: bcm2712, owner: team-{index % 9}, note: '{'x' * 200}'}}\n"
            )
            index += 1


_CHILD = r"""
import sys, time
from harness.config import load_fleet
from harness.errors import EdgeLabError

def hwm():
    with open("/proc/self/status") as status:
        return int(next(l for l in status if l.startswith("VmHWM:")).split()[1])

before = hwm()
started = time.perf_counter()
try:
    fleet = load_fleet(sys.argv[1], lab_file="/nonexistent")
    outcome = f"loaded {len(fleet.names())} devices"
except EdgeLabError as exc:
    outcome = "refused: " + str(exc)[:300]
except BaseException as exc:
    outcome = f"{type(exc).__name__}: " + str(exc)[:300]
elapsed = time.perf_counter() - started
print(f"{elapsed:.3f} {(hwm() - before) / 1024:.1f} {outcome}")
"""


def _vmhwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024
    except (OSError, StopIteration):
        return None


def measure(path: Path, timeout_s: float) -> dict[str, Any]:
    """Load in a child; a child still loading at ``timeout_s`` is killed, and the peak it had
    reached by then (read from /proc while it ran) is reported."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    started, peak = time.perf_counter(), None
    while child.poll() is None and time.perf_counter() - started < timeout_s:
        peak = _vmhwm_mb(child.pid) or peak
        time.sleep(0.5)
    if child.poll() is None:
        child.kill()
        child.wait()
        return {
            "outcome": f"still loading after {timeout_s:g} s (killed)",
            "load_s": None,
            "process_peak_mb_when_killed": None if peak is None else round(peak, 1),
        }
    stdout, stderr = child.communicate()
    lines = stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        return {
            "outcome": f"child exit {child.returncode}: {stderr.strip()[-300:]}",
            "load_s": round(time.perf_counter() - started, 1),
            "process_peak_mb": None if peak is None else round(peak, 1),
        }
    seconds, growth, outcome = lines[-1].split(" ", 2)
    return {"outcome": outcome, "load_s": float(seconds), "peak_growth_mb": float(growth)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--no-write", action="store_true")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgelab-yaml-") as scratch:
        bomb = Path(scratch) / "bomb.yaml"
        bomb.write_text(bomb_text(), encoding="utf-8")
        big = Path(scratch) / "big.yaml"
        big_fleet(big, arguments.size_mb)
        figures = {
            "host": platform.node(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "bomb": {"bytes": bomb.stat().st_size, **measure(bomb, arguments.timeout_s)},
            "big": {"bytes": big.stat().st_size, **measure(big, arguments.timeout_s)},
        }
    print(json.dumps(figures, indent=1))
    if not arguments.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
