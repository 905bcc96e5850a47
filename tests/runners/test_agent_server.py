"""The warm agent: runs forked from one server per runtime, on the host through LocalTransport.

The same FIFO client runs over ssh and adb in the virtual-lab tests (every lab benchmark goes
through it); here each property is checked where the processes can be inspected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from harness.errors import CommandTimeout
from harness.measurement import LatencyProtocol
from harness.runners import python_agent
from harness.runners.agent_server import AgentServer, ServerGone, clean_stale_servers
from harness.transport.local import LocalTransport

FAST = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "20", "--min-s", "0"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
    )
    path = tmp_path_factory.mktemp("models") / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.fixture
def server(tmp_path):
    transport = LocalTransport("local")
    started = AgentServer.start(
        transport, sys.executable, str(python_agent.AGENT_FILE), str(tmp_path / "device"), "onnxruntime"
    )
    yield started
    started.stop()


def argv(*args: str) -> list[str]:
    return [sys.executable, str(python_agent.AGENT_FILE), *args]


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(line) for line in found.stdout.split()]


def test_a_served_run_is_the_same_document_as_a_fresh_one(server, model):
    served = server.call(argv("run", "--model", str(model), "--runtime", "onnxruntime", *FAST), timeout=120)
    assert served.exit_code == 0, served.stderr
    document = json.loads(served.stdout)
    assert document["kind"] == "run" and document["runtime"]["name"] == "onnxruntime"
    assert len(document["latencies_ns"]) >= 20
    assert document["memory_kb"]["vmhwm_after_run"] >= document["memory_kb"]["vmhwm_after_load"] > 0
    assert served.argv[0] == sys.executable  # error messages name the device's python, as cold runs do
    # the server stays up and idle between calls: its children are gone, itself is not
    assert json.loads(server.call(argv("probe"), timeout=60).stdout)["kind"] == "probe"
    assert children_of(server.pid) == [] and Path(f"/proc/{server.pid}").exists()


def test_exit_codes_and_stderr_come_back(server):
    failed = server.call(
        argv("run", "--model", "/nonexistent/m.onnx", "--runtime", "onnxruntime"), timeout=60
    )
    document = json.loads(failed.stdout)
    assert (failed.exit_code, document["kind"], document["phase"]) == (2, "error", "load")
    bad = server.call(argv("run", "--runtime", "tvm"), timeout=60)
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"]["type"] == "ArgumentError"


def test_hostile_arguments_reach_the_child_intact(server, tmp_path):
    marker = tmp_path / "pwned"
    name = f'it\'s $(touch {marker}); `touch {marker}` "quoted"\nnewline é.onnx'
    result = server.call(argv("run", "--model", str(tmp_path / name), "--runtime", "onnxruntime"), timeout=60)
    document = json.loads(result.stdout)
    assert document["kind"] == "error" and name in document["error"]["message"]
    assert not marker.exists()


def test_a_timed_out_call_takes_its_child_with_it(server, model):
    slow = ["--rate-hz", "5", "--min-iters", "1000"]  # 200 s of requests at a fixed rate
    long_run = argv("run", "--model", str(model), "--runtime", "onnxruntime", *slow)
    with pytest.raises(CommandTimeout, match=r"edgelab_agent.py run --model .* \(warm agent\)") as error:
        server.call(long_run, timeout=3)
    assert "mkfifo" not in str(error.value)  # the user reads the agent's command, not the client's
    deadline = time.monotonic() + 10
    while children_of(server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children_of(server.pid) == []
    # the server goes on serving
    assert json.loads(server.call(argv("probe"), timeout=60).stdout)["kind"] == "probe"


def test_a_dead_server_is_reported_and_the_run_falls_back_to_a_fresh_interpreter(server, model):
    os.kill(server.pid, 9)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{server.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ServerGone, match="warm agent"):
        server.call(argv("probe"), timeout=30)
    gone: list[str] = []
    protocol = LatencyProtocol(warmup_iters=1, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=10.0)
    result = python_agent.run_agent(
        server.transport,
        python_agent.build_run_argv(
            sys.executable, str(python_agent.AGENT_FILE), str(model), "onnxruntime", protocol
        ),
        timeout_s=120,
        model="relu",
        model_format="onnx",
        precision="fp32",
        protocol=protocol,
        server=server,
        on_server_gone=gone.append,
    )
    assert result.iterations >= 5
    assert len(gone) == 1 and "is gone" in gone[0]
    assert any(note.startswith("fresh interpreter: ") for note in result.notes)


def test_a_server_that_cannot_start_says_why(tmp_path):
    with pytest.raises(Exception, match="warm agent did not start.*warm_agent: false"):
        AgentServer.start(LocalTransport("local"), "/bin/false", "agent.py", str(tmp_path), "onnxruntime")


def test_peak_rss_and_pss_of_a_forked_run_match_a_fresh_interpreter(tmp_path, model):
    """fork() does not carry over the page-table entries of file mappings; the child touches the
    server's resident file pages so its VmHWM counts what a fresh process that imported the same
    modules counts, and its PSS counts the pages it shares with the server as its own. The fresh
    run goes first, while no server maps the same libraries. Compared in one run, as ratios."""
    run = ["run", "--model", str(model), "--runtime", "onnxruntime", *FAST]
    fresh = json.loads(subprocess.run(argv(*run), capture_output=True, text=True, check=True).stdout)
    server = AgentServer.start(
        LocalTransport("local"),
        sys.executable,
        str(python_agent.AGENT_FILE),
        str(tmp_path / "device"),
        "onnxruntime",
    )
    try:
        served = json.loads(server.call(argv(*run), timeout=120).stdout)
    finally:
        server.stop()
    fresh_kb = fresh["memory_kb"]["vmhwm_after_run"]
    served_kb = served["memory_kb"]["vmhwm_after_run"]
    assert abs(served_kb - fresh_kb) / fresh_kb < 0.05, (served_kb, fresh_kb)
    # PSS: the kernel splits the pages the run shares with the server; the agent counts them whole
    assert fresh["pss_kb"] == fresh["pss_kernel_kb"] and served["pss_kernel_kb"] < served["pss_kb"]
    assert abs(served["pss_kb"] - fresh["pss_kb"]) / fresh["pss_kb"] < 0.05, (
        served["pss_kb"],
        fresh["pss_kb"],
    )


def test_a_session_restarts_a_lost_warm_agent_and_runs_cold_meanwhile(tmp_path):
    """An idle exit or a kill costs one cold run, not the rest of the session (the per-command
    path: the persistent channel is off)."""
    from harness.config import load_fleet
    from harness.models.variants import variants_for
    from harness.session import Lab, RunOptions

    devices = tmp_path / "devices.yaml"
    devices.write_text(
        f"devices:\n  host:\n    kind: local\n    workdir: {tmp_path / 'device'}\n"
        "    persistent_channel: false\n"
    )
    lab = Lab(
        load_fleet(devices, lab_file=tmp_path / "no-lab.yaml"),
        RunOptions(reports_dir=tmp_path / "r", devices=("host",)),
    )
    variant = variants_for("silero_vad")[0]
    protocol = LatencyProtocol(warmup_iters=1, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=10.0, idle_s=0.0)
    try:
        first = lab.benchmark("host", variant, protocol, energy="none").result
        first_pid = lab.device("host").runner.server_pid("onnxruntime")  # type: ignore[attr-defined]
        assert first_pid is not None
        os.kill(first_pid, 9)
        cold = lab.benchmark("host", variant, protocol, energy="none").result
        again = lab.benchmark("host", variant, protocol, energy="none").result
        second_pid = lab.device("host").runner.server_pid("onnxruntime")  # type: ignore[attr-defined]
    finally:
        lab.close()
    assert first.notes[-1].startswith("forked from the warm agent")
    assert cold.notes[-1].startswith("fresh interpreter: ") and str(first_pid) in cold.notes[-1]
    assert again.notes[-1].startswith("forked from the warm agent") and second_pid != first_pid


def test_a_workdir_with_a_newline_and_spaces_is_served(tmp_path, model):
    """The request line names no path: a directory with a newline once split it, and the client
    waited for a reply that never came (180 s, the run's timeout)."""
    transport = LocalTransport("local")
    workdir = tmp_path / "work\nwith newline\n 123 call-1 and spaces"
    started = AgentServer.start(
        transport, sys.executable, str(python_agent.AGENT_FILE), str(workdir), "onnxruntime"
    )
    try:
        served = started.call(
            argv("run", "--model", str(model), "--runtime", "onnxruntime", *FAST), timeout=60
        )
        assert served.exit_code == 0, served.stderr
        assert json.loads(served.stdout)["kind"] == "run"
    finally:
        started.stop()


def test_a_forged_request_line_is_ignored_and_the_server_keeps_serving(server, tmp_path):
    """Only "<pid> call-<pid>" is a request: a line naming another path gets no answer."""
    outside = tmp_path / "elsewhere"
    os.mkfifo(outside)
    with open(Path(server.directory) / "control", "w") as control:
        control.write(f"{os.getpid()} {outside}\n123 call-456\nnot a request\n")
    assert json.loads(server.call(argv("probe"), timeout=60).stdout)["kind"] == "probe"
    assert not Path(f"{outside}.err").exists()


def test_folders_of_warm_agents_that_were_killed_with_their_session_are_removed(tmp_path):
    """A session killed with its device (or SIGKILLed) cannot remove its warm agent's folder; the
    next session on the device does, and keeps a running server's and one starting now."""
    servers = tmp_path / "device" / "servers"
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        for name, pid in (("1-aaaa-onnxruntime", dead.pid), ("2-bbbb-onnxruntime", alive.pid)):
            (servers / name).mkdir(parents=True)
            (servers / name / "pid").write_text(str(pid))
            os.mkfifo(servers / name / "control")
        (servers / "3-cccc-litert").mkdir()  # starting: no pid file yet
        old = servers / "4-dddd-litert"
        old.mkdir()  # died before writing its pid, long ago
        os.utime(old, (time.time() - 300, time.time() - 300))
        removed = clean_stale_servers(LocalTransport("local"), str(tmp_path / "device"))
        assert sorted(removed) == ["1-aaaa-onnxruntime", "4-dddd-litert"]
        assert sorted(p.name for p in servers.iterdir()) == ["2-bbbb-onnxruntime", "3-cccc-litert"]
        assert clean_stale_servers(LocalTransport("local"), str(tmp_path / "nowhere")) == []
    finally:
        alive.kill()
        alive.wait()


def test_a_new_session_removes_the_folder_a_killed_session_left(tmp_path):
    from harness.config import load_fleet
    from harness.session import Lab, RunOptions

    stale = tmp_path / "device" / "servers" / "999-eeee-onnxruntime"
    stale.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (stale / "pid").write_text(str(dead.pid))
    devices = tmp_path / "devices.yaml"
    devices.write_text(f"devices:\n  host:\n    kind: local\n    workdir: {tmp_path / 'device'}\n")
    options = RunOptions(
        reports_dir=tmp_path / "r", devices=("host",), health_checks=False, speed_reference=False
    )
    lab = Lab(load_fleet(devices, lab_file=tmp_path / "no-lab.yaml"), options)
    told: list[str] = []
    lab.notify = told.append
    try:
        lab.device("host")
    finally:
        lab.close()
    assert not stale.exists()
    assert told == ["device 'host': removed 1 warm-agent folder(s) of killed sessions"]
