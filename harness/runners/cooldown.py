"""Waiting from the host for a device to cool, for runners that cannot wait on the device.

The Python agent waits on the device itself (no round trip per poll); a native runner has only
the device's shell, so the host polls the hottest thermal zone through the transport, or the
thermal HAL's temperatures (``dumpsys thermalservice``) where the phone hides its zones.
"""

from __future__ import annotations

import time

from harness.errors import ParseError
from harness.measurement import Cooldown
from harness.probes.parsers.android import parse_dumpsys_thermalservice
from harness.probes.thermal import to_celsius
from harness.transport.base import Transport

# The zones the shell may read; on a phone whose SELinux policy hides them all, the thermal HAL's.
ZONES_SCRIPT = (
    "t=$(cat /sys/class/thermal/thermal_zone*/temp 2>/dev/null); "
    'if [ -n "$t" ]; then echo "$t"; elif command -v dumpsys >/dev/null 2>&1; then '
    "echo thermalservice; dumpsys thermalservice 2>/dev/null; fi; true"
)
# How often the hottest zone is read while waiting. From the host each poll is a shell command on
# the device (a round trip and a process), so every 2 s; the agent on the device reads the zone
# files itself, so it can look four times as often and start the run within 0.5 s of the zone
# falling below the limit (at 2 s, eight phones' waits came out at exactly 6.0 or 8.0 s).
COOLDOWN_POLL_S = 2.0
AGENT_COOLDOWN_POLL_S = 0.5


def hottest_zone_c(transport: Transport) -> float | None:
    """The hottest readable thermal zone of the device, in C (None when it has none)."""
    result = transport.run(["sh", "-c", ZONES_SCRIPT], timeout=30)
    if result.stdout.startswith("thermalservice"):
        try:
            return parse_dumpsys_thermalservice(result.stdout.split("\n", 1)[1]).hottest_c
        except (ParseError, IndexError):
            return None
    values = []
    for token in result.stdout.split():
        try:
            values.append(to_celsius(int(token)))
        except ValueError:
            continue
    return max(values) if values else None


def wait_until_cool(
    transport: Transport, below_c: float, max_wait_s: float, poll_s: float = COOLDOWN_POLL_S
) -> Cooldown:
    """Poll the hottest zone until it is below ``below_c`` or ``max_wait_s`` passes (recorded)."""
    started = time.monotonic()
    start = current = hottest_zone_c(transport)
    while current is not None and current >= below_c and time.monotonic() - started < max_wait_s:
        time.sleep(poll_s)
        current = hottest_zone_c(transport)
    reached = current is None or current < below_c
    return Cooldown(below_c, start, current, round(time.monotonic() - started, 3), reached)
