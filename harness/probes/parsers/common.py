"""Shared pieces of the device-output parsers: splitting and cleaning lines, reading numbers.

What a person pastes from a terminal carries prefixes (logcat, log timestamps, shell-loop labels),
CR line ends and maybe a cut last line; this module removes only what cannot be the tool's own
text and marks the cut line, so each parser reads its own format and nothing else.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ConfigDict

from harness.errors import ParseError

# A number that is whole: never the head of a longer one ("46." or "2.9e+" of a cut line, "2.0" of
# "2.0.1"), so a cut value is not read as a smaller one.
NUMBER = r"(?<![\d.])[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?![\d.]|[eE][-+]?(?:\d|$))"

# No tool line these parsers read is near this long; longer lines are dropped (and never held
# whole by the streaming reader), which also bounds the work a regular expression does per line.
MAX_LINE_CHARS = 4096

# What edgelab parse reads whole for the kinds that need the whole text, and what the streamed
# kinds may keep: a real capture of any of them is a few hundred kB at most.
MAX_TEXT_BYTES = 8 * 2**20

_CLOCK = r"\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?"
_ISO_DATE = rf"\d{{4}}-\d{{2}}-\d{{2}}[T ]{_CLOCK}(?:Z|[+-]\d{{2}}(?::?\d{{2}})?)?"
_BSD_DATE = rf"[A-Z][a-z]{{2}} [ \d]\d {_CLOCK}"
_LOGCAT_DATE = rf"(?:\d{{4}}-)?\d{{2}}-\d{{2}}\s+{_CLOCK}"

# Prefixes that no parsed format starts a line with. Each takes exactly one separator, so the
# indentation that follows (meminfo columns, getprop continuations) is left as the tool printed it.
# A tegrastats line starts with a date too, but "MM-DD-YYYY", which none of these match.
_PREFIX = re.compile(
    "|".join(
        (
            rf"(?:{_ISO_DATE}|{_BSD_DATE}) [\w.\-]+ [\w.\-/@]+\[\d+\]: ",  # syslog, journalctl
            rf"{_LOGCAT_DATE}\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*:\s",  # logcat threadtime
            rf"(?:{_LOGCAT_DATE}\s+)?[VDIWEF]/[^:(]*(?:\(\s*\d+\))?:\s",  # logcat brief / time
            r"[VDIWEF]\s+[\w.\-]+\s*:\s",  # logcat tag
            r"(?:INFO|WARN|WARNING|ERROR|FATAL|VERBOSE|DEBUG): ",  # LiteRT's logging wrapper
            r"\[\s*\d+\.\d+\] ",  # dmesg
            rf"{_CLOCK} ",  # HH:MM:SS(.mmm)
            r"\[[^\[\]\n]{1,64}\] ",  # a shell loop's "[run 3] "
            r"[\w.\-@:/]{1,64}\s*\| ",  # "rpi5 | ", docker compose's "rpi5  | "
        )
    )
)
# ISO 8601 (ts, docker logs -t) and ts' default "Nov 30 15:06:18": after one of them, a syslog
# line without a pid ("rpi5 vcgencmd: ") reads like content ("HAL Ready: true"), so it is
# removed only as a label (below).
_DATE = re.compile(rf"(?:{_ISO_DATE}|{_BSD_DATE}) ")
# "pixel8: " is also how many formats print a field ("status: Charging", "Graph: [m.tflite]"), so
# it is taken as a label only when one such label starts most lines of the input; two words
# ("rpi5 vcgencmd: ") only after a date.
_COLON_LABEL = re.compile(r"[\w.\-@]{1,64}(?: [\w.\-/@]{1,64})?: ")
_LABEL_WINDOW = 64  # non-blank lines looked at before deciding what a label is
_MAX_PREFIXES = 4  # "[run 3] pixel8: 15:06:18.123 I tflite  : ..." carries four


class Parsed(BaseModel):
    """Base of every parser result: frozen, and JSON-ready with ``model_dump()``."""

    model_config = ConfigDict(frozen=True)


class OpenLine(str):
    """The last line of an input that ends without a line end: it may have been cut anywhere."""

    __slots__ = ()


def split_lines(text: str) -> Iterator[str]:
    """Raw lines with their ends (LF, CRLF or a lone CR), as a file read line by line gives them."""
    return iter(io.StringIO(text, newline=""))


def _strip_prefixes(line: str, label: str | None) -> tuple[str, bool]:
    """The line without its prefixes, and whether the last one removed was a date."""
    dated = False
    for _ in range(_MAX_PREFIXES):
        found = _PREFIX.match(line) or _DATE.match(line)
        if found is not None and found.end():
            dated = found.re is _DATE
            line = line[found.end() :]
        elif label is not None and line.startswith(label) and (dated or " " not in label[:-2]):
            line, dated = line[len(label) :], False
        else:
            break
    return line, dated


def _dominant_label(lines: list[str]) -> str | None:
    """The label that starts more than half of these lines (twice at least), if one does."""
    words: Counter[str] = Counter()
    for line in lines:
        rest, dated = _strip_prefixes(line, None)
        found = _COLON_LABEL.match(rest)
        if found is not None and (dated or " " not in found.group()[:-2]):
            words[found.group()] += 1
    if not words:
        return None
    label, count = words.most_common(1)[0]
    return label if count >= 2 and count * 2 > len(lines) else None


class Lines:
    """The cleaned lines of one input, read lazily: line ends, prefixes and logcat markers gone,
    the last line an :class:`OpenLine` when the input ends without a line end."""

    def __init__(self, raw: Iterable[str]) -> None:
        self._raw = raw
        self.blank = True  # no line with text seen yet

    def _ended(self) -> Iterator[str]:
        for raw in self._raw:
            text = raw.rstrip("\r\n")
            if len(text) > MAX_LINE_CHARS:
                text = ""
            if text.strip():
                self.blank = False
            yield text if len(text) < len(raw) else OpenLine(text)

    def __iter__(self) -> Iterator[str]:
        lines = self._ended()
        window: list[str] = []
        filled = 0
        for line in lines:
            window.append(line)
            filled += 1 if line.strip() else 0
            if filled >= _LABEL_WINDOW or len(window) >= 4 * _LABEL_WINDOW:
                break
        label = _dominant_label([line for line in window if line.strip()])
        for source in (window, lines):
            for line in source:
                if line.startswith("--------- beginning of"):
                    continue
                cleaned, _ = _strip_prefixes(line, label)
                yield OpenLine(cleaned) if isinstance(line, OpenLine) else cleaned


def clean_lines(text: str) -> list[str]:
    """All cleaned lines of a text (for the parsers that need to look back or ahead)."""
    return list(Lines(split_lines(text)))


def refusal(kind: str, lines: Lines, missing: str, command: str) -> ParseError:
    """The error for input without any of the kind's fields: what was looked for (or that there
    was nothing at all) and the command whose output the kind reads."""
    if lines.blank:
        return ParseError(kind, f"the input is empty; capture the whole output of `{command}`")
    return ParseError(kind, f"{missing}; run `{command}`")


_INTEGER = re.compile(r"[-+]?\d{1,30}")


def to_float(text: str | None) -> float | None:
    """A finite float, or None: NaN and infinity are not readings."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def to_int(text: str | None) -> int | None:
    """An int, exact for long counters (ODPM, charge counters); None when not a finite number."""
    if text is None:
        return None
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped):
        return int(stripped)
    value = to_float(stripped)
    return None if value is None else round(value)


def first_int(text: str | None) -> int | None:
    """The leading integer of a value printed with a unit (``1400000 [kHz]``, ``1234 kB``)."""
    if text is None:
        return None
    head = text.split(maxsplit=1)
    return to_int(head[0]) if head else None
