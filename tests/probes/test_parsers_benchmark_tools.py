"""TFLite benchmark_model and onnxruntime_perf_test parsers on real captures (numbers from the
source notes beside them) and on variants written from the formats (logcat prefixes, CRLF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ParseError
from harness.probes.parsers import parse
from harness.probes.parsers.benchmark_tools import (
    parse_ort_perf_test,
    parse_ort_result_file,
    parse_tflite_benchmark,
)

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-outputs"


def real(name: str) -> str:
    return (REAL / name).read_text(encoding="utf-8")


def test_tflite_tf28_riscv_with_op_profiling_and_scientific_notation():
    result = parse_tflite_benchmark(real("tflite_benchmark_model/qemuriscv64_mobilenet_v1_op_profiling.txt"))
    assert result.model_file == "./mobilenet_v1_1.0_224.tflite"
    assert (result.num_threads, result.model_size_mb, result.init_session_ms) == (4, 16.9008, 17.187)
    assert (result.init_us, result.first_inference_us) == (17187, 3512391)
    assert result.warmup_avg_us == 3512390 and result.avg_us == 2950340
    assert result.warmup is not None and (result.warmup.count, result.warmup.curr_us) == (1, 3512391)
    steady = result.steady
    assert steady is not None
    assert (steady.count, steady.first_us, steady.curr_us) == (50, 2990275, 2913402)
    assert (steady.min_us, steady.max_us, steady.avg_us, steady.std_us) == (2727568, 3189954, 2950340, 109798)
    assert (result.memory_kind, result.memory_init_mb, result.memory_overall_mb) == (
        "delta",
        4.21094,
        46.0859,
    )


def test_tflite_tf24_android_tail_only_with_peak_memory():
    result = parse_tflite_benchmark(real("tflite_benchmark_model/xiaomi_mi11_yolov5s_fp32_cpu_tf2.4.txt"))
    assert result.warmup is None and result.steady is not None
    assert (result.steady.count, result.steady.first_us, result.steady.std_us) == (50, 249042, 1442)
    assert (result.init_us, result.first_inference_us, result.warmup_avg_us, result.avg_us) == (
        16242,
        360262,
        304586,
        249684,
    )
    assert (result.memory_kind, result.memory_init_mb, result.memory_overall_mb) == ("peak", 4.92969, 138.809)
    assert result.model_file is None and result.peak_memory_monitored_mb is None


# Written from the format (recent LiteRT benchmark_model run through `adb logcat`, CRLF line ends).
LOGCAT_TFLITE = "\r\n".join(
    [
        "01-02 03:04:05.678  4321  4321 I tflite  : Graph: [/data/local/tmp/m.tflite]",
        "01-02 03:04:05.679  4321  4321 I tflite  : #threads used for CPU inference: [2]",
        "I/tflite  ( 4321): Running benchmark for at least 1 iterations and at least 0.5 seconds",
        "I/tflite  ( 4321): count=55 first=11000 curr=9000 min=8800 max=11000 avg=9200.5 std=300",
        "I tflite  : Running benchmark for at least 50 iterations and at least 1 seconds",
        "I tflite  : count=120 first=9000 curr=9100 min=8700 max=9900 avg=9.1e+03 std=210 p5=8750 median=9050 p95=9600",
        "I tflite  : Inference timings in us: Init: 2100, First inference: 15000, Warmup (avg): 9200.5, "
        "Inference (avg): 9100",
        "I tflite  : Overall peak memory footprint (MB) via periodic monitoring: 53.75",
    ]
)


def test_tflite_through_logcat_with_percentiles_and_monitored_peak():
    result = parse_tflite_benchmark(LOGCAT_TFLITE)
    assert result.model_file == "/data/local/tmp/m.tflite" and result.num_threads == 2
    assert result.warmup is not None and result.warmup.count == 55
    assert result.steady is not None
    assert (result.steady.avg_us, result.steady.median_us, result.steady.p5_us, result.steady.p95_us) == (
        9100,
        9050,
        8750,
        9600,
    )
    assert result.peak_memory_monitored_mb == 53.75 and result.memory_kind is None


def test_ort_perf_test_k1_duplicated_summary_lines_and_seconds():
    result = parse_ort_perf_test(real("ort_perf_test/spacemit_k1_yolov8n_int8.txt"))
    assert result.session_creation_ms == pytest.approx(1144.76)
    assert result.first_inference_ms == 248 and result.total_inference_ms == pytest.approx(823.382)
    assert (result.requests, result.runs, result.avg_ms) == (10, 10, 82.3382)
    assert result.total_run_ms == pytest.approx(823.483) and result.inferences_per_s == 12.1435
    assert (result.avg_cpu_pct, result.peak_working_set_bytes) == (48, 78946304)
    assert result.min_ms == pytest.approx(80.8129) and result.max_ms == pytest.approx(83.8817)
    assert result.p50_ms == pytest.approx(82.6095)
    assert result.p90_ms == result.p95_ms == result.p99_ms == result.p999_ms == pytest.approx(83.8817)


def test_ort_perf_test_newer_wording_average_cost_total():
    result = parse_ort_perf_test(real("ort_perf_test/spacemit_riscv_modelzoo_example.txt"))
    assert result.session_creation_ms == pytest.approx(169.475) and result.first_inference_ms == 109
    assert result.avg_ms == pytest.approx(7.270205) and result.inferences_per_s == 137.435
    assert (result.avg_cpu_pct, result.peak_working_set_bytes, result.runs) == (62, 91336704, 10)
    assert result.p50_ms == pytest.approx(7.27787) and result.min_ms == pytest.approx(7.20383)


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("tflite-benchmark", "", "input is empty"),
        ("tflite-benchmark", "Session creation time cost: 1 s\n", "benchmark_model"),
        ("ort-perf-test", "count=50 first=1 avg=2\n", "onnxruntime_perf_test"),
        ("nvidia-smi", "x", "unknown kind; known kinds: tflite-benchmark"),
    ],
)
def test_wrong_or_empty_input_names_the_format(kind, text, message):
    with pytest.raises(ParseError, match=message) as raised:
        parse(kind, text)
    assert str(raised.value).startswith(kind)


# Written by hand from PerformanceResult::DumpToFile (ONNX Runtime's performance_runner.h): no
# public capture of a result file exists. Lines are model,seconds,peak,cpu,index; -s appends the
# statistics after a blank line.
ORT_RESULT_FILE = (
    "yolov8n,0.0826095,78946304,48,0\n"
    "yolov8n,0.0808129,78946304,48,1\n"
    "yolov8n,0.0838817,78946304,48,2\n"
    "\n"
    "Min Latency is 0.0808129sec\n"
    "P90 Latency is 0.0838817sec\n"
)


def test_ort_result_file_gives_one_sample_per_run_in_order():
    times = parse_ort_result_file(ORT_RESULT_FILE)
    assert times.seconds == (0.0826095, 0.0808129, 0.0838817)
    assert (times.model, times.peak_working_set_bytes, times.avg_cpu_pct) == ("yolov8n", 78946304, 48)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the input is empty"),
        ("yolov8n,0.08,1,2,1\n", "run index '1' where 0 was next"),
        ("yolov8n,0.08,1,2\n", "not 5 comma-separated fields"),
        ("yolov8n,-0.5,1,2,0\n", "is not a positive number of seconds"),
        ("\nMin Latency is 0.08sec\n", "no 'name,seconds,peak,cpu,index' line: the tool ran no timed run"),
    ],
)
def test_ort_result_file_refuses_what_is_not_one(text, message):
    with pytest.raises(ParseError, match=message):
        parse_ort_result_file(text)
