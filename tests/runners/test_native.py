"""Native runners: command lines built from the protocol, captured tool outputs mapped onto a
BenchmarkResult, and the whole path (push, chmod, run, parse) on the local device.

benchmark_model and onnxruntime_perf_test are not published on the package registries this
project can reach, so the end-to-end test runs a stand-in executable that records its
arguments and prints a real captured output of the tool (tests/fixtures/real-outputs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.config import load_fleet
from harness.errors import AgentError, ConfigError
from harness.measurement import LatencyProtocol
from harness.models.variants import variants_for
from harness.probes.cpus import CoreType, format_cpu_list
from harness.probes.parsers.benchmark_tools import parse_ort_perf_test, parse_tflite_benchmark
from harness.runners.native import ort_argv, ort_result, tflite_argv, tflite_result
from harness.session import Lab, RunOptions

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-outputs"
PROTOCOL = LatencyProtocol(warmup_iters=5, warmup_s=0.5, min_iters=50, min_s=1.0, max_s=30.0)


def test_command_lines_carry_the_protocol():
    assert tflite_argv("/t/bm", "/t/m.tflite", PROTOCOL, 4) == [
        "/t/bm",
        "--graph=/t/m.tflite",
        "--warmup_runs=5",
        "--warmup_min_secs=0.5",
        "--num_runs=50",
        "--min_secs=1",
        "--max_secs=30",
        "--report_peak_memory_footprint=true",
        "--num_threads=4",
    ]
    paced = LatencyProtocol(rate_hz=20.0)
    assert "--run_delay=0.05" in tflite_argv("b", "m", paced, 0)
    assert ort_argv("/t/pt", "/t/m.onnx", PROTOCOL, 2) == [
        "/t/pt",
        "-m",
        "times",
        "-r",
        "50",
        "-I",
        "-s",
        "-x",
        "2",
        "/t/m.onnx",
    ]


def test_tflite_capture_maps_with_stated_stand_ins():
    text = (REAL / "tflite_benchmark_model/xiaomi_mi11_yolov5s_fp32_cpu_tf2.4.txt").read_text()
    summary, memory, load_ms, first_ms, notes = tflite_result(parse_tflite_benchmark(text))
    assert (summary.mean, summary.median, summary.min, summary.max, summary.samples) == (
        249.684,
        249.684,
        247.067,
        254.474,
        50,
    )
    assert summary.std == pytest.approx(1.442) and summary.p99 == 254.474
    assert memory.peak_rss_mb == 138.809 and memory.load_peak_mb == 4.92969
    assert (load_ms, first_ms) == (16.242, 360.262)
    assert notes[0].startswith("median: benchmark_model printed no median")


def test_ort_capture_maps_percentiles_and_peak_working_set():
    text = (REAL / "ort_perf_test/spacemit_k1_yolov8n_int8.txt").read_text()
    summary, memory, load_ms, first_ms, notes = ort_result(parse_ort_perf_test(text))
    assert summary.median == pytest.approx(82.6095) and summary.p90 == pytest.approx(83.8817)
    assert summary.mean == pytest.approx(82.3382) and summary.samples == 10
    assert memory.peak_rss_mb == pytest.approx(78946304 / 1024 / 1024, abs=1e-3)
    assert (load_ms, first_ms) == (pytest.approx(1144.76), 248)
    assert notes == ["std: onnxruntime_perf_test prints none; reported as 0"]


def stand_in(tmp_path: Path, capture: str, exit_code: int = 0) -> Path:
    tool = tmp_path / "tool.sh"
    log = tmp_path / "argv.json"
    tool.write_text(
        "#!/bin/sh\n"
        f'python3 -c \'import json,sys; json.dump(sys.argv[1:], open("{log}", "w"))\' "$@"\n'
        f"grep Cpus_allowed_list: /proc/self/status > '{tmp_path / 'affinity.txt'}'\n"
        f"cat '{REAL / capture}' >&2\n"
        f"exit {exit_code}\n"
    )
    tool.chmod(0o755)
    return tool


def native_lab(tmp_path: Path, tools: dict[str, Path], extra: str = "") -> Lab:
    listed = ", ".join(f"{k}: {v}" for k, v in tools.items())
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        "devices:\n  nopython:\n    kind: local\n    runner: native\n"
        f"    workdir: {tmp_path / 'device'}\n    native_tools: {{{listed}}}\n{extra}"
    )
    fleet = load_fleet(devices, lab_file=tmp_path / "no-lab.yaml")
    return Lab(fleet, RunOptions(reports_dir=tmp_path / "reports", devices=("nopython",)))


def test_native_run_end_to_end_on_the_local_device(tmp_path):
    tool = stand_in(tmp_path, "tflite_benchmark_model/qemuriscv64_mobilenet_v1_op_profiling.txt")
    lab = native_lab(tmp_path, {"tflite": tool})
    try:
        measured = lab.benchmark("nopython", variants_for("face_detection")[0], PROTOCOL)
        result, deploy = measured.result, measured.deploy
        assert result.runtime.module == "benchmark_model" and result.stopped_by == "native"
        assert result.latency_ms.mean == pytest.approx(2950.34) and result.iterations == 50
        assert result.memory.peak_rss_mb is None  # only a delta was printed: not called a peak
        assert any(note.startswith("memory: only the footprint delta") for note in result.notes)
        argv = json.loads((tmp_path / "argv.json").read_text())
        assert argv[0].startswith("--graph=") and argv[0].endswith("face_detection_short_range.tflite")
        assert "--num_runs=50" in argv and deploy.bytes_pushed > 0
        assert "--num_threads=1" in argv  # the explicit default, never the tool's own
        record = lab.record(
            test="t.py::test[nopython-face_detection-litert-fp16]",
            status="passed",
            device="nopython",
            variant=variants_for("face_detection")[0],
            measured=measured,
        )
        assert record.runner == "native" and record.latency_samples_ms is None
        assert record.throttle is None  # nothing thermal measured: no verdict that reads as "not throttled"
        assert any(note.startswith("thermal: not measured") for note in record.notes)
        assert record.cpus is not None and record.cpus.threads == 1
        assert record.cpus.allowed == format_cpu_list(os.sched_getaffinity(0)) and record.cpus.pinned_by is None
        assert record.modes is not None and record.modes.bimodal is None
        assert record.to_json()["modes"] == {
            "bimodal": None,
            "reason": "no per-iteration samples: the native tool prints a summary",
            "modes": [],
            "separation": None,
            "ratio": None,
        }
    finally:
        lab.close()


def test_native_tools_run_pinned_to_the_devices_cpus_with_taskset(tmp_path):
    tool = stand_in(tmp_path, "tflite_benchmark_model/qemuriscv64_mobilenet_v1_op_profiling.txt")
    lab = native_lab(tmp_path, {"tflite": tool}, '    cpus: "0"\n')
    try:
        result = lab.benchmark("nopython", variants_for("face_detection")[0], PROTOCOL).result
        assert (tmp_path / "affinity.txt").read_text().split() == ["Cpus_allowed_list:", "0"]
        assert result.placement is not None
        assert (result.placement.requested, result.placement.allowed) == ("0", "0")
        assert result.placement.pinned_by == "taskset"
        cpu0 = Path("/sys/devices/system/cpu/cpu0")
        capacity, max_khz = cpu0 / "cpu_capacity", cpu0 / "cpufreq" / "cpuinfo_max_freq"
        expected = [int(path.read_text()) if path.exists() else None for path in (capacity, max_khz)]
        if expected != [None, None]:  # this host's sysfs, read by the device-side shell
            assert result.placement.core_types == {"0": CoreType(expected[0], expected[1])}
    finally:
        lab.close()


def test_a_cpu_the_device_does_not_have_fails_with_the_fix(tmp_path):
    tool = stand_in(tmp_path, "tflite_benchmark_model/qemuriscv64_mobilenet_v1_op_profiling.txt")
    lab = native_lab(tmp_path, {"tflite": tool}, "    cpus: [63]\n")
    try:
        with pytest.raises(AgentError, match=r"taskset could not pin it to cpus 63: check cpus in devices.yaml"):
            lab.benchmark("nopython", variants_for("face_detection")[0], PROTOCOL)
    finally:
        lab.close()


def test_native_errors_name_the_fix(tmp_path):
    lab = native_lab(tmp_path, {"tflite": stand_in(tmp_path, "ort_perf_test/spacemit_k1_yolov8n_int8.txt")})
    try:
        with pytest.raises(
            ConfigError,
            match="runner native has no onnx tool; add native_tools: {onnx: /path/to/onnxruntime_perf_test}",
        ):
            lab.benchmark("nopython", variants_for("silero_vad")[0], PROTOCOL)
        with pytest.raises(AgentError, match="tflite-benchmark: no 'Inference timings in us'"):
            lab.benchmark("nopython", variants_for("face_detection")[0], PROTOCOL)
    finally:
        lab.close()
