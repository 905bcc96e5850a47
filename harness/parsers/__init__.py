"""Parsers of device-tool outputs: pure functions ``text -> typed result`` (frozen pydantic models).

Keys are snake_case with the unit in the name (``avg_us``, ``voltage_mv``, ``temp_c``). Every parser
accepts CRLF line ends, blank lines and logcat prefixes; a field the device did not print is
``None``. Input a parser cannot read raises :class:`ParseError` naming the format, what was missing
and a hint about the command that produces the right input.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from harness.errors import ParseError
from harness.parsers.android import (
    parse_dumpsys_battery,
    parse_dumpsys_meminfo,
    parse_dumpsys_thermalservice,
    parse_getprop,
)
from harness.parsers.jetson import parse_tegrastats
from harness.parsers.linux import parse_cpufreq, parse_proc_status
from harness.parsers.ort import parse_ort_perf_test
from harness.parsers.power import parse_odpm, parse_power_supply
from harness.parsers.rpi import parse_vcgencmd
from harness.parsers.tflite import parse_tflite_benchmark

PARSERS: dict[str, Callable[[str], BaseModel]] = {
    "tflite-benchmark": parse_tflite_benchmark,
    "ort-perf-test": parse_ort_perf_test,
    "dumpsys-meminfo": parse_dumpsys_meminfo,
    "dumpsys-battery": parse_dumpsys_battery,
    "power-supply": parse_power_supply,
    "dumpsys-thermalservice": parse_dumpsys_thermalservice,
    "odpm": parse_odpm,
    "tegrastats": parse_tegrastats,
    "vcgencmd": parse_vcgencmd,
    "proc-status": parse_proc_status,
    "cpufreq": parse_cpufreq,
    "getprop": parse_getprop,
}


def parse(kind: str, text: str) -> dict[str, object]:
    """Parse ``text`` as ``kind``; the result as JSON-ready data (``model_dump(mode="json")``)."""
    parser = PARSERS.get(kind)
    if parser is None:
        raise ParseError(kind, f"unknown parser kind; known kinds: {', '.join(sorted(PARSERS))}")
    result: dict[str, object] = parser(text).model_dump(mode="json")
    return result


__all__ = ["PARSERS", "ParseError", "parse"]
