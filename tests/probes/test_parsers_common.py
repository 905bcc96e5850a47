"""What every parser gets from common.py: prefixes of terminals and logs removed once and only
where they cannot be the tool's own text, line ends of any kind, a cut last line marked, and
numbers that are never the head of a longer one."""

from __future__ import annotations

import re

import pytest

from harness.probes.parsers.common import (
    MAX_LINE_CHARS,
    NUMBER,
    Lines,
    OpenLine,
    clean_lines,
    first_int,
    split_lines,
    to_float,
    to_int,
)

TEGRASTATS = "11-30-2026 15:06:18 RAM 1534/3956MB CPU [12%@1479]"


@pytest.mark.parametrize(
    ("prefixed", "content"),
    [
        ("pixel8: level: 23", "level: 23"),
        ("[run 3] count=50 avg=9.1", "count=50 avg=9.1"),
        ("rpi5 | throttled=0x0", "throttled=0x0"),
        ("rpi5  | throttled=0x0", "throttled=0x0"),  # docker compose pads the name
        ("2026-11-30T15:06:18.123Z temp=48.3'C", "temp=48.3'C"),
        ("2026-11-30T15:06:18+01:00 temp=48.3'C", "temp=48.3'C"),
        ("2026-11-30 15:06:18,123 temp=48.3'C", "temp=48.3'C"),
        ("Nov 30 15:06:18 rpi5 vcgencmd[123]: temp=48.3'C", "temp=48.3'C"),
        ("Nov  3 15:06:18 rpi5 logger: temp=48.3'C", "temp=48.3'C"),
        ("Nov 30 15:06:18 temp=48.3'C", "temp=48.3'C"),  # ts' default format
        ("[  123.456789] temp=48.3'C", "temp=48.3'C"),
        ("15:06:18.123 temp=48.3'C", "temp=48.3'C"),
        ("15:06:18 temp=48.3'C", "temp=48.3'C"),
        ("01-02 03:04:05.678  4321  4321 I tflite  : count=50", "count=50"),
        ("01-02 03:04:05.678 I/tflite  ( 4321): count=50", "count=50"),
        ("I/tflite  ( 4321): count=50", "count=50"),
        ("I/tflite: count=50", "count=50"),
        ("I tflite  : count=50", "count=50"),
        # several at once, in any order
        ("[run 3] 15:06:18.123 rpi5 | temp=48.3'C", "temp=48.3'C"),
        ("2026-11-30T15:06:18Z [run 3] I tflite  : count=50", "count=50"),
        # the tool's own text is left as it is
        (TEGRASTATS, TEGRASTATS),
        ("jetson | " + TEGRASTATS, TEGRASTATS),
        ("[ro.product.model]: [Pixel 8]", "[ro.product.model]: [Pixel 8]"),
        ("[run 3] [ro.product.model]: [Pixel 8]", "[ro.product.model]: [Pixel 8]"),
        ("  Native Heap    80860    80824", "  Native Heap    80860    80824"),
        ("status: Charging", "status: Charging"),
        ("VmPeak: 3976524 kB", "VmPeak: 3976524 kB"),
        ("Graph: [/data/local/tmp/m.tflite]", "Graph: [/data/local/tmp/m.tflite]"),
        ("Session creation time cost: 1.14476 s", "Session creation time cost: 1.14476 s"),
        ("CH0(T=349894)[S10M_VDD_TPU], 5578756", "CH0(T=349894)[S10M_VDD_TPU], 5578756"),
        ("\tTemperature{mValue=38.0, mType=3}", "\tTemperature{mValue=38.0, mType=3}"),
    ],
)
def test_prefixes_go_and_content_stays(prefixed, content):
    prefix = prefixed[: len(prefixed) - len(content)]  # a capture carries it on every line
    assert clean_lines(f"{prefixed}\n{prefix}scale: 100\n") == [content, "scale: 100"]
    assert clean_lines(f"{prefixed}\n")[0].endswith(content)  # alone, a label may stay (it may be content)


def test_a_syslog_line_without_a_pid_reads_like_content_until_it_repeats():
    assert clean_lines("2026-11-30T15:06:18Z HAL Ready: true\n") == ["HAL Ready: true"]
    assert clean_lines("2026-11-30T15:06:18Z rpi5 vcgencmd: temp=48.3'C\n" * 2) == ["temp=48.3'C"] * 2
    assert clean_lines("HAL Ready: true\nHAL Ready: true\n") == ["HAL Ready: true"] * 2  # no date: content


def test_the_indentation_after_a_prefix_is_kept_for_column_positions():
    header = "                   Pss  Private"
    row = "  Native Heap    80860    80824"
    for prefix in ("[  123.456789] ", "I meminfo: ", "15:06:18.123 ", "pixel8: "):
        assert clean_lines(f"{prefix}{header}\n{prefix}{row}\n") == [header, row]


def test_a_word_colon_is_a_label_only_when_it_starts_most_lines():
    fields = "status: Charging\ncapacity: 81\nstatus: Full\ncapacity: 100\n"
    assert clean_lines(fields) == fields.splitlines()  # two fields, 50 % each: content
    labelled = "pixel8: throttled=0x0\npixel8: temp=48.3'C\nrpi5: volt=0.85V\n"
    assert clean_lines(labelled) == ["throttled=0x0", "temp=48.3'C", "rpi5: volt=0.85V"]
    assert clean_lines("pixel8: throttled=0x0\n") == ["pixel8: throttled=0x0"]  # one line: undecidable


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_line_ends_of_every_kind(end):
    assert clean_lines(f"a{end}b{end}") == ["a", "b"]
    lines = list(Lines(split_lines(f"a{end}b")))
    assert lines == ["a", "b"] and isinstance(lines[1], OpenLine) and not isinstance(lines[0], OpenLine)


def test_logcat_markers_and_overlong_lines_are_dropped():
    text = f"--------- beginning of main\n{'9' * (MAX_LINE_CHARS + 1)}\nlevel: 5\n"
    assert clean_lines(text) == ["", "level: 5"]


def test_empty_input_is_said_to_be_empty():
    lines = Lines(split_lines(" \n\t\n"))
    assert list(lines) == [" ", "\t"] and lines.blank


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("avg=2.95034e+06 std=1", ["2.95034e+06", "1"]),
        ("overall=46.0859", ["46.0859"]),
        ("overall=46.", []),  # a cut decimal point
        ("avg=2.95034e", []),  # a cut exponent
        ("avg=2.95034e+", []),
        ("version 2.0.1", []),  # not a number at all
        ("15%@729,-256C", ["15", "729", "-256"]),
        ("12479mW/12479mW", ["12479", "12479"]),
    ],
)
def test_a_number_is_never_the_head_of_a_longer_one(text, numbers):
    assert [m.group() for m in re.finditer(NUMBER, text)] == numbers


def test_conversions_refuse_what_is_not_a_finite_number():
    assert to_float("nan") is None and to_float("inf") is None and to_float("1e999") is None
    assert to_int("98765432109876543210") == 98765432109876543210  # exact for long counters
    assert to_int("-1e999") is None and to_int("x") is None and to_int("3.6") == 4
    assert first_int("1400000 [kHz]") == 1400000 and first_int("") is None
