"""Android outputs: ``dumpsys meminfo|battery|thermalservice``, ODPM ``energy_value``,
``getprop`` and power_supply files, across Android versions and vendors."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

from harness.errors import ParseError
from harness.probes.parsers.common import (
    MAX_TEXT_BYTES,
    Lines,
    OpenLine,
    Parsed,
    refusal,
    split_lines,
    to_float,
    to_int,
)

# -- dumpsys meminfo <pid|package> -----------------------------------------------------------------

# The per-category table's columns by the number of values in a full row, for a block pasted
# without its two header lines: Android 4.4-11 default (7), 12+ default (8), 4.4-11 with -a (10),
# 12+ with -a (11). The swap column is "Swapped Dirty", "Swap Dirty" or "SwapPss Dirty" by version
# and device, which the width cannot tell, so it is left unnamed (None) rather than guessed.
_HEAP = ("heap_size", "heap_alloc", "heap_free")
_DEFAULT = ("pss_total", "private_dirty", "private_clean", None)
_ALL = ("pss_total", "pss_clean", "shared_dirty", "private_dirty", "shared_clean", "private_clean", None)
_LAYOUTS: dict[int, tuple[str | None, ...]] = {
    7: (*_DEFAULT, *_HEAP),
    8: (*_DEFAULT, "rss_total", *_HEAP),
    10: (*_ALL, *_HEAP),
    11: (*_ALL, "rss_total", *_HEAP),
}
_SUMMARY_NAMES = {
    "Java Heap",
    "Native Heap",
    "Code",
    "Stack",
    "Graphics",
    "Private Other",
    "System",
    "Unknown",
}
_SECTIONS = {"App Summary", "Objects", "SQL", "DATABASES", "Dalvik Details", "Dalvik", "Asset Allocations"}
_HEADER = re.compile(r"\*\* MEMINFO in pid (\d{1,10}) \[(.*)\] \*\*")
_TOTALS = re.compile(r"(TOTAL(?: PSS| RSS| SWAP PSS)?):\s*(\d{1,15})(?!\d)")
_WORD = re.compile(r"\S+")


class MeminfoRow(Parsed):
    name: str
    values_kb: dict[str, int]  # column name (pss_total, private_dirty, rss_total, heap_size, ...) -> kB


class SummaryEntry(Parsed):
    pss_kb: int | None
    rss_kb: int | None


class DumpsysMeminfo(Parsed):
    pid: int | None  # None when the block was pasted without its "** MEMINFO in pid" line
    process: str | None
    total_pss_kb: int | None
    total_rss_kb: int | None  # Android 12+ only
    total_swap_pss_kb: int | None
    columns: list[str]
    rows: list[MeminfoRow]
    app_summary: dict[
        str, SummaryEntry
    ]  # java_heap, native_heap, code, stack, graphics, private_other, system, unknown
    objects: dict[str, int]


def _snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


def _row(line: str) -> tuple[str, list[tuple[int, int]]] | None:
    """A table row: a name, then right-aligned numbers as (end column, value)."""
    words = list(_WORD.finditer(line))
    first_number = len(words)
    while first_number > 0 and words[first_number - 1].group().isdigit():
        first_number -= 1
    if first_number == 0 or first_number == len(words):
        return None
    name = line[words[0].start() : words[first_number - 1].end()]
    if ":" in name or not re.search(r"[A-Za-z]", name):
        return None
    numbers = [(word.end(), int(word.group())) for word in words[first_number:] if len(word.group()) <= 15]
    return (name, numbers) if numbers else None


def _header_columns(lines: list[str], start: int) -> tuple[int, list[str], list[int]] | None:
    """The two header lines (``Pss Private ...`` / ``Total Dirty ...``) before the first row:
    where the rows start, the column names and the column each name ends at (the numbers
    below are right-aligned)."""
    for index in range(start, len(lines) - 1):
        if _row(lines[index]) is not None:
            return None
        first, second = lines[index].split(), lines[index + 1].split()
        if len(first) >= 2 and len(first) == len(second) and all(w.isalpha() for w in first + second):
            edges = [word.end() for word in _WORD.finditer(lines[index + 1])]
            return index + 2, [_snake(f"{a} {b}") for a, b in zip(first, second, strict=True)], edges
    return None


def _place(
    numbers: list[tuple[int, int]], columns: tuple[str | None, ...], edges: list[int], cut: bool
) -> dict[str, int]:
    """Each value under the column it is aligned with; in order when the alignment was lost (a
    prefix of another width stripped). When the input was cut right after the last value, that
    value is kept only if it is aligned (a cut number ends short of its column)."""
    by_edge = dict(zip(edges, columns, strict=False))
    if edges and all(end in by_edge for end, _ in numbers):
        return {name: value for end, value in numbers if (name := by_edge[end]) is not None}
    if edges and cut and all(end in by_edge for end, _ in numbers[:-1]):
        return {name: value for end, value in numbers[:-1] if (name := by_edge[end]) is not None}
    if cut:
        numbers = numbers[:-1]
    return {name: value for name, (_, value) in zip(columns, numbers, strict=False) if name is not None}


def _meminfo_table(lines: list[str], start: int) -> tuple[list[str], list[MeminfoRow]]:
    """The per-category table, from its header lines when present, else from its rows alone."""
    header = _header_columns(lines, start)
    first_row = header[0] if header else start
    found: list[tuple[str, list[tuple[int, int]], bool]] = []
    for line in lines[first_row:]:
        stripped = line.strip()
        if stripped and set(stripped) <= {"-", " "}:
            continue
        row = _row(line)
        if row is None:
            if found:
                break
            continue
        found.append((row[0], row[1], isinstance(line, OpenLine) and row[1][-1][0] == len(line)))
        if row[0] == "TOTAL":
            break
    columns: tuple[str | None, ...] = ()
    edges: list[int] = []
    if header:
        columns, edges = tuple(header[1]), header[2]
    elif found:
        width = max((len(numbers) for _, numbers, _ in found), default=0)
        columns = _LAYOUTS.get(width, ("pss_total",))
        edges = next(([end for end, _ in numbers] for _, numbers, _ in found if len(numbers) == width), [])
        edges = edges if len(edges) == len(columns) else []
    rows = [
        MeminfoRow(name=name, values_kb=_place(numbers, columns, edges, cut)) for name, numbers, cut in found
    ]
    return [name for name in columns if name is not None], rows


def _summary(lines: list[str]) -> dict[str, SummaryEntry]:
    """App Summary rows, each value under the Pss(KB) or Rss(KB) column it is nearest to. The
    columns are where the header prints them, else where the rows with both values put them."""
    pss_end = rss_end = None
    rows: list[tuple[str, list[tuple[int, int]]]] = []
    for line in lines:
        if "Pss(KB)" in line:
            pss_end = line.index("Pss(KB)") + len("Pss(KB)")
            rss_end = line.index("Rss(KB)") + len("Rss(KB)") if "Rss(KB)" in line else None
            continue
        name, colon, _ = line.partition(":")
        words = list(_WORD.finditer(line, len(name) + 1)) if colon else []
        if name.strip() not in _SUMMARY_NAMES or not words or not all(w.group().isdigit() for w in words):
            continue
        if isinstance(line, OpenLine) and words and words[-1].end() == len(line):
            words = words[:-1]  # the last value may have been cut
        rows.append((_snake(name), [(w.end(), int(w.group())) for w in words if len(w.group()) <= 15]))
    if pss_end is None:
        both = next((numbers for _, numbers in rows if len(numbers) == 2), None)
        pss_end, rss_end = (both[0][0], both[1][0]) if both else (0, None)
    summary: dict[str, SummaryEntry] = {}
    for name, numbers in rows:
        entry: dict[str, int | None] = {"pss_kb": None, "rss_kb": None}
        for end, value in numbers:
            nearer_rss = rss_end is not None and abs(end - rss_end) < abs(end - pss_end)
            entry["rss_kb" if nearer_rss else "pss_kb"] = value
        summary[name] = SummaryEntry(**entry)
    return summary


def _colon_pairs(line: str) -> list[tuple[str, int]]:
    """``Views:      779         ViewRootImpl:        1`` as [("Views", 779), ("ViewRootImpl", 1)];
    on a cut line a value that ends the line may be a part of one and is left out."""
    parts = line.split(":")
    pairs = []
    for index, (left, right) in enumerate(itertools.pairwise(parts)):
        label = re.sub(r"^\s*\d+\s*", "", left).strip()
        value = right.split(maxsplit=1)
        cut = isinstance(line, OpenLine) and index == len(parts) - 2 and right.strip() == right.lstrip()
        if (
            value
            and value[0].isdigit()
            and len(value[0]) <= 15
            and re.fullmatch(r"[A-Za-z][A-Za-z ]*", label)
            and not (cut and len(value) == 1)
        ):
            pairs.append((label, int(value[0])))
    return pairs


def parse_dumpsys_meminfo(text: str) -> DumpsysMeminfo:
    """Per-process ``dumpsys meminfo``, whole or a block of it: the table, App Summary, totals
    and Objects."""
    kind = "dumpsys-meminfo"
    source = Lines(split_lines(text))
    lines = list(source)
    start, header = next(
        ((i, found) for i, line in enumerate(lines) if (found := _HEADER.search(line))), (0, None)
    )
    columns, rows = _meminfo_table(lines, start)
    summary = _summary(lines[start:])
    objects: dict[str, int] = {}
    totals: dict[str, int] = {}
    section = ""
    for line in lines[start:]:
        stripped = line.strip()
        if stripped in _SECTIONS:
            section = stripped
            continue
        total_hits = list(_TOTALS.finditer(line))
        if total_hits:
            for found in total_hits:
                if not (isinstance(line, OpenLine) and found.end() == len(line)):  # maybe cut
                    totals.setdefault(found.group(1), int(found.group(2)))
        elif section == "Objects":
            for name, count in _colon_pairs(line):
                objects[_snake(name)] = count
    if not (header or rows or summary or totals or objects):
        raise refusal(
            kind,
            source,
            "no '** MEMINFO in pid N [name] **' line, category table, App Summary or TOTAL PSS (plain "
            "`dumpsys meminfo` lists every process, not one)",
            "adb shell dumpsys meminfo PID|PACKAGE",
        )
    total_pss = totals.get("TOTAL PSS", totals.get("TOTAL"))
    if total_pss is None:
        total_row = next((row for row in rows if row.name == "TOTAL"), None)
        total_pss = total_row.values_kb.get("pss_total") if total_row else None
    return DumpsysMeminfo(
        pid=to_int(header.group(1)) if header else None,
        process=header.group(2) if header else None,
        total_pss_kb=total_pss,
        total_rss_kb=totals.get("TOTAL RSS"),
        total_swap_pss_kb=totals.get("TOTAL SWAP PSS"),
        columns=columns,
        rows=rows,
        app_summary=summary,
        objects=objects,
    )


# -- dumpsys battery ---------------------------------------------------------------------------------

BATTERY_STATUS = {1: "unknown", 2: "charging", 3: "discharging", 4: "not charging", 5: "full"}
BATTERY_HEALTH = {
    1: "unknown",
    2: "good",
    3: "overheat",
    4: "dead",
    5: "over voltage",
    6: "failure",
    7: "cold",
}
_BATTERY_KEYS = {
    "ac powered",
    "usb powered",
    "wireless powered",
    "dock powered",
    "max charging current",
    "max charging voltage",
    "charge counter",
    "status",
    "health",
    "present",
    "level",
    "scale",
    "voltage",
    "temperature",
    "technology",
    "current now",
}


class DumpsysBattery(Parsed):
    ac_powered: bool | None
    usb_powered: bool | None
    wireless_powered: bool | None
    dock_powered: bool | None
    charging: bool  # plugged in, or status "charging"/"full"
    status: int | None
    status_name: str | None
    health: int | None
    health_name: str | None
    present: bool | None
    level: int | None
    scale: int | None
    level_pct: float | None
    voltage_mv: int | None
    temp_c: float | None
    technology: str | None
    charge_counter_uah: int | None
    current_now_ua: int | None
    max_charging_current_ua: int | None
    max_charging_voltage_uv: int | None
    updates_stopped: bool  # `dumpsys battery set/unplug` is in force: values are not live


def _bool(value: str | None) -> bool | None:
    return None if value is None else value.strip().lower() == "true"


def dumpsys_battery_from_lines(raw: Iterable[str]) -> DumpsysBattery:
    """``dumpsys battery`` read line by line; only its known fields are kept."""
    kind = "dumpsys-battery"
    source = Lines(raw)
    fields: dict[str, str] = {}
    updates_stopped = False
    for line in source:
        updates_stopped = updates_stopped or "UPDATES STOPPED" in line
        key, colon, value = line.partition(":")
        key = key.strip().lower()
        if colon and key in _BATTERY_KEYS:
            fields.setdefault(key, value.strip())
    if not fields:
        raise refusal(
            kind,
            source,
            "no 'level:', 'status:' or other BatteryService field",
            "adb shell dumpsys battery",
        )
    level, scale = to_int(fields.get("level")), to_int(fields.get("scale"))
    voltage = to_int(fields.get("voltage"))
    if voltage is not None and voltage > 100_000:  # a few vendors print microvolts
        voltage //= 1000
    temperature = to_float(fields.get("temperature"))
    status = to_int(fields.get("status"))
    powered = [_bool(fields.get(f"{source} powered")) for source in ("ac", "usb", "wireless", "dock")]
    health = to_int(fields.get("health"))
    return DumpsysBattery(
        ac_powered=powered[0],
        usb_powered=powered[1],
        wireless_powered=powered[2],
        dock_powered=powered[3],
        charging=any(bool(p) for p in powered) or status in (2, 5),
        status=status,
        status_name=BATTERY_STATUS.get(status) if status is not None else None,
        health=health,
        health_name=BATTERY_HEALTH.get(health) if health is not None else None,
        present=_bool(fields.get("present")),
        level=level,
        scale=scale,
        level_pct=round(100.0 * level / scale, 2) if level is not None and scale else None,
        voltage_mv=voltage,
        temp_c=temperature / 10.0 if temperature is not None else None,
        technology=fields.get("technology") or None,
        charge_counter_uah=to_int(fields.get("charge counter")),
        current_now_ua=to_int(fields.get("current now")),
        max_charging_current_ua=to_int(fields.get("max charging current")),
        max_charging_voltage_uv=to_int(fields.get("max charging voltage")),
        updates_stopped=updates_stopped,
    )


def parse_dumpsys_battery(text: str) -> DumpsysBattery:
    return dumpsys_battery_from_lines(split_lines(text))


# -- power_supply sysfs ------------------------------------------------------------------------------

_POWER_SUPPLY_KEYS = {
    "name",
    "status",
    "capacity",
    "voltage_now",
    "current_now",
    "temp",
    "charge_counter",
    "health",
    "present",
    "technology",
}


class PowerSupply(Parsed):
    name: str | None
    status: str | None
    charging: bool | None
    capacity_pct: int | None
    voltage_now_uv: int | None
    voltage_mv: float | None
    current_now_ua: int | None  # raw, as the kernel reports it (sign convention varies by vendor)
    current_unit: str  # "ua" (the ABI) or "ma" when the magnitude says a vendor reports mA
    power_mw: float | None  # |voltage x current|
    temp_c: float | None
    charge_counter_uah: int | None
    health: str | None
    present: bool | None
    technology: str | None


def _power_supply_field(line: str) -> tuple[str, str] | None:
    """``POWER_SUPPLY_KEY=value``, ``KEY=value``, ``key: value`` or grep's ``/path/key:value``."""
    if line.startswith("/"):
        path, colon, value = line.partition(":")
        if not colon:
            return None
        if not value.startswith("POWER_SUPPLY_"):  # grep -r . on the folder includes uevent
            return path.rsplit("/", 1)[-1], value
        line = value
    if line.startswith("POWER_SUPPLY_") and "=" in line:
        key, _, value = line[len("POWER_SUPPLY_") :].partition("=")
    elif ":" in line:
        key, _, value = line.partition(":")
    elif "=" in line:
        key, _, value = line.partition("=")
    else:
        return None
    return key.rsplit("/", 1)[-1], value


def power_supply_from_lines(raw: Iterable[str]) -> PowerSupply:
    """A power_supply dump read line by line; only its known fields are kept."""
    kind = "power-supply"
    source = Lines(raw)
    fields: dict[str, str] = {}
    for line in source:
        found = _power_supply_field(line.strip())
        if found is not None and found[0].strip().lower() in _POWER_SUPPLY_KEYS:
            fields.setdefault(found[0].strip().lower(), found[1].strip())
    if not fields.keys() & {"capacity", "status", "voltage_now", "current_now", "temp"}:
        raise refusal(
            kind,
            source,
            "none of capacity, status, voltage_now, current_now, temp found; is this a power_supply dump?",
            "adb shell cat /sys/class/power_supply/battery/uevent",
        )
    voltage = to_int(fields.get("voltage_now"))
    current = to_int(fields.get("current_now"))
    unit = "ua"
    if current is not None and current != 0 and abs(current) < 10_000:  # < 10 mA in uA is implausible
        unit = "ma"
    power = None
    if voltage is not None and current is not None:
        current_a = current / (1e3 if unit == "ma" else 1e6)
        power = to_float(str(round(abs(voltage / 1e6 * current_a) * 1e3, 3)))
    temp = to_float(fields.get("temp"))
    status = fields.get("status") or None
    return PowerSupply(
        name=fields.get("name") or None,
        status=status,
        charging=None if status is None else status.lower() in {"charging", "full"},
        capacity_pct=to_int(fields.get("capacity")),
        voltage_now_uv=voltage,
        voltage_mv=voltage / 1000 if voltage is not None else None,
        current_now_ua=current,
        current_unit=unit,
        power_mw=power,
        temp_c=temp / 10.0 if temp is not None else None,
        charge_counter_uah=to_int(fields.get("charge_counter")),
        health=fields.get("health") or None,
        present=None if "present" not in fields else fields["present"] in {"1", "true"},
        technology=fields.get("technology") or None,
    )


def parse_power_supply(text: str) -> PowerSupply:
    """``/sys/class/power_supply/<name>/uevent``, or ``grep -r . <dir>`` / ``key: value`` dumps."""
    return power_supply_from_lines(split_lines(text))


# -- dumpsys thermalservice --------------------------------------------------------------------------

THERMAL_STATUS = {
    0: "none",
    1: "light",
    2: "moderate",
    3: "severe",
    4: "critical",
    5: "emergency",
    6: "shutdown",
}
_TYPE_NAMES = (
    "cpu gpu battery skin usb_port power_amplifier bcl_voltage bcl_current bcl_percentage npu tpu "
    "display modem soc wifi camera flashlight speaker ambient pogo"
)
TEMPERATURE_TYPE = {-1: "unknown", **dict(enumerate(_TYPE_NAMES.split()))}


class ThermalReading(Parsed):
    name: str
    type: int
    type_name: str
    temp_c: float
    status: int | None


class CoolingDevice(Parsed):
    name: str
    type: int | None
    value: float


class DumpsysThermalservice(Parsed):
    thermal_status: int | None
    thermal_status_name: str | None
    status_override: bool | None
    hal_ready: bool | None
    temperatures: list[ThermalReading]  # "Current temperatures from HAL" when present, else cached
    cooling_devices: list[CoolingDevice]
    hottest_c: float | None


_FIELDS = re.compile(r"\b(\w+)=([^,}]*)")


def _record(stripped: str, line: str) -> dict[str, str] | None:
    """The fields of a ``Temperature{...}`` or ``CoolingDevice{...}`` line; None when the line
    was cut before its closing brace (its last value may be a part of one)."""
    if isinstance(line, OpenLine) and "}" not in stripped:
        return None
    return dict(_FIELDS.findall(stripped))


def parse_dumpsys_thermalservice(text: str) -> DumpsysThermalservice:
    kind = "dumpsys-thermalservice"
    source = Lines(split_lines(text))
    section = ""
    cached: list[ThermalReading] = []
    current: list[ThermalReading] = []
    cooling: list[CoolingDevice] = []
    status = override = hal_ready = None
    for line in source:
        stripped = line.strip()
        if stripped.startswith("Thermal Status:"):
            status = to_int(stripped.split(":", 1)[1])
        elif stripped.startswith("IsStatusOverride:"):
            override = _bool(stripped.split(":", 1)[1])
        elif stripped.startswith("HAL Ready:"):
            hal_ready = _bool(stripped.split(":", 1)[1])
        elif stripped.startswith(("Cached temperatures", "Current temperatures from HAL")):
            section = "current" if stripped.startswith("Current") else "cached"
        elif stripped.startswith("Current cooling devices"):
            section = "cooling"
        elif stripped.startswith("Temperature{") and (values := _record(stripped, line)) is not None:
            value = to_float(values.get("mValue"))
            kind_id = to_int(values.get("mType"))
            if value is None or kind_id is None:
                continue
            reading = ThermalReading(
                name=values.get("mName", "").strip(),
                type=kind_id,
                type_name=TEMPERATURE_TYPE.get(kind_id, "unknown"),
                temp_c=value,
                status=to_int(values.get("mStatus")),
            )
            (current if section == "current" else cached).append(reading)
        elif stripped.startswith("CoolingDevice{") and (values := _record(stripped, line)) is not None:
            cooling.append(
                CoolingDevice(
                    name=values.get("mName", "").strip(),
                    type=to_int(values.get("mType")),
                    value=to_float(values.get("mValue")) or 0.0,
                )
            )
    temperatures = current or cached
    if status is None and override is None and hal_ready is None and not temperatures and not cooling:
        raise refusal(
            kind,
            source,
            "no 'Thermal Status:' and no Temperature{...} lines (Android 10+)",
            "adb shell dumpsys thermalservice",
        )
    valid = [t.temp_c for t in temperatures if -100 < t.temp_c < 200]
    return DumpsysThermalservice(
        thermal_status=status,
        thermal_status_name=THERMAL_STATUS.get(status) if status is not None else None,
        status_override=override,
        hal_ready=hal_ready,
        temperatures=temperatures,
        cooling_devices=cooling,
        hottest_c=max(valid) if valid else None,
    )


# -- ODPM energy_value -------------------------------------------------------------------------------


class OdpmRail(Parsed):
    channel: int
    name: str
    subsystem: str | None
    timestamp_ms: int
    energy_uws: int


class Odpm(Parsed):
    timestamp_ms: int | None
    rails: list[OdpmRail]
    total_energy_uws: int


_ODPM_RAIL = re.compile(
    r"CH(\d{1,4})\(T=(\d{1,20})\)\[([^\]]{1,128})\](?::?\[([^\]]{0,128})\])?\s*,\s*(\d{1,20})(?!\d)"
)
_ODPM_TIME = re.compile(r"t=(\d{1,20})(?!\d)")


def parse_odpm(text: str) -> Odpm:
    """Pixel ODPM ``/sys/bus/iio/devices/iio:deviceN/energy_value`` (one or several devices
    concatenated; the rail name may carry a ``:SUBSYS`` suffix or a second bracket)."""
    kind = "odpm"
    source = Lines(split_lines(text))
    rails: list[OdpmRail] = []
    timestamp = None
    for line in source:
        stripped = line.strip()
        if (found_time := _ODPM_TIME.fullmatch(stripped)) is not None:
            timestamp = int(found_time.group(1)) if timestamp is None else timestamp
            continue
        found = _ODPM_RAIL.match(stripped)
        if found:
            name, _, subsystem = found.group(3).partition(":")
            rails.append(
                OdpmRail(
                    channel=int(found.group(1)),
                    name=name.strip(),
                    subsystem=(found.group(4) or subsystem or None),
                    timestamp_ms=int(found.group(2)),
                    energy_uws=int(found.group(5)),
                )
            )
    if not rails:
        raise refusal(
            kind,
            source,
            "no 'CHn(T=...)[RAIL], ENERGY' lines (Pixel 6 or later)",
            "adb shell cat /sys/bus/iio/devices/iio:device0/energy_value",
        )
    return Odpm(timestamp_ms=timestamp, rails=rails, total_energy_uws=sum(r.energy_uws for r in rails))


# -- getprop -----------------------------------------------------------------------------------------

_PROP = re.compile(r"\s*\[([^\]]+)\]:\s*\[(.*)")
_MAX_VALUE_LINES = 64  # a value that has not closed by then was not one (a stray "[k]: [" line)


class Getprop(Parsed):
    props: dict[str, str]
    model: str | None
    manufacturer: str | None
    brand: str | None
    device: str | None
    sdk_int: int | None
    release: str | None
    build_id: str | None
    fingerprint: str | None
    soc_manufacturer: str | None
    soc_model: str | None
    hardware: str | None
    board_platform: str | None
    abi: str | None
    abilist: list[str]


def getprop_from_lines(raw: Iterable[str]) -> Getprop:
    """A ``getprop`` listing read line by line; a value may span lines until ``]``. What is kept
    (the properties) is bounded like a whole-text input."""
    kind = "getprop"
    source = Lines(raw)
    props: dict[str, str] = {}
    kept = 0
    pending: tuple[str, list[str]] | None = None
    for line in source:
        if pending is not None:
            key, parts = pending
            if line.endswith("]"):
                parts.append(line[:-1])
                props[key] = "\n".join(parts)
                kept += len(key) + len(props[key])
                pending = None
            elif len(parts) < _MAX_VALUE_LINES:
                parts.append(line)
            else:
                pending = None
        elif (found := _PROP.match(line)) is not None:
            rest = found.group(2)
            if rest.endswith("]"):
                props[found.group(1)] = rest[:-1]
                kept += len(found.group(1)) + len(rest)
            else:
                pending = (found.group(1), [rest])
        if kept > MAX_TEXT_BYTES:
            raise ParseError(
                kind,
                f"more than {MAX_TEXT_BYTES // 2**20} MiB of properties; is this one `adb shell getprop` "
                "listing? keep one device's listing in the input",
            )
    if not props:
        raise refusal(kind, source, "no '[key]: [value]' lines", "adb shell getprop")

    def first(*keys: str) -> str | None:
        return next((props[k] for k in keys if props.get(k)), None)

    abilist = first("ro.product.cpu.abilist", "ro.system.product.cpu.abilist")
    return Getprop(
        props=props,
        model=first("ro.product.model", "ro.product.system.model", "ro.product.vendor.model"),
        manufacturer=first("ro.product.manufacturer", "ro.product.system.manufacturer"),
        brand=first("ro.product.brand", "ro.product.system.brand"),
        device=first("ro.product.device", "ro.product.system.device"),
        sdk_int=to_int(first("ro.build.version.sdk")),
        release=first("ro.build.version.release", "ro.build.version.release_or_codename"),
        build_id=first("ro.build.id"),
        fingerprint=first("ro.build.fingerprint", "ro.system.build.fingerprint"),
        soc_manufacturer=first("ro.soc.manufacturer"),
        soc_model=first("ro.soc.model"),
        hardware=first("ro.hardware"),
        board_platform=first("ro.board.platform"),
        abi=first("ro.product.cpu.abi"),
        abilist=abilist.split(",") if abilist else [],
    )


def parse_getprop(text: str) -> Getprop:
    """``getprop`` listing: ``[key]: [value]`` lines; a value may span lines until ``]``."""
    return getprop_from_lines(split_lines(text))


__all__ = [
    "dumpsys_battery_from_lines",
    "getprop_from_lines",
    "parse_dumpsys_battery",
    "parse_dumpsys_meminfo",
    "parse_dumpsys_thermalservice",
    "parse_getprop",
    "parse_odpm",
    "parse_power_supply",
    "power_supply_from_lines",
]
