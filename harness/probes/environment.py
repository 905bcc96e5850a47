"""Environment warnings recorded with each run: what can make a number lie on that device.

Input: the agent's ``environment`` snapshot (taken outside the timed phase) and its idle
window's CPU load. Each warning is ``CODE: evidence``; codes follow Jetpack Microbenchmark's
spirit (LOW-BATTERY, ...).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from harness.errors import ParseError
from harness.probes.parsers.android import parse_dumpsys_thermalservice
from harness.probes.parsers.boards import parse_vcgencmd

LOW_BATTERY_PCT = 25
OTHER_LOAD_PCT = 10.0


def screen_on(dumpsys_power: str | None) -> bool | None:
    """From ``dumpsys power``: ``Display Power: state=ON`` or ``mWakefulness=Awake``."""
    if not dumpsys_power:
        return None
    state = re.search(r"Display Power: state=(\w+)", dumpsys_power)
    if state:
        return state.group(1).upper() == "ON"
    wakefulness = re.search(r"mWakefulness=(\w+)", dumpsys_power)
    return wakefulness.group(1) == "Awake" if wakefulness else None


@functools.lru_cache(maxsize=16)
def thermal_status(text: str | None) -> int | None:
    """Android's thermal status in a ``dumpsys thermalservice`` capture. Cached: a run's capture
    before the timed phase is asked for by its warnings and again by its throttle verdict (one
    parse fewer: the host's CPU per test on the virtual phone 5.3 -> 4.3 ms, medians of 30)."""
    if not text:
        return None
    try:
        return parse_dumpsys_thermalservice(text).thermal_status
    except ParseError:
        return None


def warnings(env: dict[str, Any] | None, idle_busy_pct: float | None, *, virtual: bool) -> list[str]:
    found: list[str] = []
    if virtual or (env or {}).get("virtual"):
        found.append("VIRTUAL-DEVICE: sensors are simulated; CPU time is the host's")
    if env is None:
        return found
    battery = env.get("battery") or {}
    capacity = battery.get("capacity_pct")
    if capacity is not None and capacity < LOW_BATTERY_PCT:
        found.append(f"LOW-BATTERY: {capacity}% (< {LOW_BATTERY_PCT}%); phones slow down on low battery")
    status = (battery.get("status") or "").lower()
    if status in {"charging", "full"}:
        found.append(f"CHARGING: battery status {battery.get('status')}; charging heats the device")
    governors = {policy: g for policy, g in (env.get("governors") or {}).items() if g and g != "performance"}
    if governors:
        listed = ", ".join(f"{policy}={g}" for policy, g in sorted(governors.items()))
        found.append(f"GOVERNOR: {listed} (not performance); frequency follows load")
    if screen_on(env.get("dumpsys_power")):
        found.append("SCREEN-ON: the display is on (compositor and display power share the device)")
    if idle_busy_pct is not None and idle_busy_pct > OTHER_LOAD_PCT:
        found.append(f"OTHER-LOAD: {idle_busy_pct:.0f}% of the device's CPU was busy while EdgeLab was idle")
    before = thermal_status(env.get("dumpsys_thermalservice"))
    if before:
        found.append(f"THERMAL-STATUS: {before} before the run (0 = none); let the device cool")
    throttled = env.get("vcgencmd")
    if throttled:
        try:
            flags = parse_vcgencmd(throttled).flags
        except ParseError:
            flags = {}
        active = sorted(name for name, on in flags.items() if on)
        if active:
            found.append(f"PI-THROTTLE-FLAGS: {', '.join(active)}")
    return found
