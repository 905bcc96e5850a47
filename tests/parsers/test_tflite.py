"""tflite-benchmark: real captures (see their .source.txt notes) and hand-written variants."""

from __future__ import annotations

import pytest

from harness.errors import ParseError
from harness.parsers.tflite import parse_tflite_benchmark
from tests.parsers.samples import TFLITE_LITERT, TFLITE_TF1, crlf, logcat, real

QEMU = "tflite_benchmark_model/qemuriscv64_mobilenet_v1_op_profiling.txt"
MI11 = "tflite_benchmark_model/xiaomi_mi11_yolov5s_fp32_cpu_tf2.4.txt"


def test_qemu_riscv_op_profiling_capture():
    result = parse_tflite_benchmark(real(QEMU))
    assert result.model_file == "./mobilenet_v1_1.0_224.tflite"
    assert result.model_size_mb == 16.9008
    assert result.num_threads == 4
    assert result.init_session_ms == 17.187
    assert result.init_us == 17187
    assert result.first_inference_us == 3512391
    assert result.warmup_avg_us == 3512390  # 3.51239e+06
    assert result.avg_us == 2950340  # 2.95034e+06
    assert (result.count, result.min_us, result.max_us, result.std_us) == (50, 2727568, 3189954, 109798)
    assert result.steady is not None and result.warmup is not None
    assert result.steady.first_us == 2990275 and result.steady.curr_us == 2913402
    assert result.steady.avg_us == 2950340
    # The warm-up line is only "count=1 curr=3512391".
    assert result.warmup.count == 1 and result.warmup.curr_us == 3512391
    assert result.warmup.first_us is None and result.warmup.avg_us is None and result.warmup.std_us is None
    # Not the op profiler's "Timings (microseconds): count=50 ... avg=2.9499e+06" line.
    assert result.steady.avg_us != 2949900
    assert result.memory_footprint_kind == "delta"
    assert (result.memory_init_mb, result.memory_overall_mb) == (4.21094, 46.0859)
    assert result.peak_memory_mb is None


def test_xiaomi_mi11_tf24_tail_capture():
    result = parse_tflite_benchmark(real(MI11))
    assert (result.init_us, result.first_inference_us, result.warmup_avg_us, result.avg_us) == (
        16242,
        360262,
        304586,
        249684,
    )
    assert result.steady is not None
    assert result.steady.count == 50
    assert (result.steady.first_us, result.steady.curr_us) == (249042, 250889)
    assert (result.min_us, result.max_us, result.std_us) == (247067, 254474, 1442)
    assert result.warmup is None  # no warm-up count line in this tail
    assert result.memory_footprint_kind == "peak"
    assert (result.memory_init_mb, result.memory_overall_mb) == (4.92969, 138.809)
    assert result.peak_memory_mb is None
    assert result.model_file is None and result.num_threads is None


@pytest.mark.parametrize(
    "variant",
    [
        crlf,
        lambda text: logcat(text, "threadtime"),
        lambda text: logcat(text, "tag"),
        lambda text: logcat(text, "brief"),
        lambda text: crlf(logcat(text, "threadtime")),
        lambda text: "\n\n" + text.replace("\n", "\n\n") + "\n\n",
    ],
)
def test_variants_parse_the_same(variant):
    for name in (QEMU, MI11):
        text = real(name)
        assert parse_tflite_benchmark(variant(text)) == parse_tflite_benchmark(text)


def test_litert_info_prefix_percentiles_and_peak_memory():
    # written from the format, not captured
    result = parse_tflite_benchmark(TFLITE_LITERT)
    assert result.model_file == "/data/local/tmp/mobilenet_v2.tflite"
    assert result.num_threads == 2
    assert result.model_size_mb == 13.9786
    assert result.init_session_ms == 28.465
    assert (result.init_us, result.first_inference_us, result.warmup_avg_us, result.avg_us) == (
        28465,
        18733,
        13223.7,
        12974.4,
    )
    assert result.warmup is not None and result.steady is not None
    assert result.warmup.count == 38 and result.warmup.p95_us == 14411
    assert result.steady.count == 77
    assert result.steady.avg_us == 12974.4  # printed as 1.29744e+04
    assert (result.steady.p5_us, result.steady.median_us, result.steady.p95_us) == (12668, 12950, 13385)
    assert result.memory_footprint_kind == "delta"
    assert (result.memory_init_mb, result.memory_overall_mb) == (33.7227, 44.5625)
    assert result.peak_memory_mb == 49.1836
    assert result.end_vm_rss_mb == 46


def test_tf1_average_inference_timings_wording():
    # written from the format, not captured
    result = parse_tflite_benchmark(TFLITE_TF1)
    assert result.model_file == "mobilenet_quant_v1_224.tflite"
    assert result.init_session_ms == 3.129
    assert (result.warmup_avg_us, result.init_us, result.avg_us) == (87066, 3129, 83839.9)
    assert result.first_inference_us is None
    assert result.count == 50 and result.std_us == 763
    assert result.memory_init_mb is None and result.memory_footprint_kind is None


def test_stats_line_only_and_scientific_notation():
    # written from the format, not captured
    result = parse_tflite_benchmark("count=20 first=1.5e+03 curr=1.2e+03 min=1.1e+03 max=1.5e+03 avg=1.2e+03 std=45\n")
    assert result.avg_us == 1200.0
    assert result.steady is not None and result.steady.first_us == 1500.0
    assert (result.count, result.min_us, result.max_us, result.std_us) == (20, 1100, 1500, 45)
    assert result.init_us is None and result.first_inference_us is None and result.warmup is None


def test_nan_values_are_none():
    # written from the format, not captured
    text = "Inference timings in us: Init: 1234, First inference: 5678, Warmup (avg): -nan, Inference (avg): 900\n"
    result = parse_tflite_benchmark(text)
    assert (result.init_us, result.first_inference_us, result.warmup_avg_us, result.avg_us) == (1234, 5678, None, 900)


@pytest.mark.parametrize("text", ["", "   \n\r\n\n"])
def test_empty_input(text):
    with pytest.raises(ParseError, match="^tflite-benchmark: the input is empty"):
        parse_tflite_benchmark(text)


def test_other_tools_output_is_refused():
    with pytest.raises(ParseError) as caught:
        parse_tflite_benchmark(real("ort_perf_test/spacemit_k1_yolov8n_int8.txt"))
    message = str(caught.value)
    assert message.startswith("tflite-benchmark: ")
    assert "Inference timings in us" in message and "benchmark_model" in message


def test_op_profiler_section_alone_is_refused():
    text = "Timings (microseconds): count=50 first=2989660 curr=2912978 min=2727203 max=3189476 avg=2.9499e+06\n"
    with pytest.raises(ParseError, match="tflite-benchmark"):
        parse_tflite_benchmark(text)
