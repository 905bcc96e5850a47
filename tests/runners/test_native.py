"""The native runner on the host as a device without Python (the local transport, the real POSIX
sh script, the sysfs sampler on this machine's /sys): command lines from the protocol, captured
tool outputs mapped onto the agent's result, what is not measured said so, and bad input.

benchmark_model and onnxruntime_perf_test are not published on the registries this project can
reach, so these tests run small executables that record their arguments and print real captured
outputs of the tools (tests/fixtures/real-outputs). The stock virtual phone, with its Perfetto,
is tested in tests/lab/test_native_stock.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.config import load_fleet
from harness.deploy import Artifact, Deployer
from harness.errors import AgentError, ConfigError, DownloadError, NotMeasurable, ParseError
from harness.measurement import LatencyProtocol
from harness.models.variants import variants_for
from harness.probes.cpus import CoreType, format_cpu_list
from harness.probes.parsers.benchmark_tools import (
    parse_ort_perf_test,
    parse_tflite_benchmark,
)
from harness.probes.thermal import ThermalTrace
from harness.runners import native_results as results
from harness.runners.base import RunRequest
from harness.runners.native import NativeRunner, parse_native_probe
from harness.runners.native_results import Timing, ort_report, tflite_report
from harness.runners.native_script import ScriptArgs, parse_script_output, run_script
from harness.runners.tensor_files import TensorFileError, TensorSpec, load_batch, split_outputs
from harness.session import Lab, RunOptions
from harness.stats import summarize_latency
from harness.transport.local import LocalTransport

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-outputs"
PROTOCOL = LatencyProtocol(warmup_iters=3, warmup_s=0.5, min_iters=10, min_s=1.0, max_s=30.0, idle_s=0.2)
TFLITE_CAPTURE = "tflite_benchmark_model/xiaomi_mi11_yolov5s_fp32_cpu_tf2.4.txt"
ORT_CAPTURE = "ort_perf_test/spacemit_k1_yolov8n_int8.txt"


# -- the tools' own summaries --------------------------------------------------------------------

MS = 1_000_000


def test_tflite_capture_maps_with_stated_stand_ins():
    report = tflite_report(parse_tflite_benchmark((REAL / TFLITE_CAPTURE).read_text()))
    summary = report.summary
    assert (summary.mean, summary.median, summary.min, summary.max, summary.samples) == (
        249.684,
        249.684,
        247.067,
        254.474,
        50,
    )
    assert summary.std == pytest.approx(1.442) and summary.p99 == 254.474
    assert report.memory.peak_rss_mb == 138.809 and report.memory.load_peak_mb is None
    assert (report.load_ms, report.first_inference_ms) == (16.242, 360.262)
    assert report.notes[0].startswith("median: benchmark_model printed no median")


def test_ort_capture_maps_percentiles_and_peak_working_set():
    report = ort_report(parse_ort_perf_test((REAL / ORT_CAPTURE).read_text()))
    assert report.summary.median == pytest.approx(82.6095) and report.summary.p90 == pytest.approx(83.8817)
    assert report.summary.mean == pytest.approx(82.3382) and report.summary.samples == 10
    assert report.memory.peak_rss_mb == pytest.approx(78946304 / 1024 / 1024, abs=1e-3)
    assert (report.load_ms, report.first_inference_ms) == (pytest.approx(1144.76), 248)


# -- the device probe and the script's output ----------------------------------------------------

PROBE_ANDROID_10 = """uname Linux 4.14.180 aarch64
abi android arm64-v8a
model Pixel 4
sdk 29
release 10
traced 0
has perfetto
has dumpsys
cores 8
memtotal 5772232
has battery
"""


def test_probe_of_android_10_without_traced_falls_back_to_sysfs_and_says_how_to_enable_perfetto():
    device = parse_native_probe(PROBE_ANDROID_10, "pixel4")
    assert (device.system, device.abi, device.sdk, device.tracing) == ("android", "arm64-v8a", 29, "sysfs")
    assert "setprop persist.traced.enable 1" in (device.tracing_note or "")
    assert device.probe.energy_sources == ("battery",) and device.probe.cpu.cores == 8
    assert device.probe.os.android == {"model": "Pixel 4", "sdk": "29", "release": "10"}
    enabled = parse_native_probe(PROBE_ANDROID_10.replace("traced 0", "traced 1"), "pixel4")
    assert (enabled.tracing, enabled.tracing_note, enabled.probe.energy_sources) == (
        "perfetto",
        None,
        ("odpm", "battery"),
    )
    old = parse_native_probe(PROBE_ANDROID_10.replace("has perfetto\n", "").replace("sdk 29", "sdk 27"))
    assert old.tracing == "sysfs" and "Android < 9" in (old.tracing_note or "")
    with pytest.raises(ParseError, match="no ABI line"):
        parse_native_probe("uname Linux 6.1 x86_64\n", "board")


def test_script_output_is_read_by_its_token_only():
    token = "feedbeef0001"
    text = "\n".join(
        [
            "noise from a tool writing to the terminal",
            f"{token} mark idle-start 1234.50",
            f"{token} mark tool-end 1240.01",
            f"{token} pid 4242",
            f"{token} governor /sys/devices/system/cpu/cpufreq/policy0 schedutil",
            f"{token} battery 81 Discharging",
            f"{token} stat idle-start 10 0 10 80 0 0 0 0",
            f"{token} stat idle-end 20 0 20 140 20 0 0 0",
            f"{token} rc 0",
            f"{token} begin tool.out",
            "INFO: count=3 curr=7",
            f"{token} mark not-a-mark-inside-a-section 1.0",
            "",
            f"{token} end tool.out",
            f"{token} done",
        ]
    )
    output = parse_script_output(text, token)
    assert output.marks == {"idle-start": 1_234_500_000_000, "tool-end": 1_240_010_000_000}
    assert (output.pid, output.exit_code, output.done) == (4242, 0, True)
    assert output.governors == {"policy0": "schedutil"} and output.battery == (81, "Discharging")
    assert (
        output.section("tool.out") == f"INFO: count=3 curr=7\n{token} mark not-a-mark-inside-a-section 1.0\n"
    )
    assert output.idle_busy_pct() == pytest.approx(100 * 20 / 100)  # 20 busy jiffies of 100
    with pytest.raises(ParseError, match="printed none of its lines"):
        parse_script_output("sh: edgelab-native-run.sh: not found\n", token)
    with pytest.raises(ParseError, match="stops inside its 'tool.out' section"):
        parse_script_output(f"{token} begin tool.out\nhalf", token)


def test_script_arguments_round_trip_through_a_real_sh(tmp_path):
    """The script's argument parsing, its links and its per-sample cutting, in this host's sh."""
    script = tmp_path / "run.sh"
    script.write_text(run_script())
    data = tmp_path / "all.bin"
    data.write_bytes(b"AAAABBBBCCCC")
    tool = tmp_path / "tool.sh"
    tool.write_text('#!/bin/sh\ncat "$1" > "$2/out.bin"; echo "INFO: count=1 curr=5"\n')
    tool.chmod(0o755)
    run_dir = tmp_path / "run"
    args = ScriptArgs(
        "tok123",
        str(run_dir),
        "samples",
        0.0,
        "none",
        None,
        0.25,
        False,
        False,
        (str(tool), f"{run_dir}/in0.bin", str(run_dir)),
        samples=3,
        links=((str(data), "sub/linked.bin"),),
        inputs=((str(data), 4, f"{run_dir}/in0.bin"),),
    )
    result = LocalTransport("host").run(args.argv(str(script)), timeout=60, stdin=b"config text")
    output = parse_script_output(result.stdout, "tok123")
    assert (output.exit_code, output.samples_done, output.done) == (0, 3, True)
    assert (run_dir / "outputs.bin").read_bytes() == b"AAAABBBBCCCC"
    assert (run_dir / "sub" / "linked.bin").read_bytes() == b"AAAABBBBCCCC"
    assert (run_dir / "trace.pbtxt").read_text() == "config text"
    assert [part.strip() for part in output.samples_output()] == ["INFO: count=1 curr=5"] * 3
    assert [name for name in output.marks if name.startswith("sample-")] == [
        "sample-0",
        "sample-1",
        "sample-2",
    ]


def test_android_thermal_status_is_read_while_the_tool_runs_in_the_phones_shell(tmp_path):
    """The status loop under mksh (Android's /system/bin/sh), with a dumpsys whose status rises by
    one per call (the real tool's "Thermal Status: N" line): read during the run, not only around it."""
    shell = shutil.which("mksh")
    if shell is None:
        pytest.skip("mksh is not installed (apt-get install -y mksh)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    count = tmp_path / "calls"
    (bin_dir / "dumpsys").write_text(
        "#!/bin/sh\n"
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}\n"
        'echo "IsStatusOverride: false"; echo "  Thermal Status: $((n / 2))"; echo "HAL Ready: true"\n'
    )
    (bin_dir / "dumpsys").chmod(0o755)
    script = tmp_path / "run.sh"
    script.write_text(run_script())
    run_dir = tmp_path / "run"
    args = ScriptArgs(
        "tok9",
        str(run_dir),
        "once",
        0.0,
        "none",
        None,
        0.25,
        False,
        False,
        ("sleep", "1.5"),
        status_period_s=0.1,
    )
    argv = [shell, *args.argv(str(script))[1:]]
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(argv, input=b"", capture_output=True, timeout=60, env=environment, check=True)
    output = parse_script_output(done.stdout.decode(), "tok9")
    origin = output.marks["tool-start"]
    status = results.status_samples(output, origin)
    assert len(status) >= 3, output.section("status.txt")  # 1.5 s at 0.1 s, each dumpsys a fork or two
    assert [value for _, value in status] == sorted(value for _, value in status)  # the rising status
    assert status[-1][1] >= 1 and all(-1.0 < at < 3.0 for at, _ in status)
    trace = ThermalTrace(period_s=0.25, zones=(), policies=(), cpuinfo_max_khz=(), samples=())
    timing = Timing((), (), summarize_latency([MS] * 3), (origin, output.marks["tool-end"]))
    judged, _ = results.verdict(
        dataclasses.replace(trace, status_kind="android", status=status), timing, output
    )
    assert judged is not None and judged.throttled is True
    assert judged.reasons[-1].startswith("thermal status: ") and " at " in judged.reasons[-1]


# -- model inputs and outputs as files -----------------------------------------------------------


def test_inputs_are_checked_as_the_agent_checks_them(tmp_path):
    spec = TensorSpec("x", (1, 4), "float32")
    good = tmp_path / "good.npz"
    np.savez(good, x=np.ones((3, 1, 4), np.uint8), **{"x.__scale__": np.float32(0.5)})
    batch, count = load_batch(good, [spec])
    assert count == 3 and batch["x"].dtype == np.float32 and float(batch["x"][0, 0, 0]) == 0.5
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.ones((2, 1, 5), np.float32))
    with pytest.raises(
        TensorFileError, match=r"input 'x': model expects shape \[1, 4\] float32, file has \[1, 5\]"
    ):
        load_batch(bad, [spec])
    other = tmp_path / "other.npz"
    np.savez(other, y=np.ones((2, 1, 4), np.float32))
    with pytest.raises(TensorFileError, match=r"inputs file has \['y'\], which the model does not take"):
        load_batch(other, [spec])


def test_outputs_of_several_runs_are_split_into_the_agents_arrays():
    specs = [TensorSpec("boxes", (1, 2, 2), "float32"), TensorSpec("count", (1,), "int32")]
    runs = [
        np.arange(4, dtype=np.float32).tobytes() + np.array([7], np.int32).tobytes(),
        np.arange(4, 8, dtype=np.float32).tobytes() + np.array([9], np.int32).tobytes(),
    ]
    arrays = split_outputs(b"".join(runs), specs, 2)
    assert arrays["boxes"].shape == (2, 1, 2, 2) and arrays["boxes"][1, 0, 1, 1] == 7.0
    assert arrays["count"].tolist() == [[7], [9]]
    with pytest.raises(ParseError, match=r"20 bytes of outputs for 2 samples of 20 bytes"):
        split_outputs(runs[0], specs, 2)


# -- whole runs on the host as a device without Python --------------------------------------------


def fake_benchmark_model(folder: Path, capture: str = TFLITE_CAPTURE, body: str = "") -> Path:
    """Records its argv and prints a real benchmark_model capture on stderr, as the tool logs."""
    tool = folder / "benchmark_model"
    tool.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" > {shlex.quote(str(folder / 'tflite-argv.txt'))}\n"
        f"grep Cpus_allowed_list: /proc/self/status > {shlex.quote(str(folder / 'affinity.txt'))}\n"
        f"{body}\n"
        f"cat {shlex.quote(str(REAL / capture))} >&2\n"
    )
    tool.chmod(0o755)
    return tool


def fake_onnxruntime_perf_test(folder: Path) -> Path:
    """Prints a real onnxruntime_perf_test capture and writes the result file, one line per run as
    DumpToFile does: runs of 0.0800 s, 0.0805 s, ... 0.0830 s, repeating; ``-r N`` runs, or with
    ``-t S`` runs until they add up to S seconds (the tool's duration mode)."""
    tool = folder / "onnxruntime_perf_test"
    tool.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {shlex.quote(str(folder / "ort-argv.txt"))}\n'
        "runs=0; seconds=0; prev=\n"
        'for a in "$@"; do\n'
        '  [ "$prev" = -r ] && runs=$a; [ "$prev" = -t ] && seconds=$a; prev=$a; result=$a\n'
        "done\n"
        f"cat {shlex.quote(str(REAL / ORT_CAPTURE))}\n"
        "i=0; total=0\n"
        'while [ "$i" -lt "$runs" ] || [ "$total" -lt $((seconds * 1000000)) ]; do\n'
        "  us=$((80000 + i % 7 * 500)); total=$((total + us))\n"
        '  echo "model,0.0$us,78946304,48,$i" >> "$result"; i=$((i + 1))\n'
        "done\n"
    )
    tool.chmod(0o755)
    return tool


def native_lab(tmp_path: Path, tools: dict[str, Path | str], extra: str = "") -> Lab:
    listed = ", ".join(f"{k}: '{v}'" for k, v in tools.items())
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        "devices:\n  nopython:\n    kind: local\n    runner: native\n"
        f"    workdir: {tmp_path / 'device'}\n    native_tools: {{{listed}}}\n{extra}"
    )
    fleet = load_fleet(devices, lab_file=tmp_path / "no-lab.yaml")
    return Lab(fleet, RunOptions(reports_dir=tmp_path / "reports", devices=("nopython",)))


def variant(model: str, model_format: str):
    return next(v for v in variants_for(model) if v.format == model_format and not v.unavailable)


def test_benchmark_model_without_perfetto_gives_the_tools_summary_and_says_what_was_not_measured(tmp_path):
    lab = native_lab(tmp_path, {"tflite": fake_benchmark_model(tmp_path)})
    try:
        measured = lab.benchmark(
            "nopython", variant("face_detection", "tflite"), PROTOCOL, test_id="t.py::test"
        )
        result = measured.result
        argv = (tmp_path / "tflite-argv.txt").read_text().split("\n")
        assert argv[0].startswith("--graph=") and argv[0].endswith("face_detection_short_range.tflite")
        assert argv[1:8] == [
            "--num_threads=1",  # the explicit default, never the tool's own
            "--warmup_runs=3",
            "--warmup_min_secs=0.5",
            "--num_runs=10",
            "--min_secs=1",
            "--max_secs=30",
            "--report_peak_memory_footprint=true",
        ]
        assert argv[8:11] == [
            "--input_layer=input",
            "--input_layer_shape=1,128,128,3",
            f"--input_layer_value_files=input:{tmp_path}/device/cas/"
            + argv[10].split("/cas/")[1],  # the inputs' first sample, pushed like any artifact
        ]
        assert result.runtime.module == "benchmark_model" and measured.runner == "native"
        assert result.latency_ms.mean == pytest.approx(249.684) and result.latency_samples_ns == ()
        assert result.memory.peak_rss_mb == 138.809 and result.memory.pss_mb is None
        assert result.throttle is None and result.thermal is None and result.energy is None
        notes = "\n".join(result.notes)
        for expected in (
            "latency samples: not measured (benchmark_model prints a summary",
            "thermal: not measured",
            "throttling: not judged",
            "energy: not measured",
            "pss: not measured (no dumpsys on this device)",
            "tracing: not an Android device",
        ):
            assert expected in notes
        record = lab.record(
            test="t.py::test[nopython-face_detection-litert-fp16]",
            status="passed",
            device="nopython",
            variant=variant("face_detection", "tflite"),
            measured=measured,
        )
        assert record.runner == "native" and record.latency_samples_ms is None and record.trace_file is None
        assert record.throttle is None  # nothing thermal measured: no verdict that reads "not throttled"
        assert record.cpus is not None and record.cpus.threads == 1 and record.cpus.pinned_by is None
        assert record.cpus.allowed == format_cpu_list(os.sched_getaffinity(0))
        assert record.modes is not None and record.modes.bimodal is None
        assert record.modes.reason == "no per-iteration samples: the native tool printed a summary only"
    finally:
        lab.close()


@pytest.mark.parametrize("persistent", [True, False])
def test_native_commands_share_one_device_shell_for_the_session(tmp_path, persistent):
    """Every command of a session runs in one shell kept open on the device (the tool's session
    id is the shell's); ``persistent_channel: false`` starts a new one per command."""
    sessions = tmp_path / "sessions.txt"
    tool = fake_benchmark_model(tmp_path, body=f"awk '{{print $6}}' /proc/$$/stat >> '{sessions}'")
    lab = native_lab(tmp_path, {"tflite": tool}, f"    persistent_channel: {str(persistent).lower()}\n")
    try:
        for _ in range(2):
            result = lab.benchmark("nopython", variant("face_detection", "tflite"), PROTOCOL).result
            assert result.runtime.module == "benchmark_model"
    finally:
        lab.close()
    found = sessions.read_text().split()
    assert len(found) == 2 and str(os.getsid(0)) not in found
    assert (found[0] == found[1]) is persistent


def test_onnxruntime_perf_test_result_file_gives_the_samples_and_the_summary_comes_from_them(tmp_path):
    lab = native_lab(tmp_path, {"onnx": fake_onnxruntime_perf_test(tmp_path)})
    try:
        result = lab.benchmark("nopython", variant("ppocr_cls", "onnx"), PROTOCOL, test_id="t.py::o").result
        calibration, measured = (tmp_path / "ort-argv.txt").read_text().splitlines()
        assert calibration.startswith("-m times -r 3 -x 1 -s ")  # warmup_iters runs measure the pace
        # later half of the calibration: 0.0805 and 0.0810 s, so 10 runs take 0.81 s < min_s 1 s:
        # min_s binds, and the tool runs until its runs add up to 1 s (13 runs here)
        assert measured.startswith("-m duration -t 1 -x 1 -s ") and measured.endswith(".csv")
        assert "/model/model.onnx " in measured
        expected = [round((0.08 + (i % 7) * 0.0005) * 1e9) for i in range(13)]
        assert list(result.latency_samples_ns) == expected
        assert result.latency_ms == summarize_latency(expected)
        assert result.start_offsets_ns[:3] == (0, expected[0], expected[0] + expected[1])
        assert result.iterations == 13 and result.stopped_by == "min_reached"
        assert result.memory.peak_rss_mb == round(78946304 / 1024 / 1024, 3)
        assert result.throttle is not None and result.throttle.throttled is None  # samples, no trace
        assert any(n.startswith("latency samples: onnxruntime_perf_test's result file") for n in result.notes)
    finally:
        lab.close()


def test_when_min_iters_binds_onnxruntime_perf_test_gets_a_count(tmp_path):
    lab = native_lab(tmp_path, {"onnx": fake_onnxruntime_perf_test(tmp_path)})
    protocol = dataclasses.replace(PROTOCOL, min_iters=40)  # 40 x 0.08075 s = 3.2 s > min_s 1 s
    try:
        first = lab.benchmark("nopython", variant("ppocr_cls", "onnx"), protocol).result
        again = lab.benchmark("nopython", variant("ppocr_cls", "onnx"), protocol).result
    finally:
        lab.close()
    calibration, measured, remeasured = (tmp_path / "ort-argv.txt").read_text().splitlines()
    assert calibration.startswith("-m times -r 3 ")  # once per model: the second run reuses it
    assert measured.startswith("-m times -r 40 ") and remeasured.startswith("-m times -r 40 ")
    assert first.iterations == again.iterations == 40


def test_native_tools_run_pinned_to_the_devices_cpus_with_taskset(tmp_path):
    lab = native_lab(tmp_path, {"tflite": fake_benchmark_model(tmp_path)}, '    cpus: "0"\n')
    try:
        result = lab.benchmark("nopython", variant("face_detection", "tflite"), PROTOCOL).result
    finally:
        lab.close()
    assert (tmp_path / "affinity.txt").read_text().split() == ["Cpus_allowed_list:", "0"]
    assert result.placement is not None and result.placement.pinned_by == "taskset"
    assert (result.placement.requested, result.placement.allowed) == ("0", "0")
    assert not any("edgelab-cpu:" in note for note in result.notes)  # the report is not the tool's output
    cpu0 = Path("/sys/devices/system/cpu/cpu0")
    capacity, max_khz = cpu0 / "cpu_capacity", cpu0 / "cpufreq" / "cpuinfo_max_freq"
    expected = [int(path.read_text()) if path.exists() else None for path in (capacity, max_khz)]
    if expected != [None, None]:  # this host's sysfs, read by the device-side shell
        assert result.placement.core_types == {"0": CoreType(expected[0], expected[1])}


def test_a_cpu_the_device_does_not_have_fails_with_the_fix(tmp_path):
    lab = native_lab(tmp_path, {"tflite": fake_benchmark_model(tmp_path)}, "    cpus: [63]\n")
    try:
        with pytest.raises(
            AgentError, match=r"taskset could not pin it to cpus 63: check cpus in devices.yaml"
        ):
            lab.benchmark("nopython", variant("face_detection", "tflite"), PROTOCOL)
    finally:
        lab.close()


def test_a_tool_that_crashes_is_named_with_its_signal_and_its_output_kept(tmp_path):
    tool = fake_benchmark_model(tmp_path, body="echo 'INFO: Loaded model' >&2; kill -SEGV $$")
    lab = native_lab(tmp_path, {"tflite": tool})
    try:
        with pytest.raises(
            AgentError, match=r"benchmark_model crashed \(SIGSEGV, exit 139\): INFO: Loaded model"
        ) as info:
            lab.benchmark("nopython", variant("face_detection", "tflite"), PROTOCOL, test_id="t.py::crash")
        kept = Path(str(info.value).rsplit("kept in ", 1)[1])
        assert kept.parent == tmp_path / "reports" / lab.run_id / "traces"
        assert "INFO: Loaded model" in kept.read_text()
    finally:
        lab.close()


def test_output_that_does_not_parse_is_kept_and_named(tmp_path):
    tool = tmp_path / "benchmark_model"
    tool.write_text("#!/bin/sh\necho 'Segmentation fault? no: just a different tool'\n")
    tool.chmod(0o755)
    lab = native_lab(tmp_path, {"tflite": tool})
    try:
        with pytest.raises(AgentError, match=r"tflite-benchmark: no 'Inference timings in us' line") as info:
            lab.benchmark("nopython", variant("face_detection", "tflite"), PROTOCOL, test_id="t.py::junk")
        kept = Path(str(info.value).rsplit("kept in ", 1)[1])
        assert "just a different tool" in kept.read_text()
    finally:
        lab.close()


def test_onnx_accuracy_is_not_measurable_without_python(tmp_path):
    lab = native_lab(tmp_path, {"onnx": fake_onnxruntime_perf_test(tmp_path)})
    try:
        with pytest.raises(NotMeasurable, match="onnxruntime_perf_test writes none; evaluate it on a device"):
            lab.benchmark(
                "nopython",
                variant("ppocr_cls", "onnx"),
                PROTOCOL,
                outputs_to=tmp_path / "out.npz",
                kind="accuracy",
            )
    finally:
        lab.close()


def test_an_external_meter_is_refused_with_the_fix(tmp_path):
    lab = native_lab(
        tmp_path, {"tflite": fake_benchmark_model(tmp_path)}, "    energy: external\n    energy_meter: x\n"
    )
    try:
        with pytest.raises(ConfigError, match="energy: external is not aligned with the native runner"):
            lab.benchmark("nopython", variant("face_detection", "tflite"), PROTOCOL)
    finally:
        lab.close()


def runner_on_host(tmp_path: Path, native_tools: str) -> NativeRunner:
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        f"devices:\n  phone:\n    kind: local\n    runner: native\n    native_tools: {native_tools}\n"
    )
    config = load_fleet(devices, lab_file=tmp_path / "no-lab.yaml")["phone"]
    transport = LocalTransport("phone")
    return NativeRunner(config, transport, Deployer(transport, str(tmp_path / "device")))


def request_for(tmp_path: Path) -> RunRequest:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"not read before the tool is found")
    return RunRequest(Artifact.from_file(model), None, "m", "tflite", "litert", "fp32", PROTOCOL, 1)


def test_no_tool_for_the_devices_abi_names_the_fix(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    getprop = bin_dir / "getprop"  # a 32-bit phone: LiteRT publishes nothing for it
    getprop.write_text('#!/bin/sh\n[ "$1" = ro.product.cpu.abi ] && echo armeabi-v7a; true\n')
    getprop.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    runner = runner_on_host(tmp_path, "{}")
    assert (runner.device.system, runner.device.abi) == ("android", "armeabi-v7a")
    with pytest.raises(
        ConfigError, match=r"LiteRT publishes no tools for the android ABI 'armeabi-v7a'.*native_tools"
    ):
        runner.run(request_for(tmp_path))


def test_a_tool_whose_hash_does_not_match_is_refused(tmp_path, monkeypatch, file_server):
    monkeypatch.setenv("EDGELAB_CACHE", str(tmp_path / "cache"))
    file_server.files["/bm"] = b"\x7fELF a different benchmark_model"
    wrong = hashlib.sha256(b"the build the team pinned").hexdigest()
    runner = runner_on_host(
        tmp_path, json.dumps({"benchmark_model": f"{file_server.url('/bm')}#sha256={wrong}"})
    )
    with pytest.raises(DownloadError, match=f"sha256 mismatch: expected {wrong}"):
        runner.run(request_for(tmp_path))
