"""Output of the runtimes' own benchmark tools: TFLite ``benchmark_model`` and
``onnxruntime_perf_test``, across versions (number formats and wording change between them)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from harness.errors import ParseError
from harness.probes.parsers.common import (
    NUMBER,
    Lines,
    OpenLine,
    Parsed,
    refusal,
    split_lines,
    to_float,
    to_int,
)

# -- TFLite benchmark_model --------------------------------------------------------------------------

_STAT_NAMES = {"first", "curr", "min", "max", "avg", "std", "median", "p5", "p95"}
_RUNNING = re.compile(r"Running benchmark for at least (\d+) iterations")
# The timings line's names across versions: TF >= 1.14 "Warmup (avg)"/"Inference (avg)", TF 1.x
# "Average inference timings in us: Warmup: W, Init: I, no stats: A".
_TIMING_NAMES = {
    "init": "init",
    "first inference": "first",
    "warmup (avg)": "warmup",
    "warmup": "warmup",
    "inference (avg)": "avg",
    "no stats": "avg",
}
_TFLITE_VALUES = (
    (re.compile(r"^Graph:\s*\[(.*)\]"), "graph"),
    (re.compile(r"^Loaded model\s+(.+)$"), "loaded"),
    (re.compile(r"^Num threads:\s*\[(\d+)\]"), "threads"),
    (re.compile(r"#threads used for CPU inference:\s*\[(\d+)\]"), "threads"),
    (re.compile(rf"The input model file size \(MB\):\s*({NUMBER})"), "size"),
    (re.compile(rf"Initialized session in\s*({NUMBER})\s*ms"), "init_session"),
    (re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*({NUMBER})"), "monitored"),
)
_MEMORY = re.compile(
    rf"(Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):"
    rf"\s*init=({NUMBER})\s+overall=({NUMBER})"
)


class TfliteRunStats(Parsed):
    count: int
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    median_us: float | None = None
    p5_us: float | None = None
    p95_us: float | None = None


class TfliteBenchmark(Parsed):
    model_file: str | None
    num_threads: int | None
    model_size_mb: float | None
    init_session_ms: float | None
    init_us: float | None
    first_inference_us: float | None
    warmup_avg_us: float | None
    avg_us: float | None
    warmup: TfliteRunStats | None
    steady: TfliteRunStats | None
    memory_init_mb: float | None
    memory_overall_mb: float | None
    memory_kind: str | None  # "delta" (TF >= 2.5 wording) or "peak" (older "Peak memory footprint")
    peak_memory_monitored_mb: float | None


def _whole_pairs(line: str, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs of a line, less the last one when the input was cut right after it: the run
    statistics and timings lines are never the last line benchmark_model prints."""
    if pairs and isinstance(line, OpenLine) and line.endswith(pairs[-1][1]):
        return pairs[:-1]
    return pairs


def _run_stats(line: str) -> TfliteRunStats | None:
    """A bare ``count=N key=value ...`` line (the op profiler's lines start with 'Timings')."""
    pairs = []
    for token in line.split():
        key, _, value = token.partition("=")
        if not re.fullmatch(r"\w+", key) or not re.fullmatch(NUMBER, value):
            return None
        pairs.append((key, value))
    values = dict(_whole_pairs(line, pairs))
    count = to_int(values.get("count")) if pairs and pairs[0][0] == "count" else None
    if count is None:
        return None
    return TfliteRunStats(
        count=count,
        **{f"{key}_us": to_float(value) for key, value in values.items() if key in _STAT_NAMES},
    )


def _timings(line: str) -> dict[str, float]:
    """``Inference timings in us: Init: 17187, First inference: ..., Inference (avg): ...``."""
    _, _, listed = line.partition("in us:")
    pairs = []
    for item in listed.split(","):
        name, _, value = item.partition(":")
        if re.fullmatch(rf"\s*{NUMBER}\s*", value):
            pairs.append((name.strip().lower(), value.strip()))
    found: dict[str, float] = {}
    for name, value in _whole_pairs(line, pairs):
        number = to_float(value)
        if name in _TIMING_NAMES and number is not None:
            found.setdefault(_TIMING_NAMES[name], number)
    return found


def parse_tflite_benchmark(text: str) -> TfliteBenchmark:
    """``benchmark_model --graph=...`` output (TF 1.x to LiteRT), whole or any block of it."""
    kind = "tflite-benchmark"
    source = Lines(split_lines(text))
    lines = list(source)
    timings_at = next((i for i, line in enumerate(lines) if "inference timings in us" in line.lower()), None)
    # Run statistics are the bare "count=..." lines before the timings summary; the op profiler
    # prints its own "Timings (microseconds): count=..." lines after it, which are not these. Each
    # phase announces itself ("Running benchmark for at least N iterations"): with both markers a
    # line belongs to the phase announced last; without them the last line is the steady one.
    stats: list[tuple[int, TfliteRunStats]] = []
    phases = 0
    for line in lines[: timings_at if timings_at is not None else len(lines)]:
        if _RUNNING.search(line):
            phases += 1
        elif (found_stats := _run_stats(line)) is not None:
            stats.append((phases, found_stats))
    if phases >= 2:
        warmup = next((found for phase, found in stats if phase == 1), None)
        steady = next((found for phase, found in reversed(stats) if phase >= 2), None)
    else:
        warmup = stats[0][1] if len(stats) >= 2 else None
        steady = stats[-1][1] if stats else None
    values: dict[str, str] = {}
    for pattern, key in _TFLITE_VALUES:
        for line in lines:
            found = pattern.search(line.strip())
            if found:
                values.setdefault(key, found.group(1).strip())
                break
    timings = _timings(lines[timings_at]) if timings_at is not None else {}
    memory = next((found for found in map(_MEMORY.search, lines) if found), None)
    if not (timings or stats or values or memory):
        raise refusal(
            kind,
            source,
            "no 'Inference timings in us' line, 'count=...' statistics, model or memory line; is this "
            "the output of TFLite's benchmark_model?",
            "benchmark_model --graph=MODEL.tflite",
        )
    return TfliteBenchmark(
        model_file=values.get("graph") or values.get("loaded"),
        num_threads=to_int(values.get("threads")),
        model_size_mb=to_float(values.get("size")),
        init_session_ms=to_float(values.get("init_session")),
        init_us=timings.get("init"),
        first_inference_us=timings.get("first"),
        warmup_avg_us=timings.get("warmup"),
        avg_us=timings.get("avg", steady.avg_us if steady else None),
        warmup=warmup,
        steady=steady,
        memory_init_mb=to_float(memory.group(2)) if memory else None,
        memory_overall_mb=to_float(memory.group(3)) if memory else None,
        memory_kind=(("delta" if memory.group(1).startswith("Memory") else "peak") if memory else None),
        peak_memory_monitored_mb=to_float(values.get("monitored")),
    )


# -- onnxruntime_perf_test -------------------------------------------------------------------------

_UNIT_TO_MS = {"s": 1000.0, "sec": 1000.0, "ms": 1.0, "us": 0.001, "µs": 0.001}
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9 ()]*")
_VALUE = re.compile(rf"({NUMBER})\s*([a-zA-Zµ%]*)")
# label -> (key, unit printed when none is): the human lines across versions (ORT 1.3 "Total time
# cost", "Min Latency is 0.05 sec"; 1.4+ "Total inference time cost: 0.82 s") and the -s lines.
_TIMED = {
    "session creation time cost": ("session", "s"),
    "first inference time cost": ("first", "ms"),
    "total inference time cost": ("total", "s"),
    "total time cost": ("total", "s"),
    "average inference time cost": ("avg", "ms"),
    "average inference time cost total": ("avg", "ms"),
    "average time cost": ("avg", "ms"),
    "total inference run time": ("run", "s"),
    "total run time": ("run", "s"),
    **{f"{name} latency": (name, "s") for name in ("min", "max", "p50", "p90", "p95", "p99", "p999")},
}
_COUNTED = {
    "total inference requests": "requests",
    "total iterations": "requests",
    "runs": "runs",
    "number of inferences per second": "ips",
    "avg cpu usage": "cpu",
    "peak working set size": "peak",
}


class OrtPerfTest(Parsed):
    session_creation_ms: float | None
    first_inference_ms: float | None
    total_inference_ms: float | None
    requests: int | None
    avg_ms: float | None
    total_run_ms: float | None
    inferences_per_s: float | None
    avg_cpu_pct: float | None
    peak_working_set_bytes: int | None
    peak_working_set_mb: float | None  # bytes / 1e6
    runs: int | None
    min_ms: float | None
    max_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None


def _label_and_value(line: str) -> tuple[str, str, str] | None:
    """``Label: 1.5 s`` or ``Label is 1.5 sec`` as (label, number, unit)."""
    label, separator, rest = line.partition(":")
    if not separator:
        label, separator, rest = line.partition(" is ")
    if not separator or not _LABEL.fullmatch(label.strip()):
        return None
    value = _VALUE.fullmatch(rest.strip())
    if value is None:
        return None
    return " ".join(label.lower().split()), value.group(1), value.group(2)


def ort_perf_test_from_lines(raw: Iterable[str]) -> OrtPerfTest:
    """``onnxruntime_perf_test`` output read line by line (its state is a few numbers)."""
    kind = "ort-perf-test"
    source = Lines(raw)
    timed: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in source:
        found = _label_and_value(line)
        if found is None:
            continue
        label, value, unit = found
        number = to_float(value)
        if number is None:
            continue
        if label in _TIMED:
            key, default_unit = _TIMED[label]
            scale = _UNIT_TO_MS.get((unit or default_unit).lower())
            if scale is None or (not unit and isinstance(line, OpenLine)):  # the unit was cut
                continue
            timed.setdefault(key, number * scale)
        elif label in _COUNTED:
            counts.setdefault(_COUNTED[label], number)
    if not timed and not counts:
        raise refusal(
            kind,
            source,
            "no 'Average inference time cost', 'P50 Latency' or other summary line; is this the output "
            "of onnxruntime_perf_test?",
            "onnxruntime_perf_test -s MODEL.onnx",
        )
    peak = counts.get("peak")
    return OrtPerfTest(
        session_creation_ms=timed.get("session"),
        first_inference_ms=timed.get("first"),
        total_inference_ms=timed.get("total"),
        requests=round(counts["requests"]) if "requests" in counts else None,
        avg_ms=timed.get("avg"),
        total_run_ms=timed.get("run"),
        inferences_per_s=counts.get("ips"),
        avg_cpu_pct=counts.get("cpu"),
        peak_working_set_bytes=round(peak) if peak is not None else None,
        peak_working_set_mb=round(peak / 1e6, 3) if peak is not None else None,
        runs=round(counts["runs"]) if "runs" in counts else None,
        min_ms=timed.get("min"),
        max_ms=timed.get("max"),
        p50_ms=timed.get("p50"),
        p90_ms=timed.get("p90"),
        p95_ms=timed.get("p95"),
        p99_ms=timed.get("p99"),
        p999_ms=timed.get("p999"),
    )


def parse_ort_perf_test(text: str) -> OrtPerfTest:
    """``onnxruntime_perf_test`` output (human lines and the ``-s`` summary lines)."""
    return ort_perf_test_from_lines(split_lines(text))


class OrtRunTimes(Parsed):
    """onnxruntime_perf_test's result file: one line per timed run (``name,seconds,peak,cpu,index``,
    PerformanceResult::DumpToFile), in the order the runs happened."""

    model: str
    seconds: tuple[float, ...]
    peak_working_set_bytes: int | None
    avg_cpu_pct: int | None


_ORT_RESULT_COMMAND = "onnxruntime_perf_test -m times -r N MODEL.onnx RESULT_FILE"
_ORT_STATISTICS = re.compile(r"^(?:Min|Max|P\d+) Latency\b")


def ort_result_file_from_lines(raw: Iterable[str]) -> OrtRunTimes:
    """The per-run lines; the statistics ``-s`` appends (``P90 Latency is ...``) are skipped, and so
    is a last line cut short. A run index out of order or a line of another shape is an error."""
    kind = "ort-result-file"
    source = Lines(raw)
    model = ""
    seconds: list[float] = []
    peak: int | None = None
    cpu: int | None = None
    for number, line in enumerate(source, start=1):
        stripped = line.strip()
        if not stripped or _ORT_STATISTICS.match(stripped) or isinstance(line, OpenLine):
            continue
        fields = stripped.rsplit(",", 4)
        value = to_float(fields[1]) if len(fields) == 5 else None
        problem = None
        if len(fields) != 5:
            problem = "not 5 comma-separated fields"
        elif to_int(fields[4]) != len(seconds):
            problem = f"run index {fields[4][:20]!r} where {len(seconds)} was next"
        elif value is None or not value > 0:
            problem = f"run time {fields[1][:20]!r} is not a positive number of seconds"
        if problem is not None:
            raise ParseError(
                kind,
                f"no run line 'name,seconds,peak,cpu,index' at line {number} {stripped[:80]!r} ({problem}); "
                f"run `{_ORT_RESULT_COMMAND}`",
            )
        assert value is not None
        model = model or fields[0]
        seconds.append(value)
        peak, cpu = to_int(fields[2]), to_int(fields[3])
    if not seconds:
        raise refusal(
            kind,
            source,
            "no 'name,seconds,peak,cpu,index' line: the tool ran no timed run",
            _ORT_RESULT_COMMAND,
        )
    return OrtRunTimes(model=model, seconds=tuple(seconds), peak_working_set_bytes=peak, avg_cpu_pct=cpu)


def parse_ort_result_file(text: str) -> OrtRunTimes:
    """onnxruntime_perf_test's result file (one line per timed run)."""
    return ort_result_file_from_lines(split_lines(text))
