"""ort-perf-test: real captures (see their .source.txt notes) and hand-written variants."""

from __future__ import annotations

import pytest

from harness.errors import ParseError
from harness.parsers.ort import parse_ort_perf_test
from tests.parsers.samples import ORT_OLD_WORDING, ORT_OTHER_UNITS, crlf, logcat, real

K1 = "ort_perf_test/spacemit_k1_yolov8n_int8.txt"
MODELZOO = "ort_perf_test/spacemit_riscv_modelzoo_example.txt"


def test_spacemit_k1_capture():
    result = parse_ort_perf_test(real(K1))
    assert result.model_file == "/mnt/modelzoo/detection/yolov8n/yolov8n.q.onnx"
    assert result.execution_provider == "SpaceMITExecutionProvider"
    assert result.intra_op_threads == 4
    assert result.session_creation_ms == 1144.76
    assert result.first_inference_ms == 248
    assert result.total_inference_ms == 823.382
    assert result.total_run_ms == 823.483
    assert (result.requests, result.runs, result.iterations) == (10, 10, 10)
    assert result.avg_ms == 82.3382
    assert result.throughput_per_s == 12.1435
    assert result.avg_cpu_pct == 48
    assert result.peak_working_set_bytes == 78946304
    assert result.peak_working_set_kb == 77096
    assert (result.min_ms, result.max_ms) == (80.8129, 83.8817)
    assert result.p50_ms == 82.6095
    assert result.p90_ms == result.p95_ms == result.p99_ms == result.p999_ms == 83.8817


def test_spacemit_modelzoo_capture_newer_average_wording():
    result = parse_ort_perf_test(real(MODELZOO))
    assert result.model_file is None
    assert result.intra_op_threads == 1
    assert result.session_creation_ms == 169.475
    assert result.first_inference_ms == 109
    assert result.total_inference_ms == 72.7021
    assert result.total_run_ms == 72.7619
    assert result.iterations == 10
    assert result.avg_ms == 7.270205  # "Average inference time cost total: 7.270205 ms"
    assert result.throughput_per_s == 137.435
    assert result.avg_cpu_pct == 62
    assert result.peak_working_set_bytes == 91336704
    assert (result.min_ms, result.max_ms, result.p50_ms) == (7.20383, 7.30163, 7.27787)
    assert result.p90_ms == result.p95_ms == result.p99_ms == result.p999_ms == 7.30163


@pytest.mark.parametrize(
    "variant",
    [crlf, lambda text: logcat(text, "tag", "onnxruntime"), lambda text: text.replace("\n", "\n\n")],
)
def test_variants_parse_the_same(variant):
    for name in (K1, MODELZOO):
        assert parse_ort_perf_test(variant(real(name))) == parse_ort_perf_test(real(name))


def test_units_as_printed_are_converted_to_ms():
    # written from the format, not captured
    result = parse_ort_perf_test(ORT_OTHER_UNITS)
    assert result.session_creation_ms == 356
    assert result.first_inference_ms == 15  # 1.5e+01 ms
    assert result.total_inference_ms == 1250  # 1250000 us
    assert result.avg_ms == 12.5  # 12500 us
    assert result.total_run_ms == 1260
    assert (result.requests, result.runs, result.iterations) == (100, None, 100)
    assert result.peak_working_set_bytes == 1048576 and result.peak_working_set_kb == 1024
    assert (result.min_ms, result.max_ms) == (11, 16.1)
    assert result.p50_ms == 12.4  # us
    assert result.p90_ms == 13.1  # ms
    assert result.p95_ms == 13.5  # no unit: seconds, as onnxruntime_perf_test prints
    assert (result.p99_ms, result.p999_ms) == (16, 16.1)


def test_old_wording_and_missing_fields():
    # written from the format, not captured
    result = parse_ort_perf_test(ORT_OLD_WORDING)
    assert result.session_creation_ms == 35.6
    assert result.total_inference_ms == 1250
    assert result.iterations == 100
    assert result.avg_ms == 12.5
    assert result.p50_ms is None and result.peak_working_set_bytes is None and result.avg_cpu_pct is None


def test_empty_input():
    with pytest.raises(ParseError, match="^ort-perf-test: the input is empty"):
        parse_ort_perf_test("\r\n")


def test_other_tools_output_is_refused():
    with pytest.raises(ParseError) as caught:
        parse_ort_perf_test(real("tflite_benchmark_model/xiaomi_mi11_yolov5s_fp32_cpu_tf2.4.txt"))
    assert str(caught.value).startswith("ort-perf-test: no 'Average inference time cost'")
    assert "onnxruntime_perf_test" in str(caught.value)
