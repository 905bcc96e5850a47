"""``edgelab parse`` on files and standard input: the line-oriented kinds are read line by line
(tegrastats sample by sample, straight to the output) and the others whole under a size limit
checked before reading; memory is measured with tracemalloc as a multiple of the input size."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ParseError
from harness.probes.parsers import PARSERS
from harness.probes.parsers.common import MAX_LINE_CHARS, MAX_TEXT_BYTES
from harness.probes.parsers.reading import parse_file

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-outputs"
TEGRASTATS = (REAL / "tegrastats" / "orin_nano_8gb_jp6_two_captures.txt").read_text()


def peak_bytes(action, warm_up=None) -> int:
    """The most memory the action held at once, after a first (small) run has filled the caches
    every later run shares (compiled expressions, pydantic's serializers)."""
    (warm_up or action)()
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def drain(kind: str, path: Path) -> str:
    return "".join(parse_file(kind, str(path), io.BytesIO()))


def count_samples(path: Path) -> int:
    """Writes nothing down: each piece of output is dropped as it comes, as a terminal would."""
    return sum(piece.count('"timestamp"') for piece in parse_file("tegrastats", str(path), io.BytesIO()))


def test_the_cli_prints_what_the_parser_returns(tmp_path, capsys):
    path = tmp_path / "tegrastats.log"
    path.write_text(TEGRASTATS)
    assert main(["parse", "tegrastats", str(path)]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == json.loads(PARSERS["tegrastats"](TEGRASTATS).model_dump_json())
    assert printed == PARSERS["tegrastats"](TEGRASTATS).model_dump_json(indent=2) + "\n"
    meminfo = REAL / "dumpsys_meminfo" / "honor_android14_memorylab_meminfo.txt"
    assert main(["parse", "dumpsys-meminfo", str(meminfo)]) == 0
    assert json.loads(capsys.readouterr().out)["total_pss_kb"] == 337790


def test_tegrastats_is_streamed_in_memory_that_does_not_grow_with_the_file(tmp_path):
    lines = TEGRASTATS.splitlines(keepends=True)
    small, large = tmp_path / "small.log", tmp_path / "large.log"
    small.write_text("".join(lines * 100))  # 200 samples
    large.write_text("".join(lines * 800))  # 1600 samples, 520 kB
    counted: list[int] = []
    small_peak = peak_bytes(lambda: counted.append(count_samples(small)))
    large_peak = peak_bytes(lambda: counted.append(count_samples(large)), warm_up=lambda: None)
    assert counted == [200, 200, 1600]
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)  # 8x the input, not 8x the memory
    assert large_peak < large.stat().st_size / 4


def test_line_kinds_keep_their_fields_whatever_the_input_size(tmp_path):
    path = tmp_path / "uevent.txt"
    path.write_text("POWER_SUPPLY_CAPACITY=81\n" + "POWER_SUPPLY_JUNK_FIELD=1234567890\n" * 30_000)
    size = path.stat().st_size
    result: dict[str, str] = {}
    peak = peak_bytes(lambda: result.update(text=drain("power-supply", path)))
    assert json.loads(result["text"])["capacity_pct"] == 81
    assert peak < size / 20, f"{peak} bytes held for {size} bytes of input"


def test_a_whole_text_kind_refuses_a_huge_file_before_reading_it(tmp_path, capsys):
    path = tmp_path / "meminfo.txt"
    with path.open("wb") as handle:
        handle.truncate(2 * 2**30)  # a sparse 2 GiB file: nothing to read unless someone reads it
    codes: list[int] = []
    peak = peak_bytes(lambda: codes.append(main(["parse", "dumpsys-meminfo", str(path)])))
    messages = capsys.readouterr().err.splitlines()
    assert codes == [1, 1] and peak < 2**20 and len(messages) == 2 and messages[0] == messages[1]
    assert messages[0].startswith(f"edgelab: error: dumpsys-meminfo: {path} is 2147.5 MB, over the 8 MiB")
    assert messages[0].endswith(
        "one capture of `adb shell dumpsys meminfo PID|PACKAGE` is a few hundred kB: keep one capture in the file"
    )


def test_standard_input_over_the_limit_is_refused_after_reading_the_limit_only():
    data = io.BytesIO(b"TOTAL PSS: 5\n" * (MAX_TEXT_BYTES // 13 + 2))
    with pytest.raises(ParseError, match="standard input holds more than the 8 MiB"):
        drain_stdin("dumpsys-meminfo", data)
    assert data.tell() == MAX_TEXT_BYTES + 1


def drain_stdin(kind: str, data: io.BytesIO) -> str:
    return "".join(parse_file(kind, "-", data))


def test_standard_input_and_bytes_that_are_not_utf8():
    data = io.BytesIO(b"\xff\xfe\x00garbage\r\nthrottled=0x50005\r\n\x80temp=48.3'C\r\n")
    result = json.loads(drain_stdin("vcgencmd", data))
    assert (result["throttled_raw"], result["temp_c"]) == (0x50005, 48.3)
    assert not data.closed  # standard input stays open


def test_an_overlong_line_is_skipped_without_being_held(tmp_path):
    path = tmp_path / "status.txt"
    path.write_bytes(b"Name:\tpython\n" + b"9" * (4 * 2**20) + b"\nVmRSS:\t  1234 kB\n")
    result: dict[str, str] = {}
    peak = peak_bytes(lambda: result.update(text=drain("proc-status", path)))
    assert (json.loads(result["text"])["name"], json.loads(result["text"])["rss_kb"]) == ("python", 1234)
    assert peak < 64 * MAX_LINE_CHARS, peak


def test_nothing_is_printed_before_a_refusal(tmp_path, capsys):
    path = tmp_path / "not-tegrastats.txt"
    path.write_text("Linux ubuntu 5.15.0-tegra\n" * 1000)
    assert main(["parse", "tegrastats", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("edgelab: error: tegrastats: no line with 'RAM used/totalMB'")
    assert "tegrastats --interval 100" in captured.err


def test_unreadable_files_are_named(tmp_path, capsys):
    assert main(["parse", "odpm", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"edgelab: error: {tmp_path}: cannot read (Is a directory)\n"
    assert main(["parse", "odpm", str(tmp_path / "missing")]) == 1
    assert "cannot read (No such file or directory)" in capsys.readouterr().err
    with pytest.raises(ParseError, match="unknown kind; known kinds: tflite-benchmark"):
        drain("nvidia-smi", tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_a_pipe_has_no_size_and_is_read_up_to_the_limit(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = os.fork()
    if writer == 0:  # the child fills the pipe and leaves
        try:
            with open(fifo, "wb") as handle:
                handle.write(b"Thermal Status: 3\n")
        finally:
            os._exit(0)
    try:
        assert json.loads(drain("dumpsys-thermalservice", fifo))["thermal_status"] == 3
    finally:
        os.waitpid(writer, 0)
