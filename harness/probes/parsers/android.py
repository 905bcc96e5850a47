"""Android outputs: ``dumpsys meminfo|battery|thermalservice``, ODPM ``energy_value``,
``getprop`` and power_supply files, across Android versions and vendors."""

from __future__ import annotations

import re

from harness.errors import ParseError
from harness.probes.parsers.common import NUMBER, Parsed, clean_lines, require_text, to_float, to_int

# -- dumpsys meminfo <pid|package> -----------------------------------------------------------------


class MeminfoRow(Parsed):
    name: str
    values_kb: dict[str, int]  # column name (pss_total, private_dirty, rss_total, heap_size, ...) -> kB


class SummaryEntry(Parsed):
    pss_kb: int | None
    rss_kb: int | None


class DumpsysMeminfo(Parsed):
    pid: int
    process: str
    total_pss_kb: int
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


def _meminfo_table(lines: list[str], start: int) -> tuple[list[str], list[MeminfoRow]]:
    """The per-category table: two header lines give the column names; rows until TOTAL."""
    columns: list[str] = []
    rows: list[MeminfoRow] = []
    index = start + 1
    while index + 1 < len(lines):
        first, second = lines[index].split(), lines[index + 1].split()
        if first and second and len(first) == len(second) and all(w.isalpha() for w in first + second):
            columns = [_snake(f"{a} {b}") for a, b in zip(first, second, strict=True)]
            index += 2
            break
        index += 1
    row_pattern = re.compile(r"^\s*(.*?[A-Za-z)][^\d]*?)\s+((?:\d+\s*)+)$")
    for line in lines[index:]:
        if set(line.strip()) <= {"-", " "} and line.strip():
            continue
        found = row_pattern.match(line)
        if not found:
            if rows:
                break
            continue
        numbers = [int(n) for n in found.group(2).split()]
        rows.append(
            MeminfoRow(name=found.group(1).strip(), values_kb=dict(zip(columns, numbers, strict=False)))
        )
        if found.group(1).strip() == "TOTAL":
            break
    return columns, rows


def parse_dumpsys_meminfo(text: str) -> DumpsysMeminfo:
    """Per-process ``dumpsys meminfo``: the table, App Summary, totals and Objects."""
    kind = "dumpsys-meminfo"
    require_text(kind, text)
    lines = clean_lines(text)
    header = next(
        (
            re.search(r"\*\* MEMINFO in pid (\d+) \[(.*)\] \*\*", line)
            for line in lines
            if "MEMINFO in pid" in line
        ),
        None,
    )
    if header is None:
        raise ParseError(kind, "no '** MEMINFO in pid N [name] **' line; run `dumpsys meminfo <pid|package>`")
    start = next(i for i, line in enumerate(lines) if "MEMINFO in pid" in line)
    columns, rows = _meminfo_table(lines, start)
    summary: dict[str, SummaryEntry] = {}
    objects: dict[str, int] = {}
    totals: dict[str, int] = {}
    section = ""
    pss_end = rss_end = None
    for line in lines[start:]:
        stripped = line.strip()
        if stripped in {"App Summary", "Objects", "SQL", "DATABASES", "Dalvik Details", "Asset Allocations"}:
            section = stripped
            continue
        total_hits = re.findall(r"(TOTAL(?: PSS| RSS| SWAP PSS)?):\s*(\d+)", line)
        if total_hits:
            for name, value in total_hits:
                totals.setdefault(name, int(value))
            continue
        if section == "App Summary":
            if "Pss(KB)" in line:
                pss_end = line.index("Pss(KB)") + len("Pss(KB)")
                rss_end = line.index("Rss(KB)") + len("Rss(KB)") if "Rss(KB)" in line else None
                continue
            found = re.match(r"^\s*([A-Za-z][A-Za-z ]*):((?:\s+\d+)+)\s*$", line)
            if found and pss_end is not None:
                entry: dict[str, int | None] = {"pss_kb": None, "rss_kb": None}
                for number in re.finditer(r"\d+", found.group(2)):
                    end = len(found.group(1)) + 1 + number.end() + (len(line) - len(line.lstrip()))
                    column = (
                        "rss_kb"
                        if rss_end is not None and abs(end - rss_end) < abs(end - pss_end)
                        else "pss_kb"
                    )
                    entry[column] = int(number.group())
                summary[_snake(found.group(1))] = SummaryEntry(**entry)
        elif section == "Objects":
            for name, value in re.findall(r"([A-Za-z][A-Za-z ]*?):\s*(\d+)", line):
                objects[_snake(name)] = int(value)
    total_pss = totals.get("TOTAL PSS", totals.get("TOTAL"))
    if total_pss is None:
        total_row = next((row for row in rows if row.name == "TOTAL"), None)
        total_pss = total_row.values_kb.get("pss_total") if total_row else None
    if total_pss is None:
        raise ParseError(kind, "no TOTAL PSS found (the output looks truncated)")
    return DumpsysMeminfo(
        pid=int(header.group(1)),
        process=header.group(2),
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


def parse_dumpsys_battery(text: str) -> DumpsysBattery:
    kind = "dumpsys-battery"
    require_text(kind, text)
    fields: dict[str, str] = {}
    for line in clean_lines(text):
        found = re.match(r"^\s+([A-Za-z][A-Za-z ]*?):\s*(.*?)\s*$", line)
        if found:
            fields.setdefault(found.group(1).lower(), found.group(2))
    if "level" not in fields and "status" not in fields:
        raise ParseError(kind, "no 'level:' or 'status:' line; is this `dumpsys battery`?")
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
        technology=fields.get("technology"),
        charge_counter_uah=to_int(fields.get("charge counter")),
        current_now_ua=to_int(fields.get("current now")),
        max_charging_current_ua=to_int(fields.get("max charging current")),
        max_charging_voltage_uv=to_int(fields.get("max charging voltage")),
        updates_stopped="UPDATES STOPPED" in text,
    )


# -- power_supply sysfs ------------------------------------------------------------------------------


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


def parse_power_supply(text: str) -> PowerSupply:
    """``/sys/class/power_supply/<name>/uevent``, or ``grep -r . <dir>`` / ``key: value`` dumps."""
    kind = "power-supply"
    require_text(kind, text)
    fields: dict[str, str] = {}
    for raw in clean_lines(text):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("POWER_SUPPLY_") and "=" in line:
            key, value = line[len("POWER_SUPPLY_") :].split("=", 1)
        elif ":" in line:
            key, value = line.rsplit(":", 1) if line.startswith("/") else line.split(":", 1)
            key = key.rsplit("/", 1)[-1]
        elif "=" in line:
            key, value = line.split("=", 1)
        else:
            continue
        fields.setdefault(key.strip().lower(), value.strip())
    known = {"capacity", "status", "voltage_now", "current_now", "temp"}
    if not known & set(fields):
        raise ParseError(
            kind,
            "none of capacity, status, voltage_now, current_now, temp found; is this a power_supply dump?",
        )
    voltage = to_int(fields.get("voltage_now"))
    current = to_int(fields.get("current_now"))
    unit = "ua"
    if (
        current is not None and current != 0 and abs(current) < 10_000
    ):  # < 10 mA in uA is implausible under load
        unit = "ma"
    power = None
    if voltage is not None and current is not None:
        current_a = current / (1e3 if unit == "ma" else 1e6)
        power = round(abs(voltage / 1e6 * current_a) * 1e3, 3)
    temp = to_float(fields.get("temp"))
    status = fields.get("status")
    return PowerSupply(
        name=fields.get("name"),
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
        health=fields.get("health"),
        present=None if "present" not in fields else fields["present"] in {"1", "true"},
        technology=fields.get("technology"),
    )


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


_FIELDS = re.compile(r"(\w+)=([^,}]*)")


def parse_dumpsys_thermalservice(text: str) -> DumpsysThermalservice:
    kind = "dumpsys-thermalservice"
    require_text(kind, text)
    section = ""
    cached: list[ThermalReading] = []
    current: list[ThermalReading] = []
    cooling: list[CoolingDevice] = []
    status = override = hal_ready = None
    for line in clean_lines(text):
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
        elif stripped.startswith("Temperature{"):
            values = dict(_FIELDS.findall(stripped))
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
        elif stripped.startswith("CoolingDevice{"):
            values = dict(_FIELDS.findall(stripped))
            cooling.append(
                CoolingDevice(
                    name=values.get("mName", "").strip(),
                    type=to_int(values.get("mType")),
                    value=to_float(values.get("mValue")) or 0.0,
                )
            )
    temperatures = current or cached
    if status is None and not temperatures:
        raise ParseError(
            kind, "no 'Thermal Status:' and no Temperature{...} lines; is this `dumpsys thermalservice`?"
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


_ODPM_RAIL = re.compile(r"CH(\d+)\(T=(\d+)\)\[([^\]]+)\](?::?\[([^\]]*)\])?\s*,\s*(\d+)")


def parse_odpm(text: str) -> Odpm:
    """Pixel ODPM ``/sys/bus/iio/devices/iio:deviceN/energy_value`` (one or several devices
    concatenated; the rail name may carry a ``:SUBSYS`` suffix or a second bracket)."""
    kind = "odpm"
    require_text(kind, text)
    rails: list[OdpmRail] = []
    timestamp = None
    for line in clean_lines(text):
        stripped = line.strip()
        if stripped.startswith("t="):
            timestamp = to_int(stripped[2:]) if timestamp is None else timestamp
            continue
        found = _ODPM_RAIL.search(stripped)
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
        raise ParseError(
            kind, "no 'CHn(T=...)[RAIL], ENERGY' lines; read iio:deviceN/energy_value on a Pixel"
        )
    return Odpm(timestamp_ms=timestamp, rails=rails, total_energy_uws=sum(r.energy_uws for r in rails))


# -- getprop -----------------------------------------------------------------------------------------


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


def parse_getprop(text: str) -> Getprop:
    """``getprop`` listing: ``[key]: [value]`` lines; a value may span lines until ``]``."""
    kind = "getprop"
    require_text(kind, text)
    props: dict[str, str] = {}
    pending: tuple[str, list[str]] | None = None
    for line in clean_lines(text):
        if pending is not None:
            key, parts = pending
            if line.endswith("]"):
                parts.append(line[:-1])
                props[key] = "\n".join(parts)
                pending = None
            else:
                parts.append(line)
            continue
        found = re.match(r"^\s*\[([^\]]+)\]:\s*\[(.*)$", line)
        if not found:
            continue
        rest = found.group(2)
        if rest.endswith("]"):
            props[found.group(1)] = rest[:-1]
        else:
            pending = (found.group(1), [rest])
    if not props:
        raise ParseError(kind, "no '[key]: [value]' lines; run `getprop` with no arguments")

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


__all__ = [
    "NUMBER",
    "parse_dumpsys_battery",
    "parse_dumpsys_meminfo",
    "parse_dumpsys_thermalservice",
    "parse_getprop",
    "parse_odpm",
    "parse_power_supply",
]
