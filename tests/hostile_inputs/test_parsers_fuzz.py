"""Every ``edgelab parse`` kind driven by hypothesis with random text built from the formats'
own tokens and with mutated real outputs (byte flips, truncation, duplicated and shuffled lines,
huge numbers, NaN/inf, bytes that are not UTF-8 through the CLI's reading path). Each call
returns a result that validates again from its own JSON, or raises ParseError: nothing else.

Bounds per example: memory measured with tracemalloc as a multiple of the input size, time as
hypothesis' own (generous) deadline; and, for the lines each format's expressions find hardest,
the CPU time of long lines as a ratio to the same characters in short lines, within one run (a
quadratic expression shows as a ratio near 16, a linear one near 1).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ParseError
from harness.probes.parsers import PARSERS
from harness.probes.parsers.common import MAX_LINE_CHARS, Parsed
from harness.probes.parsers.reading import parse_file

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-outputs"
SAMPLES = sorted(path for path in REAL.glob("*/*.txt") if not path.name.endswith(".source.txt"))
KINDS = list(PARSERS)
# Memory a parser may hold per byte of input: a tegrastats line becomes a few dozen small models.
BYTES_HELD_PER_INPUT_BYTE = 200
BYTES_HELD_AT_LEAST = 256 * 1024
FUZZ = settings(
    max_examples=40,
    deadline=timedelta(seconds=30),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Pieces of every format, so random text reaches deep into each parser.
TOKENS = [
    "\n",
    "\r\n",
    "\r",
    " ",
    "  ",
    "\t",
    ":",
    ": ",
    "=",
    "[",
    "]",
    "]: [",
    "{",
    "}",
    ",",
    "%",
    "@",
    "/",
    "0",
    "7",
    "42",
    "0.5",
    "-256",
    "1e+06",
    "2.95034e",
    "9" * 40,
    "1e999",
    "nan",
    "inf",
    "-inf",
    "0x50005",
    "RAM 1534/3956MB ",
    "SWAP 0/1978MB (cached 0MB) ",
    "CPU [",
    "12%@1479,",
    "off,",
    "EMC_FREQ ",
    "GR3D_FREQ ",
    "63%@[621]",
    "APE 25 ",
    "NVENC 1%@115 ",
    "cpu@53.9C ",
    "VDD_IN 5000mW/4800mW ",
    "POM_5V_IN 2431/2431 ",
    "11-30-2026 15:06:18 ",
    "throttled=",
    "temp=48.3'C",
    "frequency(48)=",
    "volt=0.85V",
    "count=50 ",
    "first=",
    "avg=",
    "std=",
    "Inference timings in us: ",
    "Init: ",
    "Inference (avg): ",
    "Running benchmark for at least 50 iterations",
    "Peak memory footprint (MB): init=4 overall=",
    "Average inference time cost: ",
    " ms",
    " s",
    "P50 Latency: ",
    "Runs:",
    " is ",
    " sec",
    "** MEMINFO in pid 1 [x] **",
    "Pss  Private",
    "Total    Dirty",
    "  Native Heap ",
    "TOTAL PSS: ",
    "App Summary",
    "Pss(KB)",
    "Rss(KB)",
    "Java Heap: ",
    "Objects",
    "Views: ",
    "  level: ",
    "  status: ",
    "  voltage: ",
    "UPDATES STOPPED",
    "POWER_SUPPLY_",
    "CAPACITY=",
    "CURRENT_NOW=",
    "/sys/class/power_supply/battery/",
    "Thermal Status: ",
    "Temperature{mValue=",
    ", mType=",
    ", mName=",
    "CoolingDevice{",
    "HAL Ready: ",
    "t=",
    "CH0(T=",
    ")[",
    "S2M_VDD_CPUCL2",
    "], ",
    "Name:\t",
    "VmRSS:\t",
    " kB",
    "Threads:\t",
    "policy0/",
    "cpu1/cpufreq/",
    "scaling_max_freq",
    " [kHz]",
    "[ro.product.model]: [",
    "Pixel 8]",
    "pixel8: ",
    "[run 3] ",
    "rpi5 | ",
    "2026-11-30T15:06:18.123Z ",
    "[  12.5] ",
    "15:06:18.123 ",
    "01-02 03:04:05.678  1  1 I tflite  : ",
    "--------- beginning of main",
]
random_text = st.lists(st.sampled_from(TOKENS) | st.text(max_size=8), max_size=120).map("".join)


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """A real output with one to four mutations applied."""
    data = bytearray(draw(st.sampled_from(SAMPLES)).read_bytes())
    for _ in range(draw(st.integers(1, 4))):
        lines = data.splitlines(keepends=True) or [b""]
        operation = draw(
            st.sampled_from(["flip", "truncate", "duplicate", "shuffle", "huge", "nonfinite", "bytes"])
        )
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if operation == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif operation == "truncate":
            data = data[:at]
        elif operation == "duplicate":
            index = draw(st.integers(0, len(lines) - 1))
            data = bytearray(
                b"".join(lines[:index] + [lines[index]] * draw(st.integers(2, 200)) + lines[index:])
            )
        elif operation == "shuffle":
            data = bytearray(b"".join(draw(st.permutations(lines))))
        elif operation in ("huge", "nonfinite"):
            digits = [i for i, byte in enumerate(data) if chr(byte).isdigit()]
            if digits:
                where = draw(st.sampled_from(digits))
                number = (
                    draw(st.sampled_from([b"9" * 5000, b"1" + b"0" * 400, b"1e999", b"-1e308", b"4" * 30]))
                    if operation == "huge"
                    else draw(st.sampled_from([b"nan", b"NaN", b"inf", b"-inf", b"Infinity"]))
                )
                data[where : where + 1] = number
        elif operation == "bytes":
            data[at:at] = draw(st.binary(min_size=1, max_size=16).filter(lambda b: b[0] >= 0x80 or b[0] == 0))
    return bytes(data)


def nothing_nonfinite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(nothing_nonfinite(v) for v in value.values())
    if isinstance(value, list):
        return all(nothing_nonfinite(v) for v in value)
    return True


def check(kind: str, text: str) -> None:
    """The parser returns a result that validates again from its own JSON, or refuses with
    ParseError; and it held at most a bounded multiple of the input while doing so."""
    tracemalloc.start()
    try:
        result = PARSERS[kind](text)
    except ParseError as refusal:
        assert str(refusal).startswith(f"{kind}: ") and "\n" not in str(refusal)
        return
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        bound = BYTES_HELD_PER_INPUT_BYTE * len(text.encode()) + BYTES_HELD_AT_LEAST
        assert peak <= bound, f"{kind}: held {peak} bytes for {len(text)} characters"
    assert isinstance(result, Parsed)
    dumped = result.model_dump_json()
    assert type(result).model_validate_json(dumped) == result
    assert nothing_nonfinite(result.model_dump())


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(text=random_text)
def test_random_text_is_parsed_or_refused(kind, text):
    check(kind, text)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=mutated_bytes())
def test_mutated_real_outputs_are_parsed_or_refused(kind, data):
    check(kind, data.decode("utf-8", errors="replace"))


@pytest.mark.parametrize("kind", KINDS)
@settings(FUZZ, max_examples=15)
@given(data=mutated_bytes())
def test_mutated_bytes_through_the_cli_reading_path(kind, data):
    try:
        output = "".join(parse_file(kind, "-", io.BytesIO(data)))
    except ParseError as refusal:
        assert str(refusal).startswith(f"{kind}: ")
        return
    text = data.decode("utf-8", errors="replace")
    assert json.loads(output) == json.loads(PARSERS[kind](text).model_dump_json())  # as read whole
    assert nothing_nonfinite(json.loads(output))


# The hardest lines for each family of expressions: long runs of what the patterns repeat on.
WORST_PATTERNS = [
    " ",
    ":",
    "[",
    "9",
    "a",
    "CPU [",
    "CH1(T=1)[",
    "count=1 ",
    "x: 1 ",
    "A 1 ",
    "RAM 1/1MB @",
    "1.",
    "mValue=",
    "/policy1/",
    "Temperature{",
    "[k]: [v",
    "TOTAL:",
    "Views: 1 ",
]


def cpu_seconds(kind: str, text: str) -> float:
    best = math.inf
    for _ in range(3):
        started = time.process_time()
        with contextlib.suppress(ParseError):
            PARSERS[kind](text)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize("kind", KINDS)
def test_work_grows_with_the_input_not_with_the_square_of_a_line(kind):
    """The same characters as 20 longest lines or as 320 lines 16 times shorter: the same work
    if every expression is linear in its line, 16 times more for a quadratic one."""
    for pattern in WORST_PATTERNS:
        long_line = (pattern * MAX_LINE_CHARS)[:MAX_LINE_CHARS]
        short_line = long_line[: MAX_LINE_CHARS // 16]
        ratio = cpu_seconds(kind, (long_line + "\n") * 20) / max(
            cpu_seconds(kind, (short_line + "\n") * 320), 1e-4
        )
        assert ratio < 4, f"{kind}: lines of {pattern!r} cost {ratio:.1f} times more when 16 times longer"
