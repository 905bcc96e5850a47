"""TFLite / LiteRT ``benchmark_model`` output (TF 1.x ``Average inference timings`` to LiteRT)."""

from __future__ import annotations

import re

from harness.errors import ParseError
from harness.parsers._common import NUM, Result, require_text, to_float

KIND = "tflite-benchmark"
HINT = "is this the output of benchmark_model (--graph=MODEL.tflite)?"


class RunStats(Result):
    """One ``count=N first=.. curr=.. min=.. max=.. avg=.. std=..`` line (microseconds)."""

    count: int | None = None
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None


class TfliteBenchmark(Result):
    model_file: str | None = None
    model_size_mb: float | None = None
    num_threads: int | None = None
    init_session_ms: float | None = None
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    count: int | None = None
    warmup: RunStats | None = None
    steady: RunStats | None = None
    memory_footprint_kind: str | None = None  # "delta" (TF >= 2.5 wording) or "peak" (older)
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None  # "Overall peak memory footprint (MB) via periodic monitoring"
    end_vm_rss_mb: float | None = None  # "Memory status at the end of exeution: - VmRSS : N MB"


# TFLite's own log prefix (TF >= 2.12 prints every line as "INFO: ...").
_LOG_LEVEL = re.compile(r"^(?:INFO|WARNING|ERROR|VERBOSE|DEBUG):\s*")
_STATS_KEYS = {
    "first": "first_us",
    "curr": "curr_us",
    "min": "min_us",
    "max": "max_us",
    "avg": "avg_us",
    "std": "std_us",
    "p5": "p5_us",
    "median": "median_us",
    "p95": "p95_us",
}
_STATS_LINE = re.compile(r"^count=(\d+)\b(.*)$")
_PAIR = re.compile(r"(\w+)=(\S+)")
_TIMINGS = re.compile(r"inference timings in us\s*:\s*(.*)$", re.IGNORECASE)
_TIMING_KEYS = {
    "init": "init_us",
    "first inference": "first_inference_us",
    "warmup (avg)": "warmup_avg_us",
    "warmup": "warmup_avg_us",
    "inference (avg)": "avg_us",
    "inference": "avg_us",
    "no stats": "avg_us",
}
_MEMORY = re.compile(
    rf"^(Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):"
    rf"\s*init=({NUM}|-?nan|-?inf)\s+overall=({NUM}|-?nan|-?inf)",
    re.IGNORECASE,
)


def _stats(rest: str, count: str) -> RunStats:
    values: dict[str, float | None] = {}
    for key, value in _PAIR.findall(rest):
        if key in _STATS_KEYS:
            values[_STATS_KEYS[key]] = to_float(value)
    return RunStats(count=int(count), **values)


def parse_tflite_benchmark(text: str) -> TfliteBenchmark:
    """Parse ``benchmark_model`` stdout (or its logcat lines on Android)."""
    lines = [
        _LOG_LEVEL.sub("", line.strip())
        for line in require_text(KIND, text, "capture benchmark_model's whole stdout")
    ]
    fields: dict[str, object] = {}
    timings: dict[str, float | None] = {}
    stats: list[RunStats] = []
    timings_seen = False
    for line in lines:
        if not line:
            continue
        match = _TIMINGS.search(line)
        if match and not timings_seen:
            timings_seen = True
            for part in match.group(1).split(","):
                name, sep, value = part.rpartition(":")
                key = _TIMING_KEYS.get(name.strip().lower()) if sep else None
                if key is not None:
                    timings[key] = to_float(value)
            continue
        match = _STATS_LINE.match(line)
        if match and not timings_seen:
            # Only the benchmark's own lines; the op profiler's "Timings (microseconds): count=..."
            # lines do not start with "count=" and come after the timings line anyway.
            stats.append(_stats(match.group(2), match.group(1)))
            continue
        match = _MEMORY.match(line)
        if match:
            fields["memory_footprint_kind"] = "delta" if match.group(1).startswith("Memory") else "peak"
            fields["memory_init_mb"] = to_float(match.group(2))
            fields["memory_overall_mb"] = to_float(match.group(3))
            continue
        if match := re.match(
            rf"^Overall peak memory footprint \(MB\) via periodic monitoring:\s*({NUM})", line
        ):
            fields["peak_memory_mb"] = to_float(match.group(1))
        elif match := re.match(rf"^-\s*VmRSS\s*:\s*({NUM})\s*MB", line):
            fields["end_vm_rss_mb"] = to_float(match.group(1))
        elif match := re.match(r"^Graph:\s*\[(.*)\]$", line):
            fields["model_file"] = match.group(1).strip() or None
        elif (match := re.match(r"^Loaded model\s+(\S.*)$", line)) and "model_file" not in fields:
            fields["model_file"] = match.group(1).strip()
        elif match := re.match(rf"^The input model file size \(MB\):\s*({NUM})", line):
            fields["model_size_mb"] = to_float(match.group(1))
        elif match := re.match(
            r"^(?:Num threads|#threads used for CPU inference):\s*\[?\s*(-?\d+)\s*\]?", line
        ):
            fields["num_threads"] = int(match.group(1))
        elif match := re.match(rf"^Initialized session in\s*({NUM})\s*ms", line):
            fields["init_session_ms"] = to_float(match.group(1))
    if not timings_seen and not stats:
        raise ParseError(
            KIND, f"no 'Inference timings in us' line and no 'count=N ...' statistics line found; {HINT}"
        )
    steady = stats[-1] if stats else None
    warmup = stats[-2] if len(stats) >= 2 else None
    avg_us = timings.get("avg_us")
    if avg_us is None and steady is not None:
        avg_us = steady.avg_us
    return TfliteBenchmark.model_validate(
        {
            **fields,
            **timings,
            "avg_us": avg_us,
            "std_us": steady.std_us if steady else None,
            "min_us": steady.min_us if steady else None,
            "max_us": steady.max_us if steady else None,
            "count": steady.count if steady else None,
            "warmup": warmup,
            "steady": steady,
        }
    )


__all__ = ["KIND", "RunStats", "TfliteBenchmark", "parse_tflite_benchmark"]
