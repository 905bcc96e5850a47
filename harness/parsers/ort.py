"""``onnxruntime_perf_test`` output (ORT 1.x, including the ``-s`` latency summary)."""

from __future__ import annotations

import re
from typing import Any

from harness.errors import ParseError
from harness.parsers._common import NUM, Result, require_text, scaled, to_float, to_int

KIND = "ort-perf-test"
HINT = "is this the output of onnxruntime_perf_test?"

# Factor from the unit printed to milliseconds.
_TO_MS = {"s": "1000", "sec": "1000", "ms": "1", "us": "0.001", "µs": "0.001", "ns": "0.000001"}


class OrtPerfTest(Result):
    model_file: str | None = None
    execution_provider: str | None = None
    intra_op_threads: int | None = None
    session_creation_ms: float | None = None
    first_inference_ms: float | None = None
    total_inference_ms: float | None = None  # "Total inference time cost"
    total_run_ms: float | None = None  # "Total inference run time"
    requests: int | None = None  # "Total inference requests"
    runs: int | None = None  # "Runs:" of the -s summary
    iterations: int | None = None  # requests, else runs
    avg_ms: float | None = None
    throughput_per_s: float | None = None  # "Number of inferences per second"
    avg_cpu_pct: float | None = None
    peak_working_set_bytes: int | None = None
    peak_working_set_kb: float | None = None  # bytes / 1024, comparable with /proc's kB
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None


_UNIT = r"(s|sec|ms|us|µs|ns)?"
# (regex, key, default unit) for the time lines; the unit printed wins.
_TIMES = (
    (rf"^Session creation time cost\s*:\s*({NUM})\s*{_UNIT}\b", "session_creation_ms", "s"),
    (rf"^First inference time cost\s*:\s*({NUM})\s*{_UNIT}\b", "first_inference_ms", "ms"),
    (rf"^Total (?:inference )?time cost(?: \(s\))?\s*:\s*({NUM})\s*{_UNIT}", "total_inference_ms", "s"),
    (rf"^Total inference run time\s*:\s*({NUM})\s*{_UNIT}", "total_run_ms", "s"),
    (rf"^Average (?:inference )?time cost(?: total)?\s*:\s*({NUM})\s*{_UNIT}", "avg_ms", "ms"),
    (rf"^(Min|Max|P\d+) Latency\s*:\s*({NUM})\s*{_UNIT}", "", "s"),
)
_ANCHORS = ("avg_ms", "total_inference_ms", "p50_ms")


def parse_ort_perf_test(text: str) -> OrtPerfTest:
    """Parse ``onnxruntime_perf_test`` stdout. Every latency is converted to ms from the unit printed."""
    lines = [
        line.strip() for line in require_text(KIND, text, "capture onnxruntime_perf_test's whole stdout")
    ]
    found: dict[str, Any] = {}
    for line in lines:
        if not line:
            continue
        for pattern, key, default_unit in _TIMES:
            match = re.match(pattern, line, re.IGNORECASE)
            if match is None:
                continue
            groups = match.groups()
            name = key
            if not name:  # Min/Max/Pnn Latency
                name, groups = f"{groups[0].lower()}_ms", groups[1:]
            unit = (groups[1] or default_unit).lower()
            found.setdefault(name, scaled(groups[0], _TO_MS[unit]))
            break
        else:
            _other(line, found)
    if not any(found.get(key) is not None for key in _ANCHORS):
        raise ParseError(
            KIND,
            "no 'Average inference time cost', 'Total inference time cost' or 'P50 Latency' line found; "
            + HINT,
        )
    found["iterations"] = found.get("requests", found.get("runs"))
    return OrtPerfTest.model_validate(found)


def _other(line: str, found: dict[str, Any]) -> None:
    if match := re.match(r"^(?:Total inference requests|Total iterations)\s*:\s*(\d+)", line, re.IGNORECASE):
        found.setdefault("requests", int(match.group(1)))
    elif match := re.match(r"^Runs\s*:\s*(\d+)", line):
        found.setdefault("runs", int(match.group(1)))
    elif match := re.match(rf"^Number of inferences per second\s*:\s*({NUM})", line):
        found.setdefault("throughput_per_s", to_float(match.group(1)))
    elif match := re.match(rf"^Avg CPU usage\s*:\s*({NUM})", line):
        found.setdefault("avg_cpu_pct", to_float(match.group(1)))
    elif match := re.match(rf"^Peak working set size\s*:\s*({NUM})\s*(bytes)?", line):
        size = to_int(match.group(1))
        if size is not None and "peak_working_set_bytes" not in found:
            found["peak_working_set_bytes"] = size
            found["peak_working_set_kb"] = size / 1024
    elif match := re.match(r"^Setting intra_op_num_threads to\s*(\d+)", line, re.IGNORECASE):
        found.setdefault("intra_op_threads", int(match.group(1)))
    elif match := re.match(r"^using\s+(\w+ExecutionProvider)\b", line, re.IGNORECASE):
        found.setdefault("execution_provider", match.group(1))
    elif "onnxruntime_perf_test" in line and "model_file" not in found:
        models = [token for token in line.split() if re.search(r"\.(?:onnx|ort)$", token)]
        if models:
            found["model_file"] = models[0]


__all__ = ["KIND", "OrtPerfTest", "parse_ort_perf_test"]
