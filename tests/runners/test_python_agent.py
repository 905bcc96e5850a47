"""The agent's output is a device boundary: odd output must become a clear AgentError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import AgentError
from harness.measurement import LatencyProtocol
from harness.probes.cpus import CoreType, CpuPlacement
from harness.runners.python_agent import build_run_argv, parse_agent_output, run_agent
from harness.transport.base import CommandResult

GOOD_RUN = {
    "schema_version": 1,
    "kind": "run",
    "runtime": {"name": "onnxruntime", "module": "onnxruntime", "version": "1.32.0"},
    "threads": 2,
    "load_ms": 12.5,
    "first_inference_ms": 3.0,
    "warmup": {"iterations": 10, "seconds": 0.1},
    "timed": {"iterations": 4, "seconds": 0.008, "stopped_by": "min_reached"},
    "latencies_ns": [2_000_000, 1_000_000, 3_000_000, 2_000_000],
    "start_offsets_ns": [0, 2_000_100, 3_000_200, 6_000_300],
    "memory_kb": {"vmhwm_before_load": 30_720, "vmhwm_after_load": 51_200, "vmhwm_after_run": 61_440},
    "outputs_file": None,
    "phases_ms": {"verify": 1.5, "load": 13.0, "timed": 8.2},
}


def result(stdout: str, exit_code: int = 0, stderr: str = "") -> CommandResult:
    return CommandResult(("python3", "agent.py", "run"), exit_code, stdout, stderr, 0.1)


class Canned:
    """A transport that answers every command with one canned result."""

    def __init__(self, canned: CommandResult) -> None:
        self.canned = canned
        self.device = "pixel8"

    def run(self, argv, **kwargs):
        return self.canned


def run_with(stdout: str, exit_code: int = 0, stderr: str = ""):
    return run_agent(
        Canned(result(stdout, exit_code, stderr)),  # type: ignore[arg-type]
        ["python3"],
        timeout_s=10,
        model="m",
        model_format="onnx",
        precision="fp32",
        protocol=LatencyProtocol(),
    )


def test_good_document_becomes_a_typed_result():
    measured = run_with(json.dumps(GOOD_RUN))
    assert measured.latency_ms.median == pytest.approx(2.0)
    assert measured.latency_ms.samples == 4
    assert (measured.memory.baseline_mb, measured.memory.load_peak_mb, measured.memory.peak_rss_mb) == (
        30.0,
        50.0,
        60.0,
    )
    assert measured.runtime.version == "1.32.0"
    assert measured.iterations == 4 and measured.stopped_by == "min_reached"
    assert measured.agent_phases_ms == {"verify": 1.5, "load": 13.0, "timed": 8.2}


def test_pss_of_a_forked_run_is_what_the_agent_counts_as_its_own():
    """The agent counts the pages a forked run shares with it as a fresh process would (pss_kb);
    `dumpsys meminfo` splits them as the kernel does, so it gets the same difference added."""
    forked = {**GOOD_RUN, "pss_kb": 70_000, "pss_kernel_kb": 51_000}
    measured = run_with(json.dumps(forked))
    assert (measured.memory.pss_mb, measured.memory.pss_source) == (round(70_000 / 1024, 3), "smaps_rollup")
    assert not any(note.startswith("pss") for note in measured.notes)
    meminfo = Path(__file__).parents[1] / "fixtures/real-outputs/dumpsys_meminfo"
    text = (meminfo / "honor_android14_memorylab_meminfo.txt").read_text()  # TOTAL PSS: 337790
    measured = run_with(json.dumps({**forked, "dumpsys_meminfo": text}))
    assert measured.memory.pss_mb == round((337_790 + 19_000) / 1024, 3)
    assert measured.memory.pss_source == "dumpsys meminfo"
    cold = run_with(
        json.dumps({**GOOD_RUN, "pss_kb": 51_000, "pss_kernel_kb": 51_000, "dumpsys_meminfo": text})
    )
    assert cold.memory.pss_mb == round(337_790 / 1024, 3)


def test_pss_the_agent_cannot_count_as_its_own_is_null_with_the_reason():
    """A forked run on a kernel whose smaps_rollup has no Pss_Anon: the kernel's figure would be
    low by the pages shared with the agent, so no PSS is given, and the note says why."""
    measured = run_with(json.dumps({**GOOD_RUN, "pss_kb": None, "pss_kernel_kb": 51_200}))
    assert (measured.memory.pss_mb, measured.memory.pss_source) == (None, None)
    (note,) = [note for note in measured.notes if note.startswith("pss")]
    assert "kernel's 50.0 MiB" in note and "Pss_Anon" in note


def test_non_json_output_quotes_what_the_device_printed():
    with pytest.raises(AgentError) as error:
        run_with("", exit_code=127, stderr="/system/bin/sh: python3: not found")
    message = str(error.value)
    assert "device 'pixel8'" in message and "exited 127 without a JSON result" in message
    assert "python3: not found" in message


def test_agent_error_document_names_phase_and_cause():
    document = {
        "schema_version": 1,
        "kind": "error",
        "phase": "load",
        "error": {"type": "Fail", "message": "bad model"},
    }
    with pytest.raises(AgentError, match="agent failed in phase 'load': Fail: bad model"):
        run_with(json.dumps(document), exit_code=2)


def test_other_schema_version_asks_to_clear_the_workdir():
    with pytest.raises(AgentError, match="schema_version=7 .*clear the device workdir"):
        run_with(json.dumps({**GOOD_RUN, "schema_version": 7}))


def test_invalid_fields_are_rejected():
    with pytest.raises(AgentError, match="failed validation: .*latencies_ns"):
        run_with(json.dumps({**GOOD_RUN, "latencies_ns": []}))
    with pytest.raises(AgentError, match="non-positive latencies"):
        run_with(json.dumps({**GOOD_RUN, "latencies_ns": [5, 0]}))


def test_noise_before_the_document_is_tolerated():
    noisy = "WARNING: linker: unused DT entry\n" + json.dumps(GOOD_RUN)
    assert parse_agent_output("pixel8", result(noisy), "run")["kind"] == "run"


def test_argv_carries_the_protocol_and_paths_verbatim():
    argv = build_run_argv(
        "python3",
        "/w/agent.py",
        "/w/cas/ab/my model.onnx",
        "onnxruntime",
        LatencyProtocol(warmup_iters=3, warmup_s=0.5, min_iters=20, min_s=1.5, max_s=9.0),
        threads=2,
        inputs_path="/w/in.npz",
    )
    assert argv[:6] == ["python3", "/w/agent.py", "run", "--model", "/w/cas/ab/my model.onnx", "--runtime"]
    assert argv[argv.index("--min-s") + 1] == "1.5"
    assert argv[argv.index("--threads") + 1] == "2"
    assert argv[-2:] == ["--inputs", "/w/in.npz"]
    assert "--cpus" not in argv
    defaults = build_run_argv(
        "python3", "/w/agent.py", "/w/m.onnx", "litert", LatencyProtocol(), cpus=(4, 5, 6, 7)
    )
    assert defaults[defaults.index("--threads") + 1] == "1"  # explicit, the same for every runtime
    assert defaults[defaults.index("--cpus") + 1] == "4,5,6,7"
    assert "--cooldown-below-c" not in defaults  # no threshold: the agent does not wait at all


def test_the_agent_polls_for_cool_four_times_as_often_as_the_host():
    """On the device a poll is a read of the zone files, not a shell command over the transport:
    the run starts within 0.5 s of the zone falling below the limit, not within 2 s."""
    protocol = LatencyProtocol(cooldown_max_s=120.0)
    argv = build_run_argv(
        "python3", "/w/agent.py", "/w/m.onnx", "onnxruntime", protocol, cooldown_below_c=40.0
    )
    waits = {
        option: argv[argv.index(option) + 1]
        for option in ("--cooldown-below-c", "--cooldown-max-s", "--cooldown-poll-s")
    }
    assert waits == {"--cooldown-below-c": "40.0", "--cooldown-max-s": "120.0", "--cooldown-poll-s": "0.5"}


def test_cores_and_the_modes_verdict_reach_the_record():
    document = dict(GOOD_RUN)
    document["cpus"] = {
        "requested": [4, 5, 6, 7],
        "pinned_by": "sched_setaffinity",
        "allowed": [4, 5, 6, 7],
        "allowed_before": [4, 5, 6, 7],
        "allowed_error": None,
        "kinds": {"4": [1024, 2850000], "5": [1024, 2850000], "6": [1024, 2850000], "7": [1024, 3050000]},
        "threads": {"4-7": 5},
    }
    measured = run_with(json.dumps(document))
    assert measured.placement == CpuPlacement(
        threads=2,
        requested="4-7",
        pinned_by="sched_setaffinity",
        allowed="4-7",
        allowed_count=4,
        core_types={"4-6": CoreType(1024, 2850000), "7": CoreType(1024, 3050000)},
    )
    assert measured.modes is not None and measured.modes.bimodal is None  # 4 samples
    assert measured.modes.reason == "4 samples; the modes check needs at least 30"
    assert not measured.warnings


def test_a_runtime_that_pins_its_threads_and_a_cpuset_that_moves_the_run_are_warned():
    document = dict(GOOD_RUN)
    document["latencies_ns"] = [2_000_000] * 20 + [3_900_000] * 20
    document["start_offsets_ns"] = [i * 4_000_000 for i in range(40)]
    document["cpus"] = {
        "allowed": [0, 1],
        "allowed_before": [0, 1, 2, 3],
        "kinds": {"0": [None, None], "1": [None, None]},
        "threads": {"0-1": 3, "1": 1},
    }
    measured = run_with(json.dumps(document))
    assert measured.modes is not None and measured.modes.bimodal is True
    assert [mode.centre_ms for mode in measured.modes.modes] == [2.0, 3.9]
    assert measured.placement is not None and measured.placement.core_types is None
    assert measured.placement.core_types_reason == (
        "sysfs has neither cpu_capacity nor cpufreq/cpuinfo_max_freq for cpus 0-1"
    )
    assert measured.warnings[-2:] == (
        "CPUS-CHANGED: the run was allowed on cpus 0-3 at its start and 0-1 at its end (a cpuset moved it)",
        "THREADS-PINNED: the runtime pinned threads of the run (1 on cpus 1; the process may use 0-1): "
        "its speed then depends on where the OS put the unpinned ones",
    )


def test_an_agent_without_a_cpus_section_says_so():
    placement = run_with(json.dumps(GOOD_RUN)).placement
    assert placement is not None and placement.allowed is None
    assert placement.allowed_reason == "the agent did not report its cpus"


def test_zero_threads_in_a_document_are_refused():
    with pytest.raises(AgentError, match=r"failed validation: \('threads',\)"):
        run_with(json.dumps({**GOOD_RUN, "threads": 0}))


# -- over the persistent channel (the host as the device) ---------------------------------------


def _host_lab(tmp_path, workdir_name: str = "device"):
    from harness.config import load_fleet
    from harness.session import Lab, RunOptions

    devices = tmp_path / "devices.yaml"
    workdir = tmp_path / workdir_name
    devices.write_text(f"devices:\n  host:\n    kind: local\n    workdir: {json.dumps(str(workdir))}\n")
    return Lab(
        load_fleet(devices, lab_file=tmp_path / "no-lab.yaml"),
        RunOptions(reports_dir=tmp_path / "r", devices=("host",), lease_timeout_s=None),
    )


SHORT = LatencyProtocol(warmup_iters=1, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=10.0, idle_s=0.0)


def test_runs_fork_from_the_persistent_agent_of_their_runtime(tmp_path):
    """A workdir with spaces and shell syntax reaches the device as it is (it crosses the channel as
    JSON; devices.yaml refuses control characters)."""
    import os
    import signal

    from harness.models.variants import variants_for

    lab = _host_lab(tmp_path, "dev ice $(touch PWNED)")
    variant = variants_for("silero_vad")[0]
    try:
        first = lab.benchmark("host", variant, SHORT, energy="none").result
        runner = lab.device("host").runner
        agent = runner.channel_pid("onnxruntime")  # type: ignore[attr-defined]
        commands = runner.channel_pid(None)  # type: ignore[attr-defined]
        second = lab.benchmark("host", variant, SHORT, energy="none").result
        assert runner.channel_pid("onnxruntime") == agent  # type: ignore[attr-defined]
        os.kill(agent, signal.SIGKILL)
        third = lab.benchmark("host", variant, SHORT, energy="none").result
        reopened = runner.channel_pid("onnxruntime")  # type: ignore[attr-defined]
    finally:
        lab.close()
    assert agent is not None and commands is not None and agent != commands
    for result in (first, second, third):
        assert result.iterations >= 5
        assert any(note.startswith("forked from the persistent agent") for note in result.notes)
    assert reopened not in (None, agent)
    assert any(
        note.startswith("persistent channel (onnxruntime) lost (device 'host', phase run): the device closed")
        and note.endswith("reconnected")
        for note in third.notes
    )
    assert not list(tmp_path.rglob("PWNED"))


def test_peak_rss_of_a_run_over_the_channel_matches_a_fresh_interpreter(tmp_path):
    """The memory measured per run is that of a fresh process (the child maps the agent's resident
    file pages before the run). Compared in one test, as ratios, on the same model and inputs."""
    import subprocess
    import sys

    from harness.models import zoo
    from harness.models.variants import variants_for
    from harness.runners.python_agent import AGENT_FILE, agent_channel
    from harness.transport.channel import run_over
    from harness.transport.local import LocalTransport

    model = variants_for("silero_vad")[0].materialize()
    inputs = tmp_path / "inputs.npz"
    zoo.make_inputs(variants_for("silero_vad")[0].spec, inputs, batch=1, seed=0)
    run = ["run", "--model", str(model), "--runtime", "onnxruntime", "--inputs", str(inputs)]
    run += ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "20", "--min-s", "0"]
    channel = agent_channel(LocalTransport("host"), sys.executable, str(AGENT_FILE), "onnxruntime")
    # the fresh runs first, while no agent maps the same libraries: a fresh process running
    # next to the agent shares their pages with it, and its own PSS is then the lower one
    fresh = [
        json.loads(
            subprocess.run(
                [sys.executable, str(AGENT_FILE), *run], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(2)
    ]
    try:
        served = []
        for _ in range(2):
            over = run_over(channel, "agent", run, timeout=120)
            assert over is not None and over.exit_code == 0, over
            served.append(json.loads(over.stdout))
    finally:
        channel.close()
    for key in ("vmhwm_after_load", "vmhwm_after_run"):
        fresh_kb = min(m["memory_kb"][key] for m in fresh)
        served_kb = min(m["memory_kb"][key] for m in served)
        assert abs(served_kb - fresh_kb) / fresh_kb < 0.05, (key, served_kb, fresh_kb)
    # PSS too: the kernel splits the pages the run shares with the agent (a quarter lower on
    # silero); the agent counts them as the fresh process does
    assert all(m["pss_kb"] == m["pss_kernel_kb"] for m in fresh)
    fresh_pss = min(m["pss_kb"] for m in fresh)
    served_pss = min(m["pss_kb"] for m in served)
    assert abs(served_pss - fresh_pss) / fresh_pss < 0.05, (served_pss, fresh_pss)
    assert all(m["pss_kernel_kb"] < m["pss_kb"] for m in served)


def test_the_agent_parses_as_python_3_9():
    """It runs on device Pythons down to 3.9: no syntax newer than that."""
    import ast

    from harness.runners.python_agent import AGENT_FILE

    ast.parse(AGENT_FILE.read_text(), feature_version=(3, 9))
