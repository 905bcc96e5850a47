"""The results table pytest prints at the end of a run, one line per result.

Column widths follow the content (``int8-dynamic``, long test names), every column has a header,
and a device that was never reached or was lost gets one red line of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.record import ResultRecord
from harness.report.data import grid_test
from harness.report.html import format_ms

LOST_MARKERS = ("ConnectionLost", "TransportError", "no answer from")
UNREACHED_MARKERS = ("ConnectError", "HostKeyError")
HEADERS = (
    "test",
    "device",
    "model",
    "runtime",
    "precision",
    "kind",
    "median ms",
    "p90 ms",
    "peak MB",
    "status",
)
RIGHT = {"median ms", "p90 ms", "peak MB"}
MAX_TEST = 48


def _test(record: ResultRecord) -> str:
    name = grid_test(record).rsplit("::", 1)[-1]
    return name if len(name) <= MAX_TEST else name[: MAX_TEST - 1] + "…"


def _status(record: ResultRecord) -> str:
    flags: str = record.status
    throttle = record.throttle
    if throttle is not None and throttle.throttled:
        flags += " THROTTLED"
    elif throttle is not None and throttle.drifted:
        flags += " DRIFTED"
    if record.comparison is not None:
        flags += f" {record.comparison.verdict}"
    return flags


def terminal_lines(records: Sequence[ResultRecord]) -> list[tuple[str, bool]]:
    """(line, red) pairs: a header, a row per result, then one line per device that was never
    reached (UNREACHED) or whose connection was lost (LOST DEVICE)."""
    rows = []
    for record in records:
        latency = record.latency_ms
        peak = record.peak_rss_mb
        rows.append(
            (
                _test(record),
                record.device,
                record.model,
                record.runtime,
                record.precision,
                record.kind,
                format_ms(latency.median) if latency else "-",
                format_ms(latency.p90) if latency else "-",
                f"{peak:.1f}" if peak is not None else "-",
                _status(record),
            )
        )
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in enumerate(HEADERS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if header in RIGHT else cell.ljust(width)
            for cell, width, header in zip(cells, widths, HEADERS, strict=True)
        ).rstrip()

    lines = [(line(HEADERS), False)]
    lines += [
        (line(row), record.status in ("failed", "error")) for row, record in zip(rows, records, strict=True)
    ]
    problems: dict[str, str] = {}
    for record in records:
        error = record.error or ""
        if record.status not in ("error", "failed") or record.device in problems:
            continue
        first = error.splitlines()[0][:200] if error else ""
        if any(marker in error for marker in UNREACHED_MARKERS):
            problems[record.device] = f"UNREACHED DEVICE {record.device}: {first}"
        elif any(marker in error for marker in LOST_MARKERS):
            problems[record.device] = f"LOST DEVICE {record.device}: {first}"
    lines += [(text, True) for text in problems.values()]
    return lines
