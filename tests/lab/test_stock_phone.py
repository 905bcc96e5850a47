"""The stock virtual phone (pixel8-stock) through the real adb server: no Python in its shell,
Debian's mksh and toybox, getprop/dumpsys that the parsers read, and a perfetto whose traces the
``perfetto`` package reads, recorded around the stand-in tools' real inference."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from harness.lab.manager import VirtualLab, adb_binary
from harness.models import zoo
from harness.probes import perfetto
from harness.probes.parsers.android import parse_dumpsys_meminfo, parse_getprop
from harness.probes.parsers.benchmark_tools import parse_ort_perf_test, parse_tflite_benchmark
from harness.probes.thermal import judge
from tests.lab.conftest import LAB_TAU_S, lab_root

TMP = "/data/local/tmp"


@pytest.fixture(scope="module")
def stock():
    if os.geteuid() != 0:
        pytest.skip("the virtual lab tests need root (namespaces, cgroups)")
    root = lab_root("stock")
    lab = VirtualLab(root)
    try:
        state = lab.up(["pixel8-stock"], tau_s=LAB_TAU_S)
        device = state.devices[0]
        yield lab, state, device
    finally:
        lab.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)


def adb(
    stock, *args: str, stdin: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    _lab, state, device = stock
    command = [str(adb_binary()), "-P", str(state.adb_port), "-s", device.serial, *args]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=timeout, check=False)


def shell(stock, script: str, **kwargs) -> tuple[int, str, str]:
    done = adb(stock, "shell", script, **kwargs)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.fixture(scope="module")
def tools(stock, tmp_path_factory):
    """The stand-ins and a real model on the phone, pushed as the native runner pushes them."""
    lab, _state, _device = stock
    entry = lab.fleet().devices["virtual-pixel8-stock"]
    model = zoo.fetch(zoo.get("face_detection"))  # a real TFLite model from the zoo
    for local, remote in (
        (entry.native_tools["tflite"], f"{TMP}/benchmark_model"),
        (entry.native_tools["onnx"], f"{TMP}/onnxruntime_perf_test"),
        (str(model), f"{TMP}/model.tflite"),
    ):
        assert adb(stock, "push", local, remote).returncode == 0
    return entry


def record(stock, config: str, name: str, script: str) -> tuple[bytes, str]:
    """perfetto --background around ``script``, stopped with SIGTERM, the trace pulled back."""
    trace = f"{perfetto.DEVICE_TRACE_DIR}/{name}"
    code, out, err = shell(stock, f"cat > {TMP}/{name}.pbtxt", stdin=config.encode())
    assert code == 0, err
    code, out, err = shell(stock, " ".join(perfetto.start_argv(f"{TMP}/{name}.pbtxt", trace)[2:]))
    assert code == 0, err
    pid = perfetto.parse_pid(out)
    code, output, err = shell(stock, f"cd {TMP} && {script}")
    assert code == 0, err + output
    stop = perfetto.stop_argv(pid)
    assert shell(stock, stop[2])[0] == 0
    done = adb(stock, "exec-out", f"cat {trace}")
    assert done.returncode == 0
    return done.stdout, output + err


def test_no_python_only_mksh_and_toybox(stock):
    _code, out, _ = shell(stock, "command -v python3 python python3.11; echo rc=$?")
    assert out.strip() == "rc=1"
    _code, out, _ = shell(
        stock, 'echo "$KSH_VERSION"; readlink /system/bin/ls /system/bin/taskset; ls /usr /bin 2>&1 | wc -l'
    )
    lines = out.splitlines()
    assert "MIRBSD KSH" in lines[0]
    assert lines[1:3] == ["toybox", "toybox"]
    assert int(lines[3]) == 2  # two "No such file" lines: no /usr, no /bin
    _code, out, _ = shell(stock, "echo abc | sha256sum; date +%Y >/dev/null && echo dated")
    assert out.split()[0] == "edeaaff3f1774ad2888673770c6d64097e391bc362d7d6fb34982ddf0efd18cb"
    assert out.split()[-1] == "dated"


def test_getprop_and_setprop_parse_as_a_phone(stock):
    code, out, _ = shell(stock, "getprop")
    props = parse_getprop(out)
    assert (props.model, props.sdk_int, props.abi) == ("Pixel 8", 34, "arm64-v8a")
    assert props.props["ro.edgelab.virtual"] == "1"
    assert shell(stock, "setprop debug.edgelab.test 7; getprop debug.edgelab.test")[1] == "7\n"
    code, _, err = shell(stock, "setprop ro.product.model Other")
    assert code == 1 and "failed to set property 'ro.product.model'" in err


def test_dumpsys_meminfo_of_a_pid_parses(stock):
    code, out, err = shell(stock, "echo $$; dumpsys meminfo $$")
    assert code == 0, err
    meminfo = parse_dumpsys_meminfo(out)
    assert (meminfo.pid, meminfo.process) == (int(out.split()[0]), "sh")
    assert (
        meminfo.total_pss_kb > 0
        and meminfo.total_rss_kb is not None
        and meminfo.total_rss_kb >= meminfo.total_pss_kb
    )
    code, out, _ = shell(stock, "dumpsys thermalservice")
    assert "Thermal Status: 0" in out and "mName=skin" in out


def test_a_perfetto_trace_around_benchmark_model_has_thermal_power_and_one_invoke_per_inference(stock, tools):
    assert shell(stock, "setprop debug.tflite.trace 1")[0] == 0
    data, output = record(
        stock,
        perfetto.trace_config(None, poll_ms=100),
        "bm.perfetto-trace",
        "./benchmark_model --graph=model.tflite --num_threads=1 --warmup_runs=3 --warmup_min_secs=0 "
        "--num_runs=40 --min_secs=1 --report_peak_memory_footprint=true --result_file_path=/data/local/tmp/r.pb",
    )
    parsed = parse_tflite_benchmark(output)
    assert parsed.warmup is not None and parsed.steady is not None
    assert parsed.steady.count >= 40 and parsed.steady.median_us is not None
    assert parsed.peak_memory_monitored_mb is not None and parsed.peak_memory_monitored_mb > 10
    raw = pb.Trace()
    raw.ParseFromString(data)  # the perfetto package's own Trace protobuf
    assert any(p.HasField("power_rails") for p in raw.packet) and any(
        p.HasField("battery") for p in raw.packet
    )
    trace = perfetto.parse_trace(data)
    invokes = trace.inferences()
    assert len(invokes) == parsed.warmup.count + parsed.steady.count
    steady = invokes[parsed.warmup.count :]
    durations_us = sorted(s.duration_ns // 1000 for s in steady)
    assert durations_us[0] == pytest.approx(parsed.steady.min_us, abs=2)
    assert durations_us[-1] == pytest.approx(parsed.steady.max_us, abs=2)
    start, end = steady[0].start_ns, steady[-1].end_ns
    thermal = trace.thermal_trace(start)
    inside = [s for s in thermal.samples if 0 <= s.offset_s <= (end - start) / 1e9]
    assert inside and all(t is not None and 20 < t < 100 for s in inside for t in s.temps_c)
    assert thermal.zones[-1] == "skin" and thermal.policies == ("policy0", "policy4", "policy8")
    energy = trace.energy.report((start, end), None, len(steady))
    assert energy.source == "odpm" and energy.mj_per_inference is not None and energy.mj_per_inference > 0
    assert len([row for row in trace.energy.rows if start <= row[0] <= end]) >= 2


def test_onnxruntime_perf_test_output_and_result_file_parse(stock, tools):
    model = zoo.fetch(zoo.get("ppocr_cls"))
    assert adb(stock, "push", str(model), f"{TMP}/m/model.onnx").returncode == 0
    code, out, err = shell(
        stock, f"cd {TMP} && ./onnxruntime_perf_test -m times -r 25 -x 1 -I -s m/model.onnx runs.csv"
    )
    assert code == 0, err
    parsed = parse_ort_perf_test(out)
    assert parsed.requests == 25 and parsed.p50_ms is not None and parsed.peak_working_set_bytes
    rows = [
        line.split(",")
        for line in shell(stock, f"cat {TMP}/runs.csv")[1].splitlines()
        if line.count(",") == 4
    ]
    assert [int(row[4]) for row in rows] == list(range(25)) and {row[0] for row in rows} == {"m"}
    assert min(float(row[1]) for row in rows) * 1000 == pytest.approx(parsed.min_ms, rel=1e-3)


def test_perfetto_refuses_a_config_it_cannot_record(stock):
    bad = 'buffers { size_kb: 1024 } data_sources { config { name: "linux.process_stats" } }'
    code, _, err = shell(stock, "perfetto --txt -c - -o /data/misc/perfetto-traces/x", stdin=bad.encode())
    assert code == 1 and "'linux.process_stats' is not emulated" in err
    code, _, err = shell(
        stock, "perfetto --txt -c - -o /data/misc/perfetto-traces/x", stdin=b"buffers { size_kb: oops }"
    )
    assert code == 1 and "The trace config is invalid" in err and "-:1:" in err
    code, _, err = shell(stock, f"perfetto --txt -c - -o {TMP}/x", stdin=perfetto.trace_config(1).encode())
    assert code == 1 and "Permission denied" in err


def test_a_sustained_stand_in_run_throttles_and_the_trace_shows_the_cap(stock, tools):
    """The lab heats from the CPU time the phone really gets: on a host too loaded for the phone
    to reach its trip point, the verdict must say "not throttled" and the test says why it skips."""
    assert shell(stock, "setprop debug.tflite.trace 0")[0] == 0
    data, output = record(
        stock,
        perfetto.trace_config(None, poll_ms=250),
        "sustained.perfetto-trace",
        "./benchmark_model --graph=model.tflite --num_threads=1 --warmup_runs=1 --num_runs=1 --min_secs=20",
    )
    assert parse_tflite_benchmark(output).steady.count > 100
    trace = perfetto.parse_trace(data)
    assert trace.inferences() == []  # debug.tflite.trace is 0: no sections
    thermal = trace.thermal_trace(trace.first_ns)
    verdict = judge(thermal, [], [])
    assert verdict.max_temp_c is not None
    if verdict.max_temp_c < 55.0:  # the profile's trip point, not reached on a loaded host
        assert verdict.throttled is False and not any(r.startswith("frequency cap") for r in verdict.reasons)
        pytest.skip(
            f"the phone reached {verdict.max_temp_c:.1f} C: the host (load {os.getloadavg()[0]:.1f}) "
            "gave it too little CPU time to reach its trip point"
        )
    assert verdict.throttled
    assert any(reason.startswith("frequency cap: policy") for reason in verdict.reasons)
    assert verdict.max_temp_c is not None and verdict.max_temp_c >= 55.0  # the profile's trip point
    assert verdict.min_ceiling_ratio is not None and verdict.min_ceiling_ratio < 0.7
