"""The results table pytest prints at the end of a run, one line per result."""

from __future__ import annotations

from collections.abc import Sequence

from harness.record import ResultRecord

LOST_MARKERS = ("ConnectionLost", "TransportError", "ConnectError", "no answer from")


def terminal_lines(records: Sequence[ResultRecord]) -> list[tuple[str, bool]]:
    """(line, red) pairs: a header, a row per result, and one LOST DEVICE line per device whose
    connection was lost."""
    lines = [
        (
            f"{'device':<16} {'model':<18} {'runtime':<12} {'precision':<12} "
            f"{'median ms':>10} {'p90 ms':>9} {'peak MB':>8}  status",
            False,
        )
    ]
    for record in records:
        latency = record.latency_ms
        median = f"{latency.median:.3f}" if latency else "-"
        p90 = f"{latency.p90:.3f}" if latency else "-"
        peak = record.peak_rss_mb
        peak_text = f"{peak:.1f}" if peak is not None else "-"
        flags = ""
        if record.throttle is not None and record.throttle.throttled:
            flags += "  THROTTLED"
        elif record.throttle is not None and record.throttle.drifted:
            flags += "  DRIFTED"
        if record.comparison is not None:
            flags += f"  {record.comparison.verdict}"
        lines.append(
            (
                f"{record.device:<16} {record.model:<18} {record.runtime:<12} {record.precision:<12} "
                f"{median:>10} {p90:>9} {peak_text:>8}  {record.status}{flags}",
                False,
            )
        )
    lost: dict[str, str] = {}
    for record in records:
        error = record.error or ""
        if record.status in ("error", "failed") and any(marker in error for marker in LOST_MARKERS):
            lost.setdefault(record.device, error.splitlines()[0][:160])
    lines += [(f"LOST DEVICE {device}: {error}", True) for device, error in lost.items()]
    return lines
