"""Linux ``power_supply`` class readings and the Pixel ODPM (on-device power monitor) counters."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from harness.errors import ParseError
from harness.parsers._common import Result, require_text, to_int

# ---------------------------------------------------------------------------------------------
# /sys/class/power_supply/<name>/

POWER_SUPPLY = "power-supply"
_POWER_SUPPLY_HINT = (
    "is this /sys/class/power_supply/<name>/uevent or 'grep -r . /sys/class/power_supply/<name>/'?"
)
_ANCHOR_KEYS = {"capacity", "voltage_now", "current_now", "online", "charge_counter", "temp"}


class PowerSupply(Result):
    name: str | None = None
    type: str | None = None
    status: str | None = None  # Charging, Discharging, Not charging, Full, Unknown
    health: str | None = None
    present: bool | None = None
    online: bool | None = None
    technology: str | None = None
    capacity_pct: int | None = None
    voltage_now_uv: int | None = None  # normalised to uV (a value < 100000 is taken as mV)
    voltage_mv: float | None = None
    current_now_ua: int | None = None  # raw, as the driver reports it (unit and sign vary by vendor)
    current_avg_ua: int | None = None  # raw, like current_now_ua
    current_unit: str | None = None  # "ua" (kernel ABI) or "ma" (|raw| < 10000: vendor reports mA)
    current_now_ma: float | None = None  # current_now in mA after the unit guess; sign kept as reported
    power_mw: float | None = None  # |voltage x current|, from voltage_now and current_now
    temp_raw: int | None = None  # tenths of a degree C
    temp_c: float | None = None
    charge_counter_uah: int | None = None
    charge_full_uah: int | None = None
    charge_full_design_uah: int | None = None
    cycle_count: int | None = None
    # every key read, lower-case, without the POWER_SUPPLY_ prefix
    fields: dict[str, str] = Field(default_factory=dict)


def _key(raw: str) -> str:
    key = raw.strip().rsplit("/", 1)[-1].lower()
    return key.removeprefix("power_supply_")


def _split(line: str) -> tuple[str, str] | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    # grep -r . DIR/ prints "DIR/uevent:POWER_SUPPLY_X=v" for the uevent file itself.
    match = re.match(r"^(?:\S*/)?uevent:(POWER_SUPPLY_\w+)=(.*)$", stripped)
    if match:
        return match.group(1), match.group(2)
    match = re.match(r"^([^\s:=]+?)\s*(?::|=)\s*(.*)$", stripped)
    if match:
        return match.group(1), match.group(2)
    return None


def parse_power_supply(text: str) -> PowerSupply:
    lines = require_text(POWER_SUPPLY, text, "capture /sys/class/power_supply/<name>/uevent")
    fields: dict[str, str] = {}
    for line in lines:
        pair = _split(line)
        if pair is not None:
            fields.setdefault(_key(pair[0]), pair[1].strip())
    if not any(to_int(fields[key]) is not None for key in _ANCHOR_KEYS & fields.keys()):
        raise ParseError(
            POWER_SUPPLY,
            f"no POWER_SUPPLY_* / capacity / voltage_now / current_now key found; {_POWER_SUPPLY_HINT}",
        )
    voltage = to_int(fields.get("voltage_now"))
    if voltage is not None and 0 < abs(voltage) < 100_000:
        voltage *= 1000  # mV
    current = to_int(fields.get("current_now"))
    unit = None if current is None else "ma" if 0 < abs(current) < 10_000 else "ua"
    current_ma = None if current is None else float(current) if unit == "ma" else current / 1000
    power = None
    if voltage is not None and current_ma is not None:
        power = round(abs(voltage / 1_000_000 * current_ma), 3)
    temp = to_int(fields.get("temp"))
    present, online = fields.get("present"), fields.get("online")
    return PowerSupply(
        name=fields.get("name"),
        type=fields.get("type"),
        status=fields.get("status"),
        health=fields.get("health"),
        present=None if present is None else present.strip() == "1",
        online=None if online is None else online.strip() == "1",
        technology=fields.get("technology"),
        capacity_pct=to_int(fields.get("capacity")),
        voltage_now_uv=voltage,
        voltage_mv=voltage / 1000 if voltage is not None else None,
        current_now_ua=current,
        current_avg_ua=to_int(fields.get("current_avg")),
        current_unit=unit,
        current_now_ma=current_ma,
        power_mw=power,
        temp_raw=temp,
        temp_c=temp / 10 if temp is not None else None,
        charge_counter_uah=to_int(fields.get("charge_counter")),
        charge_full_uah=to_int(fields.get("charge_full")),
        charge_full_design_uah=to_int(fields.get("charge_full_design")),
        cycle_count=to_int(fields.get("cycle_count")),
        fields=fields,
    )


# ---------------------------------------------------------------------------------------------
# Pixel ODPM: /sys/bus/iio/devices/iio:device*/energy_value (and enabled_rails)

ODPM = "odpm"
_ODPM_HINT = "is this /sys/bus/iio/devices/iio:device*/energy_value from a Pixel 6 or later?"


class OdpmRail(Result):
    channel: int | None = None
    name: str  # schematic rail name, e.g. S2M_VDD_CPUCL2 or VSYS_PWR_DISPLAY
    subsystem: str | None = None  # e.g. CPU(BIG), Display; when printed
    timestamp_ms: int | None = None  # the T= value of the channel line
    energy_uws: int | None = None  # accumulated energy, microwatt-seconds (= uJ); None in enabled_rails


class Odpm(Result):
    timestamp_ms: int | None = None  # the first "t=" line: ms since boot
    timestamps_ms: list[int] = Field(default_factory=list)  # every "t=" line (one per iio device read)
    rails: list[OdpmRail] = Field(default_factory=list)
    total_energy_uws: int | None = None


_T_LINE = re.compile(r"^t=(\d+)$")
# CH0(T=12345)[S2M_VDD_CPUCL2], 123   CH0(T=1)[VSYS_PWR_DISPLAY, Display], 123   CH0[NAME]:Subsys
_CH_LINE = re.compile(r"^CH(\d+)(?:\(T=(\d+)\))?\[([^\]]*)\]\s*(?:,\s*(-?\d+)|:\s*(.*))?$")
# available_rails: NAME(SCHEMATIC):Subsys
_AVAILABLE = re.compile(r"^(\w+)\((\w+)\):(.*)$")


def parse_odpm(text: str) -> Odpm:
    lines = require_text(ODPM, text, "capture 'cat /sys/bus/iio/devices/iio:device*/energy_value'")
    timestamps: list[int] = []
    rails: list[OdpmRail] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if match := _T_LINE.match(stripped):
            timestamps.append(int(match.group(1)))
            continue
        if match := _CH_LINE.match(stripped):
            channel, stamp, bracket, energy, subsystem = match.groups()
            name, _, inner_subsystem = bracket.partition(",")
            fields: dict[str, Any] = {
                "channel": int(channel),
                "name": name.strip(),
                "subsystem": (inner_subsystem.strip() or (subsystem or "").strip()) or None,
                "timestamp_ms": int(stamp) if stamp is not None else None,
                "energy_uws": int(energy) if energy is not None else None,
            }
            rails.append(OdpmRail.model_validate(fields))
            continue
        if match := _AVAILABLE.match(stripped):
            rails.append(OdpmRail(name=match.group(2), subsystem=match.group(3).strip() or None))
            continue
        if stripped.startswith(("/", "==>")):  # file names printed between files
            continue
        raise ParseError(ODPM, f"unexpected line {stripped[:80]!r}; {_ODPM_HINT}")
    if not rails:
        raise ParseError(ODPM, f"no 'CHn(T=...)[RAIL], energy' line found; {_ODPM_HINT}")
    energies = [rail.energy_uws for rail in rails if rail.energy_uws is not None]
    return Odpm(
        timestamp_ms=timestamps[0] if timestamps else None,
        timestamps_ms=timestamps,
        rails=rails,
        total_energy_uws=sum(energies) if energies else None,
    )


__all__ = ["ODPM", "POWER_SUPPLY", "Odpm", "OdpmRail", "PowerSupply", "parse_odpm", "parse_power_supply"]
