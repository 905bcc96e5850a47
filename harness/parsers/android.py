"""Android ``dumpsys`` outputs (meminfo, battery, thermalservice) and ``getprop``."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from harness.errors import ParseError
from harness.parsers._common import Result, require_text, snake, to_float, to_int

# ---------------------------------------------------------------------------------------------
# dumpsys meminfo <pid|package>

MEMINFO = "dumpsys-meminfo"
_MEMINFO_HINT = "is this the output of 'adb shell dumpsys meminfo <pid|package>'?"
_MEMINFO_CAPTURE = "capture 'adb shell dumpsys meminfo <pid|package>'"


class AppSummaryRow(Result):
    pss_kb: int | None = None
    rss_kb: int | None = None


class DumpsysMeminfo(Result):
    pid: int | None = None
    process: str | None = None
    total_pss_kb: int | None = None
    total_rss_kb: int | None = None  # Android 12+ only
    total_swap_pss_kb: int | None = None
    total_swap_kb: int | None = None  # "TOTAL SWAP (KB)" of versions without SwapPss
    java_heap_pss_kb: int | None = None
    java_heap_rss_kb: int | None = None
    native_heap_pss_kb: int | None = None
    native_heap_rss_kb: int | None = None
    graphics_pss_kb: int | None = None
    graphics_rss_kb: int | None = None
    code_pss_kb: int | None = None
    stack_pss_kb: int | None = None
    private_other_pss_kb: int | None = None
    system_pss_kb: int | None = None
    native_heap_size_kb: int | None = None
    native_heap_alloc_kb: int | None = None
    native_heap_free_kb: int | None = None
    dalvik_heap_size_kb: int | None = None
    dalvik_heap_alloc_kb: int | None = None
    dalvik_heap_free_kb: int | None = None
    columns: list[str] = Field(default_factory=list)
    table: dict[str, dict[str, int]] = Field(default_factory=dict)
    app_summary: dict[str, AppSummaryRow] = Field(default_factory=dict)
    objects: dict[str, int] = Field(default_factory=dict)


_MEMINFO_HEADER = re.compile(r"\*\*\s*MEMINFO in pid\s+(\d+)\s*\[([^\]]*)\]\s*\*\*")
_ROW = re.compile(r"^(\s*)(\S.*?)\s+(-?\d+(?:\s+-?\d+)*)$")
_KB_PAIR = re.compile(r"([A-Za-z][\w .()/-]*?):\s+(-?\d+)")


def _ends(line: str, pattern: str) -> list[tuple[int, str]]:
    """(end column, text) of each match of ``pattern`` in ``line``."""
    return [(match.end(), match.group(0)) for match in re.finditer(pattern, line)]


def _nearest(ends: list[int], position: int) -> int:
    return min(range(len(ends)), key=lambda i: abs(ends[i] - position))


def _table_columns(header1: str, header2: str, dashes: str) -> tuple[list[str], list[int]]:
    """Column names (``pss_total``, ``private_dirty``, ``heap_size``...) and their right edges."""
    edges = [end for end, _ in _ends(dashes, r"-+")]
    names: list[list[str]] = [[] for _ in edges]
    for header in (header1, header2):
        for end, word in _ends(header, r"\S+"):
            index = _nearest(edges, end)
            if abs(edges[index] - end) <= 3:
                names[index].append(word)
    return [snake(" ".join(parts)) or f"column{i}" for i, parts in enumerate(names)], edges


def _table(lines: list[str]) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The category table: two header lines, a dashes line, then rows up to TOTAL."""
    columns: list[str] = []
    table: dict[str, dict[str, int]] = {}
    for index, line in enumerate(lines):
        if not re.fullmatch(r"\s*-{3,}(\s+-{3,})+", line) or index < 2:
            continue
        columns, edges = _table_columns(lines[index - 2], lines[index - 1], line)
        for row_line in lines[index + 1 :]:
            match = _ROW.match(row_line)
            if match is None:
                if row_line.strip():
                    break
                continue
            values: dict[str, int] = {}
            for end, number in _ends(row_line, r"(?<!\S)-?\d+(?!\S)"):
                if end > match.start(3):
                    values[f"{columns[_nearest(edges, end)]}_kb"] = int(number)
            name = match.group(2).strip()
            table[name] = values
            if name == "TOTAL":
                break
        break
    return columns, table


def parse_dumpsys_meminfo(text: str) -> DumpsysMeminfo:
    """Parse ``dumpsys meminfo <pid|package>`` (one process; the first block if several)."""
    # Blank lines carry nothing in this format (and some captures double them): drop them.
    lines = [line for line in require_text(MEMINFO, text, _MEMINFO_CAPTURE) if line.strip()]
    joined = "\n".join(lines)
    if "No process found for" in joined:
        raise ParseError(
            MEMINFO, f"dumpsys says 'No process found'; the process was not running. {_MEMINFO_HINT}"
        )
    if "Total PSS by process" in joined and not _MEMINFO_HEADER.search(joined):
        raise ParseError(
            MEMINFO, "this is the system-wide summary, not one process; run 'dumpsys meminfo <pid|package>'"
        )
    found: dict[str, Any] = {}
    start = 0
    for index, line in enumerate(lines):
        if match := _MEMINFO_HEADER.search(line):
            if "pid" in found:  # a second process: stop at its header
                lines = lines[:index]
                break
            found["pid"], found["process"] = int(match.group(1)), match.group(2).strip() or None
            start = index + 1
    lines = lines[start:]

    columns, table = _table(lines)
    found["columns"], found["table"] = columns, table

    summary, totals = _app_summary(lines)
    found["app_summary"] = summary
    found.update(totals)
    for key in ("java_heap", "native_heap", "graphics", "code", "stack", "private_other", "system"):
        row = summary.get(key)
        if row is not None:
            found[f"{key}_pss_kb"] = row.pss_kb
            if key in ("java_heap", "native_heap", "graphics"):
                found[f"{key}_rss_kb"] = row.rss_kb
    for row_name, prefix in (("Native Heap", "native_heap"), ("Dalvik Heap", "dalvik_heap")):
        row_values = table.get(row_name, {})
        for part in ("size", "alloc", "free"):
            found[f"{prefix}_{part}_kb"] = row_values.get(f"heap_{part}_kb")
    total_row = table.get("TOTAL", {})
    if found.get("total_pss_kb") is None:
        found["total_pss_kb"] = total_row.get("pss_total_kb", total_row.get("pss_kb"))
    if found.get("total_rss_kb") is None:
        found["total_rss_kb"] = total_row.get("rss_total_kb")
    found["objects"] = _objects(lines)
    if "pid" not in found and not table and found.get("total_pss_kb") is None:
        raise ParseError(
            MEMINFO, f"no '** MEMINFO in pid N [name] **' header and no TOTAL row found; {_MEMINFO_HINT}"
        )
    if found.get("total_pss_kb") is None:
        raise ParseError(MEMINFO, f"no TOTAL PSS found (the output looks truncated); {_MEMINFO_HINT}")
    return DumpsysMeminfo.model_validate(found)


def _app_summary(lines: list[str]) -> tuple[dict[str, AppSummaryRow], dict[str, int | None]]:
    summary: dict[str, AppSummaryRow] = {}
    totals: dict[str, int | None] = {}
    header = next((i for i, line in enumerate(lines) if line.strip() == "App Summary"), None)
    if header is None:
        return summary, totals
    column_ends: list[tuple[int, str]] = []
    for line in lines[header + 1 :]:
        stripped = line.strip()
        if not stripped:
            continue
        if "Pss(KB)" in line or "Rss(KB)" in line:
            column_ends = [(end, word) for end, word in _ends(line, r"\S+")]
            continue
        if set(stripped) <= {"-", " "}:
            continue
        if stripped.startswith("TOTAL"):
            for name, value in re.findall(r"(TOTAL(?: [A-Z]+)*(?: \(KB\))?):\s*(-?\d+)", line):
                key = {
                    "TOTAL": "total_pss_kb",
                    "TOTAL PSS": "total_pss_kb",
                    "TOTAL RSS": "total_rss_kb",
                    "TOTAL SWAP PSS": "total_swap_pss_kb",
                    "TOTAL SWAP (KB)": "total_swap_kb",
                }.get(name)
                if key:
                    totals[key] = int(value)
            break
        match = re.match(r"^\s*([A-Za-z][\w ]*?):((?:\s+-?\d+)*)\s*$", line)
        if match is None:
            break
        row: dict[str, int] = {}
        for end, number in _ends(line, r"(?<!\S)-?\d+(?!\S)"):
            if column_ends:
                _, word = column_ends[_nearest([e for e, _ in column_ends], end)]
                column = "rss_kb" if word.lower().startswith("rss") else "pss_kb"
            else:
                column = "pss_kb" if "pss_kb" not in row else "rss_kb"
            row[column] = int(number)
        summary[snake(match.group(1))] = AppSummaryRow.model_validate(row)
    return summary, totals


def _objects(lines: list[str]) -> dict[str, int]:
    objects: dict[str, int] = {}
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped == "Objects":
            inside = True
            continue
        if inside:
            pairs = _KB_PAIR.findall(line)
            if not pairs:  # the next section's heading
                break
            for name, value in pairs:
                objects[snake(name)] = int(value)
    return objects


# ---------------------------------------------------------------------------------------------
# dumpsys battery

BATTERY = "dumpsys-battery"
_BATTERY_HINT = "is this the output of 'adb shell dumpsys battery'?"
BATTERY_STATUS = {1: "unknown", 2: "charging", 3: "discharging", 4: "not charging", 5: "full"}
BATTERY_HEALTH = {
    1: "unknown",
    2: "good",
    3: "overheat",
    4: "dead",
    5: "over voltage",
    6: "unspecified failure",
    7: "cold",
}


class DumpsysBattery(Result):
    updates_stopped: bool = False  # "(UPDATES STOPPED": values were set by 'dumpsys battery set/unplug'
    ac_powered: bool | None = None
    usb_powered: bool | None = None
    wireless_powered: bool | None = None
    dock_powered: bool | None = None
    plugged: list[str] = Field(default_factory=list)  # of "AC", "USB", "Wireless", "Dock"
    status: int | None = None
    status_name: str | None = None
    health: int | None = None
    health_name: str | None = None
    present: bool | None = None
    level: int | None = None
    scale: int | None = None
    level_pct: float | None = None
    voltage_mv: int | None = None
    temperature_raw: int | None = None  # tenths of a degree C, as printed
    temp_c: float | None = None
    technology: str | None = None
    charge_counter_uah: int | None = None
    max_charging_current_ua: int | None = None
    max_charging_voltage_uv: int | None = None
    current_now_raw: int | None = None  # as printed (vendor unit and sign convention)
    current_now_ua: int | None = None  # raw scaled to uA when the magnitude says mA (|raw| < 10000)
    fields: dict[str, str] = Field(default_factory=dict)  # every "key: value" line, keys snake_case


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    return None


def current_to_ua(raw: int | None) -> int | None:
    """A current reading to uA: values under 10000 in magnitude are taken as mA (10 A in mA;
    10 mA in uA, below any phone's draw)."""
    if raw is None:
        return None
    return raw * 1000 if 0 < abs(raw) < 10000 else raw


def parse_dumpsys_battery(text: str) -> DumpsysBattery:
    lines = require_text(BATTERY, text, "capture 'adb shell dumpsys battery'")
    fields: dict[str, str] = {}
    stopped = False
    for line in lines:
        if "UPDATES STOPPED" in line:
            stopped = True
            continue
        match = re.match(r"^\s*([A-Za-z][\w ()/-]*?)\s*:\s*(.*?)\s*$", line)
        if match:
            fields.setdefault(snake(match.group(1)), match.group(2))
    if "level" not in fields or not ("status" in fields or "current_battery_service_state" in fields):
        raise ParseError(BATTERY, f"no 'level:' and 'status:' lines found; {_BATTERY_HINT}")
    status = to_int(fields.get("status"))
    health = to_int(fields.get("health"))
    level = to_int(fields.get("level"))
    scale = to_int(fields.get("scale"))
    voltage = to_int(fields.get("voltage"))
    if voltage is not None and voltage > 100_000:  # some vendors print uV
        voltage = round(voltage / 1000)
    elif voltage is not None and 0 < voltage < 100:  # or V
        voltage *= 1000
    temperature = to_int(fields.get("temperature"))
    current = to_int(fields.get("current_now", fields.get("battery_current", fields.get("current"))))
    powered = {
        "AC": _bool(fields.get("ac_powered")),
        "USB": _bool(fields.get("usb_powered")),
        "Wireless": _bool(fields.get("wireless_powered")),
        "Dock": _bool(fields.get("dock_powered")),
    }
    return DumpsysBattery(
        updates_stopped=stopped,
        ac_powered=powered["AC"],
        usb_powered=powered["USB"],
        wireless_powered=powered["Wireless"],
        dock_powered=powered["Dock"],
        plugged=[source for source, on in powered.items() if on],
        status=status,
        status_name=BATTERY_STATUS.get(status) if status is not None else None,
        health=health,
        health_name=BATTERY_HEALTH.get(health) if health is not None else None,
        present=_bool(fields.get("present")),
        level=level,
        scale=scale,
        level_pct=round(level * 100 / scale, 2) if level is not None and scale else None,
        voltage_mv=voltage,
        temperature_raw=temperature,
        temp_c=temperature / 10 if temperature is not None else None,
        technology=fields.get("technology") or None,
        charge_counter_uah=to_int(fields.get("charge_counter")),
        max_charging_current_ua=to_int(fields.get("max_charging_current")),
        max_charging_voltage_uv=to_int(fields.get("max_charging_voltage")),
        current_now_raw=current,
        current_now_ua=current_to_ua(current),
        fields=fields,
    )


# ---------------------------------------------------------------------------------------------
# dumpsys thermalservice

THERMAL = "dumpsys-thermalservice"
_THERMAL_HINT = "is this the output of 'adb shell dumpsys thermalservice' (Android 10+)?"
THERMAL_STATUS = {
    0: "none",
    1: "light",
    2: "moderate",
    3: "severe",
    4: "critical",
    5: "emergency",
    6: "shutdown",
}
TEMPERATURE_TYPES = {
    -1: "unknown",
    0: "cpu",
    1: "gpu",
    2: "battery",
    3: "skin",
    4: "usb_port",
    5: "power_amplifier",
    6: "bcl_voltage",
    7: "bcl_current",
    8: "bcl_percentage",
    9: "npu",
    10: "tpu",
    11: "display",
    12: "modem",
    13: "soc",
    14: "wifi",
    15: "camera",
    16: "flashlight",
    17: "speaker",
    18: "ambient",
    19: "pogo",
}
COOLING_TYPES = {
    0: "fan",
    1: "battery",
    2: "cpu",
    3: "gpu",
    4: "modem",
    5: "npu",
    6: "component",
    7: "tpu",
    8: "power_amplifier",
    9: "display",
    10: "speaker",
    11: "wifi",
    12: "camera",
    13: "flashlight",
    14: "usb_port",
}


class Temperature(Result):
    name: str
    type: int | None = None
    type_name: str | None = None
    temp_c: float | None = None  # None for NaN or an implausible (< -100 C) reading
    status: int | None = None  # per-sensor throttling severity (THERMAL_STATUS numbering)
    status_name: str | None = None


class CoolingDevice(Result):
    name: str
    type: int | None = None
    type_name: str | None = None
    value: float | None = None  # the cooling state (0 = not cooling)


class DumpsysThermalservice(Result):
    thermal_status: int | None = None
    thermal_status_name: str | None = None
    is_status_override: bool | None = None
    hal_ready: bool | None = None
    temperatures_source: str | None = None  # "current" (from HAL) or "cached"
    temperatures: list[Temperature] = Field(default_factory=list)
    cooling_devices: list[CoolingDevice] = Field(default_factory=list)
    max_temp_c: float | None = None
    max_sensor_status: int | None = None
    throttling: bool | None = None  # thermal status > 0 or any sensor status > 0


def _fields(body: str) -> dict[str, str]:
    return {key: value.strip() for key, value in re.findall(r"(\w+)=([^,}]*)", body)}


def _temperature(body: str) -> Temperature:
    values = _fields(body)
    kind = to_int(values.get("mType"))
    status = to_int(values.get("mStatus"))
    temp = to_float(values.get("mValue"))
    return Temperature(
        name=values.get("mName", ""),
        type=kind,
        type_name=TEMPERATURE_TYPES.get(kind) if kind is not None else None,
        temp_c=temp if temp is not None and temp > -100 else None,
        status=status,
        status_name=THERMAL_STATUS.get(status) if status is not None else None,
    )


def _cooling(body: str) -> CoolingDevice:
    values = _fields(body)
    kind = to_int(values.get("mType"))
    return CoolingDevice(
        name=values.get("mName", ""),
        type=kind,
        type_name=COOLING_TYPES.get(kind) if kind is not None else None,
        value=to_float(values.get("mValue")),
    )


def parse_dumpsys_thermalservice(text: str) -> DumpsysThermalservice:
    lines = require_text(THERMAL, text, "capture 'adb shell dumpsys thermalservice'")
    found: dict[str, Any] = {}
    sections: dict[str, list[Temperature]] = {"current": [], "cached": []}
    cooling: dict[str, CoolingDevice] = {}
    section: str | None = None
    for line in lines:
        stripped = line.strip()
        if match := re.match(r"^Thermal Status:\s*(-?\d+)", stripped):
            found.setdefault("thermal_status", int(match.group(1)))
        elif match := re.match(r"^IsStatusOverride:\s*(\w+)", stripped):
            found["is_status_override"] = _bool(match.group(1))
        elif match := re.match(r"^HAL Ready:\s*(\w+)", stripped):
            found["hal_ready"] = _bool(match.group(1))
        if stripped.startswith("Cached temperatures"):
            section = "cached"
        elif stripped.startswith("Current temperatures from HAL"):
            section = "current"
        elif stripped and not stripped.startswith(("Temperature{", "CoolingDevice{")) and line == stripped:
            section = None  # any other unindented heading ends the section
        for body in re.findall(r"\bTemperature\{([^}]*)\}", line):
            sections[section or "cached"].append(_temperature(body))
        for body in re.findall(r"\bCoolingDevice\{([^}]*)\}", line):
            device = _cooling(body)
            cooling[device.name] = device  # a later (current-from-HAL) listing wins
    if "thermal_status" not in found and not any(sections.values()):
        raise ParseError(
            THERMAL, f"no 'Thermal Status:' line and no Temperature{{...}} entry found; {_THERMAL_HINT}"
        )
    source = "current" if sections["current"] else "cached" if sections["cached"] else None
    by_name: dict[str, Temperature] = {}
    for temp in sections[source] if source else []:
        by_name[temp.name] = temp
    temperatures = list(by_name.values())
    status = found.get("thermal_status")
    readings = [t.temp_c for t in temperatures if t.temp_c is not None]
    sensor_statuses = [t.status for t in temperatures if t.status is not None]
    max_status = max(sensor_statuses) if sensor_statuses else None
    throttling = None
    if status is not None or max_status is not None:
        throttling = (status or 0) > 0 or (max_status or 0) > 0
    return DumpsysThermalservice(
        thermal_status=status,
        thermal_status_name=THERMAL_STATUS.get(status) if status is not None else None,
        is_status_override=found.get("is_status_override"),
        hal_ready=found.get("hal_ready"),
        temperatures_source=source,
        temperatures=temperatures,
        cooling_devices=list(cooling.values()),
        max_temp_c=max(readings) if readings else None,
        max_sensor_status=max_status,
        throttling=throttling,
    )


# ---------------------------------------------------------------------------------------------
# getprop

GETPROP = "getprop"
_GETPROP_HINT = "is this the output of 'adb shell getprop'?"


class Getprop(Result):
    props: dict[str, str]
    model: str | None = None
    manufacturer: str | None = None
    brand: str | None = None
    device: str | None = None
    sdk_int: int | None = None
    release: str | None = None
    build_id: str | None = None
    fingerprint: str | None = None
    security_patch: str | None = None
    soc_manufacturer: str | None = None
    soc_model: str | None = None
    hardware: str | None = None
    board_platform: str | None = None
    abi: str | None = None
    abilist: list[str] = Field(default_factory=list)


_PROP_START = re.compile(r"^\[([^\]]+)\]\s*:\s*\[(.*)$")


def parse_getprop(text: str) -> Getprop:
    lines = require_text(GETPROP, text, "capture 'adb shell getprop'")
    props: dict[str, str] = {}
    key: str | None = None
    parts: list[str] = []
    for line in lines:
        if key is None:
            match = _PROP_START.match(line.strip())
            if match is None:
                continue
            key, rest = match.group(1), match.group(2)
            parts = [rest]
        else:
            parts.append(line)
        if parts[-1].endswith("]"):
            parts[-1] = parts[-1][:-1]
            props[key] = "\n".join(parts)
            key = None
    if key is not None:  # a value never closed: keep what there is
        props[key] = "\n".join(parts)
    if not props:
        raise ParseError(GETPROP, f"no '[key]: [value]' line found; {_GETPROP_HINT}")

    def first(*names: str) -> str | None:
        return next((props[name] for name in names if props.get(name)), None)

    abilist = first(
        "ro.product.cpu.abilist", "ro.system.product.cpu.abilist", "ro.vendor.product.cpu.abilist"
    )
    return Getprop(
        props=props,
        model=first("ro.product.model", "ro.product.system.model", "ro.product.vendor.model"),
        manufacturer=first(
            "ro.product.manufacturer", "ro.product.system.manufacturer", "ro.product.vendor.manufacturer"
        ),
        brand=first("ro.product.brand", "ro.product.system.brand", "ro.product.vendor.brand"),
        device=first("ro.product.device", "ro.product.system.device", "ro.product.vendor.device"),
        sdk_int=to_int(first("ro.build.version.sdk", "ro.system.build.version.sdk")),
        release=first("ro.build.version.release", "ro.build.version.release_or_codename"),
        build_id=first("ro.build.id"),
        fingerprint=first("ro.build.fingerprint", "ro.system.build.fingerprint"),
        security_patch=first("ro.build.version.security_patch"),
        soc_manufacturer=first("ro.soc.manufacturer"),
        soc_model=first("ro.soc.model"),
        hardware=first("ro.hardware", "ro.boot.hardware"),
        board_platform=first("ro.board.platform"),
        abi=first("ro.product.cpu.abi", "ro.system.product.cpu.abi"),
        abilist=[abi.strip() for abi in abilist.split(",") if abi.strip()] if abilist else [],
    )


__all__ = [
    "BATTERY",
    "GETPROP",
    "MEMINFO",
    "THERMAL",
    "DumpsysBattery",
    "DumpsysMeminfo",
    "DumpsysThermalservice",
    "Getprop",
    "current_to_ua",
    "parse_dumpsys_battery",
    "parse_dumpsys_meminfo",
    "parse_dumpsys_thermalservice",
    "parse_getprop",
]
