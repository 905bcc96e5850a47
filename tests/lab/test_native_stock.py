"""The native runner on the stock virtual phone (pixel8-stock: no Python, mksh, toybox, a perfetto
that writes real traces, the stand-in tools running real inference in the phone's cgroup),
through the real adb server: measured as fully as the agent measures, and its bad inputs."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from harness.config import Fleet
from harness.deploy import Artifact, Deployer
from harness.errors import AgentError
from harness.lab.manager import VirtualLab
from harness.measurement import LatencyProtocol
from harness.models import zoo
from harness.models.variants import variants_for
from harness.probes import perfetto
from harness.probes.thermal import sustained_curve
from harness.runners.base import RunRequest
from harness.runners.native import NativeRunner
from harness.session import Lab, RunOptions
from harness.stats import summarize_latency
from harness.transport import open_transport
from tests.lab.conftest import LAB_TAU_S, lab_root

PHONE = "virtual-pixel8-stock"
PROTOCOL = LatencyProtocol(warmup_iters=5, warmup_s=0.5, min_iters=50, min_s=2.0, max_s=30.0)


@pytest.fixture(scope="module")
def stock_fleet():
    if os.geteuid() != 0:
        pytest.skip("the virtual lab tests need root (namespaces, cgroups)")
    root = lab_root("native")
    lab = VirtualLab(root)
    try:
        lab.up(["pixel8-stock"], tau_s=LAB_TAU_S)
        yield lab.fleet()
    finally:
        lab.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)


def session(fleet: Fleet, tmp_path: Path) -> Lab:
    return Lab(fleet, RunOptions(reports_dir=tmp_path / "reports", devices=(PHONE,)))


def variant(model: str, model_format: str):
    return next(v for v in variants_for(model) if v.format == model_format and not v.unavailable)


def test_the_phone_has_no_python(stock_fleet):
    transport = open_transport(stock_fleet[PHONE])
    try:
        found = transport.run(["sh", "-c", "command -v python3 python; echo rc=$?"], timeout=60)
    finally:
        transport.close()
    assert found.stdout.strip() == "rc=1"


@pytest.mark.parametrize("model_format", ["tflite", "onnx"])
def test_a_stock_phone_is_measured_as_fully_as_the_agent_measures(stock_fleet, tmp_path, model_format):
    lab = session(stock_fleet, tmp_path)
    chosen = variant("face_detection", model_format)
    try:
        measured = lab.benchmark(PHONE, chosen, PROTOCOL, test_id="t.py::test[x]", kind="latency")
        record = lab.record(
            test=f"t.py::test[{PHONE}-x]", status="passed", device=PHONE, variant=chosen, measured=measured
        )
    finally:
        lab.close()
    result = measured.result
    samples = result.latency_samples_ns
    assert len(samples) >= PROTOCOL.min_iters and len(result.start_offsets_ns) == len(samples)
    assert result.latency_ms == summarize_latency(samples)  # the statistics come from the samples
    assert measured.runner == "native" and record.runner == "native"
    assert record.cpus is not None and record.cpus.allowed is not None  # the wrapper's core report
    assert record.modes is not None and record.modes.reason
    # thermal: the phone's zones, read inside the timed phase
    thermal = result.thermal
    assert (
        thermal is not None
        and "skin" in thermal.zones
        and thermal.policies == ("policy0", "policy4", "policy8")
    )
    duration_s = (result.start_offsets_ns[-1] + samples[-1]) / 1e9
    inside = [s for s in thermal.samples if 0 <= s.offset_s <= duration_s]
    assert inside and all(t is not None and 20 < t < 100 for s in inside for t in s.temps_c)
    verdict = result.throttle
    assert verdict is not None and verdict.throttled in (True, False) and verdict.max_temp_c is not None
    # energy from the power rails, idle window subtracted; PSS from dumpsys meminfo of the tool
    assert result.energy is not None and result.energy.source == "odpm" and result.energy.samples >= 2
    assert result.energy.mj_per_inference is not None and result.energy.idle_power_w is not None
    assert result.memory.pss_mb is not None and result.memory.pss_mb > 1
    assert result.memory.pss_source == "dumpsys meminfo" and result.memory.peak_rss_mb is not None
    # the raw trace, beside results.json, read by the perfetto package's own Trace
    assert record.trace_file is not None and record.trace_file.startswith("traces/")
    kept = tmp_path / "reports" / record.run_id / record.trace_file
    assert 0 < kept.stat().st_size <= 32 << 20
    trace = pb.Trace()
    trace.ParseFromString(kept.read_bytes())
    parsed = perfetto.parse_trace(kept.read_bytes())
    start = parsed.last_ns - round((duration_s + 2) * 1e9)  # generous: the run ends before the stop
    rails = [p.timestamp for p in trace.packet if p.HasField("power_rails")]
    temps = [
        e.timestamp
        for p in trace.packet
        if p.HasField("ftrace_events")
        for e in p.ftrace_events.event
        if e.HasField("thermal_temperature")
    ]
    assert any(t >= start for t in rails) and any(t >= start for t in temps)
    if model_format == "tflite":
        invokes = parsed.inferences()
        first, last = invokes[-len(samples)].start_ns, invokes[-1].end_ns
        assert any(first <= t <= last for t in rails) and any(first <= t <= last for t in temps)


def test_tflite_outputs_come_back_in_the_agents_npz_layout(stock_fleet, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    chosen = variant("face_detection", "tflite")
    inputs = np.random.default_rng(3).uniform(-1, 1, size=(3, 1, 128, 128, 3)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", input=inputs)
    settings = LatencyProtocol(
        warmup_iters=1, warmup_s=0, min_iters=3, min_s=0, max_s=300, max_iters=3, idle_s=0
    )
    lab = session(stock_fleet, tmp_path)
    outputs = tmp_path / "outputs"
    try:
        measured = lab.benchmark(
            PHONE,
            chosen,
            settings,
            kind="accuracy",
            inputs=tmp_path / "inputs.npz",
            outputs_to=outputs,
            energy="none",
        )
    finally:
        lab.close()
    assert len(measured.result.latency_samples_ns) == 3 and measured.result.outputs_file == str(outputs)
    interpreter = Interpreter(model_path=str(zoo.fetch(chosen.spec)))
    interpreter.allocate_tensors()
    with np.load(outputs) as got:
        assert sorted(got.files) == sorted(d["name"] for d in interpreter.get_output_details())
        for index in range(3):
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], inputs[index])
            interpreter.invoke()
            for detail in interpreter.get_output_details():
                assert np.array_equal(got[detail["name"]][index], interpreter.get_tensor(detail["index"]))


def test_a_sustained_run_detects_the_throttling_the_sensor_model_enacts(stock_fleet, tmp_path):
    """The lab heats from the CPU time the phone really gets: on a host so loaded that the phone
    cannot reach its trip point, the run must say "not throttled" and the test says why it skips."""
    settings = LatencyProtocol(
        warmup_iters=1,
        warmup_s=0,
        min_iters=1,
        min_s=20,
        max_s=20,
        max_iters=10_000_000,
        sample_period_s=0.25,
    )
    lab = session(stock_fleet, tmp_path)
    try:
        result = lab.benchmark(PHONE, variant("face_detection", "tflite"), settings, kind="sustained").result
    finally:
        lab.close()
    verdict = result.throttle
    assert verdict is not None and verdict.max_temp_c is not None and result.energy is not None
    trip_c = 55.0  # pixel8's trip point (harness/lab/profiles.py)
    if verdict.max_temp_c < trip_c:
        assert verdict.throttled is False and not any(r.startswith("frequency cap") for r in verdict.reasons)
        pytest.skip(
            f"the phone reached {verdict.max_temp_c:.1f} C at {result.energy.avg_power_w:.2f} W: the host "
            f"(load {os.getloadavg()[0]:.1f}) gave it too little CPU time to reach its trip point"
        )
    assert verdict.throttled is True, (verdict, result.notes)
    assert any(reason.startswith("frequency cap: policy") for reason in verdict.reasons)
    assert verdict.min_ceiling_ratio is not None and verdict.min_ceiling_ratio < 0.7
    curve = sustained_curve(result.latency_samples_ns, result.start_offsets_ns, result.thermal, verdict, 2.0)
    assert curve.time_to_first_throttle_s == verdict.first_throttle_s and len(curve.points) >= 5


class RefusedConfig(NativeRunner):
    """Asks the phone's perfetto for a data source it does not offer."""

    def trace_config(self, request: RunRequest, duration_s: float) -> str:
        return (
            super().trace_config(request, duration_s)
            + '\ndata_sources { config { name: "linux.process_stats" } }\n'
        )


def direct_runner(fleet: Fleet, kind: type[NativeRunner] = NativeRunner, **tools: str) -> NativeRunner:
    config = fleet[PHONE]
    if tools:
        config = config.model_copy(update={"native_tools": {**config.native_tools, **tools}})
    transport = open_transport(config)
    return kind(config, transport, Deployer(transport, config.workdir))


def request(tmp_path: Path, model: str = "face_detection", model_format: str = "tflite") -> RunRequest:
    chosen = variant(model, model_format)
    return RunRequest(
        Artifact.from_file(chosen.materialize()),
        None,
        model,
        model_format,
        chosen.runtime,
        chosen.precision,
        LatencyProtocol(warmup_iters=2, warmup_s=0, min_iters=20, min_s=2.0, max_s=20, idle_s=0.5),
        1,
        raw_to=tmp_path / "traces" / "run",
    )


def test_a_perfetto_that_refuses_the_config_is_said_so_and_the_config_kept(stock_fleet, tmp_path):
    runner = direct_runner(stock_fleet, RefusedConfig)
    try:
        before = runner.transport.run(["getprop", "debug.tflite.trace"], timeout=30).stdout.strip()
        with pytest.raises(
            AgentError, match=r"perfetto refused the trace config \(exit 1\): .*linux.process_stats"
        ) as info:
            runner.run(request(tmp_path))
        after = runner.transport.run(["getprop", "debug.tflite.trace"], timeout=30).stdout.strip()
    finally:
        runner.transport.close()
    assert after == (before or "0")  # the phone's setting is put back
    kept = Path(str(info.value).rsplit("kept in ", 1)[1])
    assert kept.parent == tmp_path / "traces" and 'name: "linux.process_stats"' in kept.read_text()


def test_a_tool_that_crashes_on_the_phone_is_named_with_its_signal(stock_fleet, tmp_path):
    crash = tmp_path / "benchmark_model"
    crash.write_text("#!/system/bin/sh\necho 'INFO: STARTING!'\nkill -SEGV $$\n")
    runner = direct_runner(stock_fleet, tflite=str(crash))
    try:
        with pytest.raises(
            AgentError, match=r"benchmark_model crashed \(SIGSEGV, exit 139\): INFO: STARTING!"
        ):
            runner.run(request(tmp_path))
    finally:
        runner.transport.close()


@pytest.mark.parametrize("model_format", ["tflite", "onnx"])
def test_without_perfetto_the_sysfs_sampler_measures_thermal_state_and_battery_power(
    stock_fleet, tmp_path, model_format
):
    """An Android 9-10 phone with tracing off, or an older one: the same shell, the sampler instead."""
    runner = direct_runner(stock_fleet)
    runner.device = dataclasses.replace(
        runner.device, tracing="sysfs", tracing_note="perfetto off (this test)"
    )
    try:
        result, _ = runner.run(request(tmp_path, "face_detection", model_format))
    finally:
        runner.transport.close()
    assert result.thermal is not None and "skin" in result.thermal.zones
    assert result.energy is not None and result.energy.source == "battery" and result.energy.samples >= 2
    assert result.trace_file is None and "tracing: perfetto off (this test)" in result.notes
    if model_format == "tflite":  # benchmark_model prints a summary only: no samples without a trace
        assert result.latency_samples_ns == () and result.latency_ms.samples >= 20
        assert any(n.startswith("latency samples: not measured") for n in result.notes)
    else:
        assert len(result.latency_samples_ns) >= 20 and result.throttle is not None
