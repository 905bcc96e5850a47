"""Shared pieces of the device-output parsers: the result base class, line cleaning, numbers."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from pydantic import BaseModel, ConfigDict

from harness.errors import ParseError

# A decimal number as device tools print it, scientific notation included (``2.95034e+06``).
NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"

# logcat line prefixes, removed before parsing:
#   threadtime  "01-02 03:04:05.678  1234  1234 I tflite  : " (optionally with year / uid)
#   time        "01-02 03:04:05.678 I/tflite( 1234): "
#   brief       "I/tflite  ( 1234): "  and  "I/tflite: "
#   tag         "I tflite  : "
_LOGCAT = re.compile(
    r"^(?:"
    r"(?:\d{4}-)?\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}\.\d+\s+(?:[A-Za-z]\w*\s+)?\d+\s+\d+\s+[VDIWEFA]\s+[^:]*?\s*:\s?"
    r"|(?:\d{4}-)?\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}\.\d+\s+[VDIWEFA]/[^:(]*?\s*(?:\(\s*\d+\))?\s*:\s?"
    r"|[VDIWEFA]/[^:(\s][^:(]*?\s*(?:\(\s*\d+\))?\s*:\s?"
    r"|[VDIWEFA]\s+[A-Za-z_][\w.\-/]*\s*:\s"
    r")"
)


class Result(BaseModel):
    """Base of every parser result: frozen, unknown fields rejected, JSON-ready via model_dump."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def clean_lines(text: str) -> list[str]:
    """The input's lines: CRLF/CR normalised, BOM, logcat prefixes and logcat banners removed,
    trailing whitespace stripped. Blank lines are kept (as empty strings)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines: list[str] = []
    for raw in text.split("\n"):
        if raw.startswith("--------- beginning of") or raw.startswith("--------- switch to"):
            continue
        lines.append(_LOGCAT.sub("", raw, count=1).rstrip())
    return lines


def require_text(kind: str, text: str, hint: str) -> list[str]:
    """Cleaned lines of ``text``; ParseError when there is nothing but whitespace."""
    lines = clean_lines(text)
    if not any(line.strip() for line in lines):
        raise ParseError(kind, f"the input is empty; {hint}")
    return lines


def to_float(value: str | None) -> float | None:
    """A finite float, or None for a missing, unparseable, NaN or infinite value."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def to_int(value: str | None) -> int | None:
    """An int (integral floats such as ``1e+03`` accepted), else None."""
    number = to_float(value)
    return None if number is None else round(number)


def scaled(value: str | None, factor: str) -> float | None:
    """``value * factor`` computed in decimal, so ``0.0826095 s`` becomes exactly ``82.6095`` ms."""
    if value is None:
        return None
    try:
        number = Decimal(value.strip()) * Decimal(factor)
    except InvalidOperation:
        return None
    return float(number) if number.is_finite() else None


def snake(name: str) -> str:
    """``Native Heap`` -> ``native_heap``; ``Pss(KB)`` -> ``pss_kb``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")
