"""Parsers of device-tool outputs: pure functions ``text -> typed result`` (pydantic, frozen).

Keys are snake_case with the unit in the name (``avg_us``, ``voltage_mv``, ``temp_c``). Input a
parser cannot read raises ``ParseError`` naming the format, what is missing and the command that
produces the right input. ``edgelab parse KIND FILE`` prints any of them as JSON (see ``reading``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from harness.errors import ParseError
from harness.probes.parsers.android import (
    dumpsys_battery_from_lines,
    getprop_from_lines,
    parse_dumpsys_battery,
    parse_dumpsys_meminfo,
    parse_dumpsys_thermalservice,
    parse_getprop,
    parse_odpm,
    parse_power_supply,
    power_supply_from_lines,
)
from harness.probes.parsers.benchmark_tools import (
    ort_perf_test_from_lines,
    parse_ort_perf_test,
    parse_ort_result_file,
    parse_tflite_benchmark,
)
from harness.probes.parsers.boards import (
    parse_cpufreq,
    parse_proc_status,
    parse_tegrastats,
    parse_vcgencmd,
    proc_status_from_lines,
    vcgencmd_from_lines,
)
from harness.probes.parsers.common import Parsed

PARSERS: dict[str, Callable[[str], Parsed]] = {
    "tflite-benchmark": parse_tflite_benchmark,
    "ort-perf-test": parse_ort_perf_test,
    "ort-result-file": parse_ort_result_file,
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

# The kinds read line by line (raw lines with their ends in, the same result out): what they keep
# is a few fields, or (getprop) bounded. tegrastats streams its samples (reading.iter_tegrastats).
LINE_PARSERS: dict[str, Callable[[Iterable[str]], Parsed]] = {
    "ort-perf-test": ort_perf_test_from_lines,
    "dumpsys-battery": dumpsys_battery_from_lines,
    "power-supply": power_supply_from_lines,
    "vcgencmd": vcgencmd_from_lines,
    "proc-status": proc_status_from_lines,
    "getprop": getprop_from_lines,
}


def parse(kind: str, text: str) -> dict[str, Any]:
    """Parse ``text`` as ``kind`` and return the result as JSON-ready data."""
    parser = PARSERS.get(kind)
    if parser is None:
        raise ParseError(kind, f"unknown kind; known kinds: {', '.join(PARSERS)}")
    return parser(text).model_dump(mode="json")


__all__ = ["LINE_PARSERS", "PARSERS", "ParseError", "parse"]
