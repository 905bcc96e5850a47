"""Output of the runtimes' own benchmark tools: TFLite ``benchmark_model`` and
``onnxruntime_perf_test``, across versions (number formats and wording change between them)."""

from __future__ import annotations

import re

from harness.errors import ParseError
from harness.probes.parsers.common import NUMBER, Parsed, clean_lines, require_text, to_float, to_int

# -- TFLite benchmark_model --------------------------------------------------------------------------

_STAT_PAIR = re.compile(rf"(\w+)=({NUMBER})")
_STAT_LINE = re.compile(rf"^\s*count=\d+(?:\s+\w+={NUMBER})*\s*$")
_RUNNING = re.compile(r"Running benchmark for at least (\d+) iterations")
_SEVERITY = re.compile(r"^(?:INFO|WARN|ERROR|FATAL|VERBOSE): ")


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


def _run_stats(line: str) -> TfliteRunStats:
    pairs = {key: float(value) for key, value in _STAT_PAIR.findall(line)}
    names = {"first", "curr", "min", "max", "avg", "std", "median", "p5", "p95"}
    return TfliteRunStats(
        count=int(pairs["count"]), **{f"{key}_us": value for key, value in pairs.items() if key in names}
    )


def parse_tflite_benchmark(text: str) -> TfliteBenchmark:
    """``benchmark_model --graph=...`` output (TF 2.4 to LiteRT), logcat prefixes allowed."""
    kind = "tflite-benchmark"
    require_text(kind, text)
    # LiteRT's logging wrapper prefixes every line with its severity ("INFO: count=50 ...").
    lines = [_SEVERITY.sub("", line, count=1) for line in clean_lines(text)]
    values: dict[str, str] = {}
    timings_at = next((i for i, line in enumerate(lines) if "Inference timings in us" in line), None)
    # Run statistics are the bare "count=..." lines before the timings summary; the op profiler
    # prints its own "Timings (microseconds): count=..." lines after it, which are not these.
    end = timings_at if timings_at is not None else len(lines)
    stats: list[tuple[int | None, TfliteRunStats]] = []
    expected_min: int | None = None
    for line in lines[:end]:
        running = _RUNNING.search(line)
        if running:
            expected_min = int(running.group(1))
        elif _STAT_LINE.match(line):
            stats.append((expected_min, _run_stats(line)))
            expected_min = None
    for pattern, key in (
        (r"^Graph:\s*\[(.*)\]", "graph"),
        (r"^Loaded model\s+(.+)$", "loaded"),
        (r"^Num threads:\s*\[(\d+)\]", "threads"),
        (r"#threads used for CPU inference:\s*\[(\d+)\]", "threads"),
        (rf"The input model file size \(MB\):\s*({NUMBER})", "size"),
        (rf"Initialized session in\s*({NUMBER})\s*ms", "init_session"),
        (rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*({NUMBER})", "monitored"),
    ):
        for line in lines:
            found = re.search(pattern, line.strip())
            if found:
                values.setdefault(key, found.group(1).strip())
                break
    timings: dict[str, float] = {}
    if timings_at is not None:
        for name, value in re.findall(
            rf"([A-Za-z ()]+):\s*({NUMBER})", lines[timings_at].split("us:", 1)[-1]
        ):
            timings[name.strip()] = float(value)
    memory = None
    for line in lines:
        found = re.search(
            rf"(Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):"
            rf"\s*init=({NUMBER})\s+overall=({NUMBER})",
            line,
        )
        if found:
            memory = (
                "delta" if found.group(1).startswith("Memory") else "peak",
                found.group(2),
                found.group(3),
            )
            break
    if timings_at is None and not stats:
        raise ParseError(
            kind,
            "no 'Inference timings in us' line and no 'count=...' statistics found; "
            "is this the output of TFLite's benchmark_model?",
        )
    warmup = steady = None
    if len(stats) >= 2:
        warmup, steady = stats[0][1], stats[-1][1]
    elif stats:
        steady = stats[0][1]
    return TfliteBenchmark(
        model_file=values.get("graph") or values.get("loaded"),
        num_threads=to_int(values.get("threads")),
        model_size_mb=to_float(values.get("size")),
        init_session_ms=to_float(values.get("init_session")),
        init_us=timings.get("Init"),
        first_inference_us=timings.get("First inference"),
        warmup_avg_us=timings.get("Warmup (avg)"),
        avg_us=timings.get("Inference (avg)", steady.avg_us if steady else None),
        warmup=warmup,
        steady=steady,
        memory_init_mb=to_float(memory[1]) if memory else None,
        memory_overall_mb=to_float(memory[2]) if memory else None,
        memory_kind=memory[0] if memory else None,
        peak_memory_monitored_mb=to_float(values.get("monitored")),
    )


# -- onnxruntime_perf_test -------------------------------------------------------------------------

_UNIT_TO_MS = {"s": 1000.0, "sec": 1000.0, "ms": 1.0, "us": 0.001, "µs": 0.001}


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


def _ms(value: str, unit: str | None, default_unit: str) -> float:
    return float(value) * _UNIT_TO_MS.get((unit or default_unit).strip().lower(), 1.0)


def parse_ort_perf_test(text: str) -> OrtPerfTest:
    """``onnxruntime_perf_test`` output (human lines and the ``-s`` summary lines)."""
    kind = "ort-perf-test"
    require_text(kind, text)
    timed: dict[str, float] = {}
    counts: dict[str, float] = {}
    pattern = re.compile(rf"^\s*([A-Za-z][A-Za-z0-9 ()]*?)\s*:\s*({NUMBER})\s*([a-zA-Zµ%]*)\s*$")
    for line in clean_lines(text):
        found = pattern.match(line)
        if not found:
            continue
        label, value, unit = found.group(1).lower(), found.group(2), found.group(3)
        if label == "session creation time cost":
            timed.setdefault("session", _ms(value, unit, "s"))
        elif label == "first inference time cost":
            timed.setdefault("first", _ms(value, unit, "ms"))
        elif label == "total inference time cost":
            timed.setdefault("total", _ms(value, unit, "s"))
        elif label.startswith("average inference time cost"):
            timed.setdefault("avg", _ms(value, unit, "ms"))
        elif label == "total inference run time":
            timed.setdefault("run", _ms(value, unit, "s"))
        elif label.endswith(" latency") and label.split()[0] in {
            "min",
            "max",
            "p50",
            "p90",
            "p95",
            "p99",
            "p999",
        }:
            timed.setdefault(label.split()[0], _ms(value, unit, "s"))
        elif label in {"total inference requests", "runs"}:
            counts.setdefault(label, float(value))
        elif label == "number of inferences per second":
            counts.setdefault("ips", float(value))
        elif label == "avg cpu usage":
            counts.setdefault("cpu", float(value))
        elif label == "peak working set size":
            counts.setdefault("peak", float(value))
    if "avg" not in timed and "p50" not in timed:
        raise ParseError(
            kind,
            "no 'Average inference time cost' or 'P50 Latency' line found; "
            "is this the output of onnxruntime_perf_test?",
        )
    peak = counts.get("peak")
    requests = counts.get("total inference requests")
    runs = counts.get("runs")
    return OrtPerfTest(
        session_creation_ms=timed.get("session"),
        first_inference_ms=timed.get("first"),
        total_inference_ms=timed.get("total"),
        requests=int(requests) if requests is not None else None,
        avg_ms=timed.get("avg"),
        total_run_ms=timed.get("run"),
        inferences_per_s=counts.get("ips"),
        avg_cpu_pct=counts.get("cpu"),
        peak_working_set_bytes=int(peak) if peak is not None else None,
        peak_working_set_mb=round(peak / 1e6, 3) if peak is not None else None,
        runs=int(runs) if runs is not None else None,
        min_ms=timed.get("min"),
        max_ms=timed.get("max"),
        p50_ms=timed.get("p50"),
        p90_ms=timed.get("p90"),
        p95_ms=timed.get("p95"),
        p99_ms=timed.get("p99"),
        p999_ms=timed.get("p999"),
    )


class OrtRunTimes(Parsed):
    """onnxruntime_perf_test's result file: one line per timed run (``name,seconds,peak,cpu,index``,
    PerformanceResult::DumpToFile), in the order the runs happened."""

    model: str
    seconds: tuple[float, ...]
    peak_working_set_bytes: int | None
    avg_cpu_pct: int | None


_ORT_STATISTICS = re.compile(r"^(Min|Max|P\d+) Latency\b")


def parse_ort_result_file(text: str) -> OrtRunTimes:
    """The per-run lines of the result file; the statistics ``-s`` appends (``P90 Latency is ...``)
    are skipped. A run index out of order or a line of another shape is an error."""
    kind = "ort-result-file"
    require_text(kind, text)
    model = ""
    seconds: list[float] = []
    peak: int | None = None
    cpu: int | None = None
    for number, line in enumerate(clean_lines(text), start=1):
        stripped = line.strip()
        if not stripped or _ORT_STATISTICS.match(stripped):
            continue
        fields = stripped.rsplit(",", 4)
        try:
            if len(fields) != 5:
                raise ValueError("not 5 comma-separated fields")
            name, cost, peak_text, cpu_text, index = fields
            if int(index) != len(seconds):
                raise ValueError(f"run index {index} where {len(seconds)} was next")
            value = float(cost)
            if not value > 0:
                raise ValueError(f"run time {cost} s is not positive")
        except ValueError as exc:
            raise ParseError(
                kind, f"line {number} {stripped[:80]!r}: {exc}; is this onnxruntime_perf_test's result file?"
            ) from None
        model = model or name
        seconds.append(value)
        peak, cpu = to_int(peak_text), to_int(cpu_text)
    if not seconds:
        raise ParseError(kind, "no 'name,seconds,peak,cpu,index' lines: the tool ran no timed run")
    return OrtRunTimes(model=model, seconds=tuple(seconds), peak_working_set_bytes=peak, avg_cpu_pct=cpu)
