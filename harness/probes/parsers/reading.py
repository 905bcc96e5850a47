"""Reading a capture for ``edgelab parse``: the line-oriented kinds line by line (tegrastats
sample by sample, straight to the output), the others whole under a size limit checked before
the file is read, so memory stays bounded whatever the file's size.

Bytes that are not UTF-8 are replaced (U+FFFD), as a terminal would show them.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from harness.errors import EdgeLabError, ParseError
from harness.probes.parsers import LINE_PARSERS, PARSERS
from harness.probes.parsers.boards import TegrastatsSample, iter_tegrastats
from harness.probes.parsers.common import MAX_LINE_CHARS, MAX_TEXT_BYTES, Parsed

# The command whose one capture fits the limit many times over, for the kinds read whole.
_ONE_CAPTURE = {
    "tflite-benchmark": "benchmark_model --graph=MODEL.tflite",
    "dumpsys-meminfo": "adb shell dumpsys meminfo PID|PACKAGE",
    "dumpsys-thermalservice": "adb shell dumpsys thermalservice",
    "odpm": "adb shell cat /sys/bus/iio/devices/iio:device0/energy_value",
    "cpufreq": "grep -r . /sys/devices/system/cpu/cpufreq/",
}


def parse_file(kind: str, path: str, stdin: BinaryIO) -> Iterator[str]:
    """The JSON text of ``edgelab parse KIND PATH``, in pieces to write as they come; ``-`` reads
    ``stdin``. Errors (unknown kind, unreadable file, input too large, not the format) are raised
    before the first piece."""
    if kind not in PARSERS:
        raise ParseError(kind, f"unknown kind; known kinds: {', '.join(PARSERS)}")
    name = "standard input" if path == "-" else path
    try:
        opened: contextlib.AbstractContextManager[BinaryIO] = (
            contextlib.nullcontext(stdin) if path == "-" else open(path, "rb")  # noqa: SIM115
        )
    except OSError as exc:
        raise EdgeLabError(f"{path}: cannot read ({exc.strerror})") from None
    with opened as handle:
        if kind == "tegrastats":
            yield from _samples_json(iter_tegrastats(_lines(handle)))
        elif kind in LINE_PARSERS:
            yield _json(LINE_PARSERS[kind](_lines(handle)))
        else:
            yield _json(PARSERS[kind](_whole_text(kind, name, handle)))


def _lines(handle: BinaryIO) -> Iterator[str]:
    """Raw lines with their ends, as ``split_lines`` gives them from a text; a line longer than
    any tool prints is skipped without being held (an empty line stands in for it)."""
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline="")
    limit = MAX_LINE_CHARS + 2  # a longest line and its CRLF
    after_cr = False  # a read can end between the CR and the LF of one line end
    try:
        while piece := text.readline(limit):
            if after_cr and piece == "\n":
                after_cr = False
                continue
            if len(piece) == limit and not piece.endswith(("\n", "\r")):
                while (piece := text.readline(limit)) and not piece.endswith(("\n", "\r")):
                    pass
                after_cr = piece.endswith("\r")
                yield "\n"
                continue
            after_cr = piece.endswith("\r")
            yield piece
    finally:
        text.detach()  # the caller owns the handle (standard input stays open)


def _size(handle: BinaryIO) -> int | None:
    """The size of a regular file, known before reading it; None for a pipe or a terminal."""
    try:
        status = os.fstat(handle.fileno())
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def _whole_text(kind: str, name: str, handle: BinaryIO) -> str:
    size = _size(handle)
    if size is None or size <= MAX_TEXT_BYTES:
        data = handle.read(MAX_TEXT_BYTES + 1)
        if len(data) <= MAX_TEXT_BYTES:
            return data.decode("utf-8", errors="replace")
    limit = f"the {MAX_TEXT_BYTES // 2**20} MiB that `edgelab parse {kind}` reads"
    oversized = size is not None and size > MAX_TEXT_BYTES  # else a pipe, or a file still growing
    held = f"is {size / 1e6:.1f} MB, over {limit}" if size and oversized else f"holds more than {limit}"
    raise ParseError(
        kind,
        f"{name} {held}; one capture of `{_ONE_CAPTURE.get(kind, kind)}` is a few hundred kB: "
        "keep one capture in the file",
    )


def _json(result: Parsed) -> str:
    return result.model_dump_json(indent=2) + "\n"


def _samples_json(samples: Iterator[TegrastatsSample]) -> Iterator[str]:
    """``{"samples": [...]}`` written as the samples come, byte for byte what ``_json`` writes
    for the whole list."""
    for index, sample in enumerate(samples):
        dumped = "    " + sample.model_dump_json(indent=2).replace("\n", "\n    ")
        yield ('{\n  "samples": [\n' if index == 0 else ",\n") + dumped
    yield "\n  ]\n}\n"
