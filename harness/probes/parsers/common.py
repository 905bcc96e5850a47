"""Shared pieces of the device-output parsers: line cleaning and number reading."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from harness.errors import ParseError

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

# logcat prefixes: threadtime ("01-02 03:04:05.678  1234  1234 I tflite  : "), brief
# ("I/tflite  ( 1234): ", "I/tflite: ") and tag ("I tflite  : ").
_LOGCAT = re.compile(
    r"^(?:\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*?\s*:\s"
    r"|[VDIWEF]/[^:(]+?\s*(?:\(\s*\d+\))?:\s"
    r"|[VDIWEF]\s+[\w.\-]+\s*:\s)"
)


class Parsed(BaseModel):
    """Base of every parser result: frozen, and JSON-ready with ``model_dump()``."""

    model_config = ConfigDict(frozen=True)


def clean_lines(text: str) -> list[str]:
    """Lines without CR, logcat prefixes and ``--------- beginning of main`` markers."""
    lines = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw.startswith("--------- beginning of"):
            continue
        lines.append(_LOGCAT.sub("", raw, count=1))
    return lines


def to_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def to_int(text: str | None) -> int | None:
    value = to_float(text)
    return None if value is None else round(value)


def require_text(kind: str, text: str) -> None:
    if not text.strip():
        raise ParseError(kind, "the input is empty; capture the command's whole output")
