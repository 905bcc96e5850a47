"""Raspberry Pi ``vcgencmd`` outputs: get_throttled, measure_temp, measure_clock, measure_volts."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from harness.errors import ParseError
from harness.parsers._common import NUM, Result, require_text, scaled, to_float

KIND = "vcgencmd"
HINT = "is this the output of vcgencmd get_throttled / measure_temp / measure_clock arm / measure_volts?"

# get_throttled bits (Raspberry Pi documentation, "vcgencmd get_throttled").
THROTTLED_BITS = {
    "under_voltage_now": 0,
    "arm_freq_capped_now": 1,
    "throttled_now": 2,
    "soft_temp_limit_now": 3,
    "under_voltage_occurred": 16,
    "arm_freq_capped_occurred": 17,
    "throttled_occurred": 18,
    "soft_temp_limit_occurred": 19,
}
# measure_clock ids as printed in "frequency(N)=" (Pi 1-4 firmware).
CLOCK_IDS = {
    48: "arm",
    1: "core",
    28: "h264",
    45: "isp",
    46: "v3d",
    22: "uart",
    25: "pwm",
    47: "emmc",
    50: "emmc2",
    29: "pixel",
    10: "vec",
    0: "hdmi",
    4: "dpi",
}


class Vcgencmd(Result):
    throttled_raw: int | None = None
    throttled_hex: str | None = None
    under_voltage_now: bool | None = None
    arm_freq_capped_now: bool | None = None
    throttled_now: bool | None = None
    soft_temp_limit_now: bool | None = None
    under_voltage_occurred: bool | None = None
    arm_freq_capped_occurred: bool | None = None
    throttled_occurred: bool | None = None
    soft_temp_limit_occurred: bool | None = None
    any_throttling_now: bool | None = None  # any of bits 0-3
    temp_c: float | None = None
    arm_freq_hz: int | None = None
    arm_freq_khz: float | None = None
    # by clock name (arm, core, ...), else the printed id
    frequencies_hz: dict[str, int] = Field(default_factory=dict)
    voltage_mv: float | None = None  # the first volt= line (measure_volts defaults to core)
    # by label ("core: volt=..."); an unlabelled line is "core"
    voltages_mv: dict[str, float] = Field(default_factory=dict)
    arm_mem_mb: int | None = None
    gpu_mem_mb: int | None = None


_LABEL = r"(?:([\w]+)\s*[:=]\s*)?"


def parse_vcgencmd(text: str) -> Vcgencmd:
    lines = require_text(KIND, text, "capture the vcgencmd commands' output")
    found: dict[str, Any] = {}
    frequencies: dict[str, int] = {}
    voltages: dict[str, float] = {}
    recognised = False
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if "VCHI initialization failed" in stripped or "failed to open vchiq" in stripped.lower():
            raise ParseError(
                KIND, f"vcgencmd could not reach the firmware ({stripped}); run it as root or in 'video'"
            )
        if match := re.match(rf"^{_LABEL}throttled=(0x[0-9a-fA-F]+|\d+)$", stripped):
            raw = int(match.group(2), 0)
            found["throttled_raw"], found["throttled_hex"] = raw, hex(raw)
            for key, bit in THROTTLED_BITS.items():
                found[key] = bool(raw >> bit & 1)
            found["any_throttling_now"] = bool(raw & 0xF)
        elif match := re.match(rf"^{_LABEL}temp=({NUM})\s*(?:'|°|º)?C$", stripped):
            found.setdefault("temp_c", to_float(match.group(2)))
        elif match := re.match(rf"^{_LABEL}frequency\((\d+)\)=(\d+)$", stripped):
            clock = int(match.group(2))
            name = match.group(1) or CLOCK_IDS.get(clock, str(clock))
            frequencies[name] = int(match.group(3))
        elif match := re.match(rf"^{_LABEL}volt=({NUM})\s*V$", stripped):
            millivolts = scaled(match.group(2), "1000")
            if millivolts is not None:
                found.setdefault("voltage_mv", millivolts)
                voltages[match.group(1) or ("core" if "core" not in voltages else str(len(voltages)))] = (
                    millivolts
                )
        elif match := re.match(r"^(arm|gpu)=(\d+)M$", stripped):
            found[f"{match.group(1)}_mem_mb"] = int(match.group(2))
        else:
            continue
        recognised = True
    if not recognised:
        raise ParseError(KIND, f"no throttled=, temp=, frequency(N)= or volt= line found; {HINT}")
    arm = frequencies.get("arm")
    if arm is None and len(frequencies) == 1:  # a lone measure_clock line: newer firmware ids differ
        arm = next(iter(frequencies.values()))
    found["arm_freq_hz"] = arm
    found["arm_freq_khz"] = arm / 1000 if arm is not None else None
    found["frequencies_hz"], found["voltages_mv"] = frequencies, voltages
    return Vcgencmd.model_validate(found)


__all__ = ["KIND", "THROTTLED_BITS", "Vcgencmd", "parse_vcgencmd"]
