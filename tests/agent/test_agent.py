"""The on-device agent, run as a subprocess exactly as the harness runs it, on both runtimes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from harness.models import zoo
from harness.probes.cpus import format_cpu_list
from harness.runners.agent_server import AgentServer
from harness.runners.python_agent import AGENT_FILE, agent_channel
from harness.transport.local import LocalTransport

FAST = ["--warmup-iters", "2", "--warmup-s", "0", "--min-iters", "20", "--min-s", "0"]
WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10 - 0.5


def agent(*args: str, python: list[str] | None = None) -> tuple[int, dict]:
    completed = subprocess.run(
        [*(python or [sys.executable, str(AGENT_FILE)]), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return completed.returncode, json.loads(completed.stdout)


@pytest.fixture(scope="module")
def matmul_relu(tmp_path_factory) -> Path:
    """y = relu(x @ W) with x: [1, 4] float32; small enough to check numerically."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "matmul_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor("W", TensorProto.FLOAT, [4, 3], WEIGHTS.flatten().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path_factory.mktemp("models") / "matmul relu.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def face_detection() -> Path:
    return zoo.fetch(zoo.get("face_detection"))


def test_onnxruntime_run_reports_timings_memory_and_synthetic_inputs(matmul_relu):
    code, document = agent("run", "--model", str(matmul_relu), "--runtime", "onnxruntime", *FAST)
    assert code == 0 and document["kind"] == "run" and document["schema_version"] == 1
    assert document["runtime"]["name"] == "onnxruntime"
    assert document["runtime"]["version"] == __import__("onnxruntime").__version__
    assert document["timed"]["iterations"] == len(document["latencies_ns"]) >= 20
    assert document["timed"]["stopped_by"] == "min_reached"
    assert all(value > 0 for value in document["latencies_ns"])
    offsets = document["start_offsets_ns"]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    memory = document["memory_kb"]
    assert 0 < memory["vmhwm_before_load"] <= memory["vmhwm_after_load"] <= memory["vmhwm_after_run"]
    assert document["load_ms"] > 0 and document["first_inference_ms"] > 0
    assert document["inputs"] == [{"name": "x", "shape": [1, 4], "dtype": "float32", "source": "synthetic"}]
    phases = document["phases_ms"]
    assert list(phases) == [
        "verify", "cooldown", "load", "inputs", "first_inference", "environment", "probes_start",
        "warmup", "timed", "probes_stop", "memory",
    ]  # fmt: skip
    assert all(value >= 0 for value in phases.values())
    # each phase holds what the agent times inside it
    assert (
        phases["load"] >= document["load_ms"] and phases["first_inference"] >= document["first_inference_ms"]
    )
    assert phases["timed"] >= sum(document["latencies_ns"]) / 1e6


def test_outputs_match_numpy_for_a_three_sample_batch(matmul_relu, tmp_path):
    batch = np.random.default_rng(3).normal(size=(3, 1, 4)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", x=batch)
    outputs = tmp_path / "out" / "outputs.npz"
    code, document = agent(
        "run", "--model", str(matmul_relu), "--runtime", "onnxruntime", *FAST,
        "--inputs", str(tmp_path / "inputs.npz"), "--outputs", str(outputs),
    )  # fmt: skip
    assert code == 0 and document["samples_in_batch"] == 3 and document["outputs_file"] == str(outputs)
    assert document["inputs"][0]["source"] == "file"
    with np.load(outputs) as saved:
        np.testing.assert_allclose(saved["y"], np.maximum(batch @ WEIGHTS, 0), rtol=1e-6)


def test_uint8_inputs_with_an_affine_reach_the_model_as_floats(matmul_relu, tmp_path):
    stored = np.random.default_rng(5).integers(0, 256, size=(2, 1, 4)).astype(np.uint8)
    scale, offset = np.float32(2 / 255), np.float32(-1.0)
    np.savez(tmp_path / "inputs.npz", x=stored, **{"x.__scale__": scale, "x.__offset__": offset})
    outputs = tmp_path / "outputs.npz"
    code, document = agent(
        "run", "--model", str(matmul_relu), "--runtime", "onnxruntime", *FAST,
        "--inputs", str(tmp_path / "inputs.npz"), "--outputs", str(outputs),
    )  # fmt: skip
    assert code == 0, document
    assert document["inputs"][0] == {"name": "x", "shape": [1, 4], "dtype": "float32", "source": "file"}
    expected = stored.astype(np.float32) * scale + offset
    with np.load(outputs) as saved:
        np.testing.assert_allclose(saved["y"], np.maximum(expected @ WEIGHTS, 0), rtol=1e-5)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"z": np.zeros((1, 1, 4), np.float32)}, "inputs file has ['z'], which the model does not take"),
        (
            {"x": np.zeros((1, 1, 5), np.float32)},
            "input 'x': model expects shape [1, 4] float32, file has [1, 5] float32",
        ),
        ({"x": np.zeros((1, 1, 4), np.float64)}, "file has [1, 4] float64"),
    ],
)
def test_bad_inputs_name_the_input_and_the_expectation(matmul_relu, tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    code, document = agent(
        "run", "--model", str(matmul_relu), "--runtime", "onnxruntime", "--inputs", str(tmp_path / "bad.npz")
    )
    assert code == 2 and document["kind"] == "error" and document["phase"] == "inputs"
    assert message in document["error"]["message"]


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
def test_corrupt_model_fails_in_load(tmp_path, runtime):
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    code, document = agent("run", "--model", str(corrupt), "--runtime", runtime)
    assert code == 2 and document["phase"] == "load"
    assert str(corrupt) in document["error"]["message"]


def test_missing_model_and_bad_arguments_are_json_errors(tmp_path):
    code, document = agent("run", "--model", str(tmp_path / "absent.onnx"), "--runtime", "onnxruntime")
    assert (code, document["phase"], document["error"]["type"]) == (2, "load", "FileNotFoundError")
    code, document = agent("run", "--model", "m", "--runtime", "tensorrt")
    assert code == 2 and document["phase"] == "args" and "tensorrt" in document["error"]["message"]


def test_max_s_caps_the_timed_phase(matmul_relu):
    code, document = agent(
        "run", "--model", str(matmul_relu), "--runtime", "onnxruntime",
        "--warmup-iters", "0", "--warmup-s", "0", "--min-iters", "100000000", "--min-s", "0", "--max-s", "0.3",
    )  # fmt: skip
    assert code == 0 and document["timed"]["stopped_by"] == "max_s"
    assert 0 < document["timed"]["iterations"] < 100000000


def test_litert_runs_a_real_mediapipe_model(face_detection, tmp_path):
    outputs = tmp_path / "outputs.npz"
    code, document = agent(
        "run", "--model", str(face_detection), "--runtime", "litert", *FAST, "--outputs", str(outputs)
    )
    assert code == 0
    assert (document["runtime"]["name"], document["runtime"]["module"]) == (
        "litert",
        "ai_edge_litert.interpreter",
    )
    assert document["runtime"]["fallbacks_tried"] == []
    assert document["inputs"][0]["shape"] == [1, 128, 128, 3]
    with np.load(outputs) as saved:
        assert {name: list(saved[name].shape) for name in saved.files} == {
            "regressors": [1, 1, 896, 16],
            "classificators": [1, 1, 896, 1],
        }


def test_litert_falls_back_and_says_what_it_tried(face_detection, tmp_path):
    """With ai_edge_litert unimportable the agent tries tflite_runtime, then tensorflow.lite."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'ai_edge_litert':\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    wrapper = [sys.executable, "-c", f"import runpy, sys; sys.path.insert(0, {str(tmp_path)!r}); import sitecustomize; "
               f"sys.argv = ['agent'] + sys.argv[1:]; runpy.run_path({str(AGENT_FILE)!r}, run_name='__main__')"]  # fmt: skip
    code, document = agent(
        "run", "--model", str(face_detection), "--runtime", "litert", *FAST, python=wrapper
    )
    if code == 0:  # a fallback module is installed here: it must say so
        assert document["runtime"]["module"] != "ai_edge_litert.interpreter"
        assert "ai_edge_litert.interpreter" in document["runtime"]["fallbacks_tried"][0]
    else:
        message = document["error"]["message"]
        assert document["phase"] == "runtime"
        for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"):
            assert module in message


def test_probe_reports_runtimes_and_the_machine():
    code, document = agent("probe")
    assert code == 0 and document["kind"] == "probe"
    assert document["runtimes"]["onnxruntime"]["available"] is True
    assert document["runtimes"]["litert"]["module"] == "ai_edge_litert.interpreter"
    assert document["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert document["cpu"]["cores"] > 0 and document["os"]["system"] == "Linux"
    assert document["memory_kb"]["MemTotal"] > 0


def test_sha256_is_checked_before_the_model_is_loaded(matmul_relu):
    import hashlib

    good = hashlib.sha256(matmul_relu.read_bytes()).hexdigest()
    run = ["run", "--model", str(matmul_relu), "--runtime", "onnxruntime", *FAST]
    code, document = agent(*run, "--sha256", f"{good}:{matmul_relu}")
    assert (code, document["kind"]) == (0, "run")
    code, document = agent(*run, "--sha256", f"{'0' * 64}:{matmul_relu}")
    assert (code, document["kind"], document["phase"]) == (2, "error", "verify")
    assert document["error"]["type"] == "ChecksumMismatch"
    assert document["error"]["message"] == f"{matmul_relu}: sha256 {good}, expected {'0' * 64}"


def test_a_file_is_hashed_again_after_any_change_even_one_that_keeps_its_size_and_mtime(
    tmp_path, monkeypatch
):
    import builtins
    import hashlib

    from harness.agent import edgelab_agent

    model = tmp_path / "model.bin"
    model.write_bytes(b"A" * 4096)
    good = hashlib.sha256(model.read_bytes()).hexdigest()
    monkeypatch.setattr(edgelab_agent, "_VERIFIED", {})
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    edgelab_agent.verify_files([f"{good}:{model}"])
    edgelab_agent.verify_files([f"{good}:{model}"])
    assert opened == [str(model)]  # the second use found it unchanged
    before = model.stat()
    model.write_bytes(b"B" * 4096)  # same size, and the mtime set back: only the ctime moved
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(edgelab_agent.AgentFailure, match="expected " + good):
        edgelab_agent.verify_files([f"{good}:{model}"])
    assert opened == [str(model), str(model)]


def test_the_persistent_agent_refuses_a_model_changed_between_its_runs(matmul_relu, tmp_path):
    """Its children inherit what it hashed before forking them; a file changed since is hashed
    again and refused, as a fresh process would."""
    import hashlib

    from harness.transport.channel import run_over

    model = tmp_path / "model.onnx"
    model.write_bytes(matmul_relu.read_bytes())
    good = hashlib.sha256(model.read_bytes()).hexdigest()
    channel = agent_channel(LocalTransport("host"), sys.executable, str(AGENT_FILE), "onnxruntime")
    run = ["run", "--model", str(model), "--runtime", "onnxruntime", *FAST, "--sha256", f"{good}:{model}"]
    try:
        for _ in range(2):
            result = run_over(channel, "agent", run, timeout=120)
            assert result is not None and json.loads(result.stdout)["kind"] == "run", result.stderr
        data = bytearray(model.read_bytes())
        data[-1] ^= 0xFF  # one byte of the weights, the size kept
        model.write_bytes(bytes(data))
        result = run_over(channel, "agent", run, timeout=120)
        assert result is not None
        document = json.loads(result.stdout)
        assert (document["kind"], document["phase"]) == ("error", "verify")
        assert document["error"]["type"] == "ChecksumMismatch"
        # the child's exit code comes from its stderr's last line, which is taken off
        assert result.exit_code == 2 and "EDGELAB-RUN-EXIT" not in result.stderr
    finally:
        channel.close()


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:  # a thread may end between the listing and the read
            found |= {int(word) for word in (task / "children").read_text().split()}
        except FileNotFoundError:
            continue
    return found


def _spare_of(pid: int, ran: set[int]) -> int:
    """The one child the idle agent keeps (polled: it is forked after the answer is sent), not
    one of the runs ``ran`` (a run's process may still be exiting after its answer)."""
    for _ in range(200):
        children = _children(pid) - ran
        if len(children) == 1:
            return children.pop()
        time.sleep(0.05)
    raise AssertionError(f"agent {pid} has children {_children(pid)}, not one spare besides {ran}")


def test_a_runtimes_persistent_agent_runs_each_request_in_a_child_forked_ahead(matmul_relu):
    """The spare runs the next request (the run reports its pid); a spare that died is replaced by
    a fork on demand; closing the channel leaves no child behind."""
    import signal

    from harness.transport.channel import run_over

    channel = agent_channel(LocalTransport("host"), sys.executable, str(AGENT_FILE), "onnxruntime")
    run = ["run", "--model", str(matmul_relu), "--runtime", "onnxruntime", *FAST]
    try:
        first = run_over(channel, "agent", run, timeout=120)  # opens the channel
        assert first is not None
        agent_pid = channel.pid
        assert agent_pid is not None
        ran = {json.loads(first.stdout)["pid"]}
        for _ in range(2):
            spare = _spare_of(agent_pid, ran)
            result = run_over(channel, "agent", run, timeout=120)
            assert result is not None
            document = json.loads(result.stdout)
            assert document["kind"] == "run" and document["pid"] == spare
            assert result.exit_code == 0 and "EDGELAB-RUN-EXIT" not in result.stderr
            assert document["memory_kb"]["vmhwm_before_load"] > 0
            ran.add(spare)
        spare = _spare_of(agent_pid, ran)
        os.kill(spare, signal.SIGKILL)
        while (Path(f"/proc/{spare}/stat").read_text().rsplit(") ", 1)[1].split() or ["Z"])[0] != "Z":
            time.sleep(0.01)  # dead (a zombie of the agent's) before the next request
        result = run_over(channel, "agent", run, timeout=120)
        assert result is not None
        document = json.loads(result.stdout)
        assert document["kind"] == "run" and document["pid"] != spare
        spare = _spare_of(agent_pid, ran | {spare, document["pid"]})
    finally:
        channel.close()
    for _ in range(100):
        if not Path(f"/proc/{spare}").exists():
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{spare}").exists()


def _settled_fds(pid: int) -> dict[int, str]:
    """A spare's descriptors once it has set itself up and waits for a run (fd 0 is /dev/null
    and nothing changes over a few polls)."""
    seen: list[dict[int, str]] = []
    for _ in range(500):
        links = {}
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(FileNotFoundError):  # closed between the listing and the read
                links[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        seen = [*seen[-2:], links]
        if links.get(0) == "/dev/null" and len(seen) == 3 and seen[0] == seen[1] == seen[2]:
            return links
        time.sleep(0.02)
    raise AssertionError(f"spare {pid} did not settle: {seen}")


def test_a_spare_holds_its_output_pipes_on_stdout_and_stderr_only(matmul_relu):
    """Closing 1 and 2 after the answer is the agent's end of file: a copy of either pipe left
    at another descriptor would hold the answer until the kernel has freed the run's memory."""
    from harness.transport.channel import run_over

    channel = agent_channel(LocalTransport("host"), sys.executable, str(AGENT_FILE), "onnxruntime")
    try:
        run = ["run", "--model", str(matmul_relu), "--runtime", "onnxruntime", *FAST]
        first = run_over(channel, "agent", run, timeout=120)  # opens the channel
        assert first is not None and channel.pid is not None
        spare = _spare_of(channel.pid, {json.loads(first.stdout)["pid"]})
        links = _settled_fds(spare)
        assert links[1].startswith("pipe:") and links[2].startswith("pipe:") and links[1] != links[2]
        assert sorted(fd for fd, link in links.items() if link in (links[1], links[2])) == [1, 2]
    finally:
        channel.close()


def test_a_run_hands_its_model_to_the_caller_to_release_after_the_answer(matmul_relu, capsys):
    """The runtime's teardown comes after the answer is written (a forked run never does it)."""
    from harness.agent import edgelab_agent

    kept: list[object] = []
    code = edgelab_agent.main(["run", "--model", str(matmul_relu), "--runtime", "onnxruntime", *FAST], kept)
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["kind"] == "run"
    assert len(kept) == 1 and isinstance(kept[0], edgelab_agent.OrtModel)
    assert edgelab_agent.main(["run", "--model", str(matmul_relu), "--runtime", "onnxruntime", *FAST]) == 0


def sinusoid_windows(count: int) -> np.ndarray:
    """Feature windows that drift over time: the streaming detector's state changes its answers."""
    windows = [
        10 + 8 * np.sin(np.arange(40)[None, None, :] / 3 + step / 2) * np.ones((1, 3, 1))
        for step in range(count)
    ]
    return np.clip(np.rint(np.concatenate(windows)[:, None] / 0.10196078) - 128, -128, 127).astype(np.int8)


def test_a_streaming_model_with_resource_variables_answers_from_its_initial_state(tmp_path):
    """okay_nabu keeps six resource variables between invokes: its outputs pass starts again from the
    initial state (as a fresh copy on the host does), not from where the timed loop left it."""
    from harness.accuracy import host_runner
    from tests.fixtures.project_models import WAKEWORD_INPUT, wakeword_file

    windows = sinusoid_windows(60)
    inputs, outputs = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
    np.savez(inputs, **{WAKEWORD_INPUT: windows})
    code, document = agent(
        "run", "--model", str(wakeword_file()), "--runtime", "litert", "--inputs", str(inputs),
        "--outputs", str(outputs), "--warmup-iters", "5", "--warmup-s", "0", "--min-iters", "60", "--min-s", "0",
    )  # fmt: skip
    assert code == 0 and document["inputs"][0]["dtype"] == "int8"
    run = host_runner(wakeword_file(), "tflite")
    fresh = np.stack([next(iter(run({WAKEWORD_INPUT: window}).values())) for window in windows])
    with np.load(outputs) as saved:
        (name,) = saved.files
        device = saved[name]
    assert device.dtype == np.uint8 and device.shape == (60, 1, 1)
    assert fresh.max() > 0  # the pattern does wake it up at some point
    np.testing.assert_array_equal(device, fresh)


def test_a_tflite_input_with_a_free_batch_dim_is_resized_to_the_samples(tmp_path):
    from tests.fixtures.project_models import with_free_batch

    model = with_free_batch(zoo.fetch(zoo.get("hand_landmark")), tmp_path / "hand_dynamic.tflite")
    inputs, outputs = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
    np.savez(inputs, input_1=np.random.default_rng(0).random((3, 2, 224, 224, 3), dtype=np.float32))
    code, document = agent(
        "run", "--model", str(model), "--runtime", "litert", "--inputs", str(inputs), "--outputs", str(outputs),
        *FAST,
    )  # fmt: skip
    assert code == 0, document
    assert document["inputs"][0]["shape"] == [2, 224, 224, 3]
    with np.load(outputs) as saved:
        assert {list(saved[name].shape)[:2] == [3, 2] for name in saved.files} == {True}


# -- threads and cores ------------------------------------------------------------------------------


def sysfs_kind(cpu: int) -> list[int | None]:
    folder = Path(f"/sys/devices/system/cpu/cpu{cpu}")
    return [
        int(path.read_text()) if path.exists() else None
        for path in (folder / "cpu_capacity", folder / "cpufreq" / "cpuinfo_max_freq")
    ]


def test_the_thread_count_and_the_cores_of_the_run_are_recorded(matmul_relu):
    code, document = agent(
        "run", "--model", str(matmul_relu), "--runtime", "onnxruntime", "--threads", "2", *FAST
    )
    assert code == 0 and document["threads"] == 2
    cpus = document["cpus"]
    allowed = sorted(os.sched_getaffinity(0))
    assert (cpus["requested"], cpus["pinned_by"], cpus["allowed"], cpus["allowed_before"]) == (
        None,
        None,
        allowed,
        allowed,
    )
    assert cpus["kinds"] == {str(cpu): sysfs_kind(cpu) for cpu in allowed}
    # an explicit count: ONNX Runtime pins none of its threads (with 0 it pins its pool, one per core)
    assert (
        list(cpus["threads"]) == [format_cpu_list(allowed)] and cpus["threads"][format_cpu_list(allowed)] >= 2
    )


def test_cpus_pin_the_run_and_every_thread_of_the_runtime(matmul_relu):
    last = max(os.sched_getaffinity(0))
    code, document = agent(
        "run",
        "--model",
        str(matmul_relu),
        "--runtime",
        "onnxruntime",
        "--threads",
        "1",
        "--cpus",
        str(last),
        *FAST,
    )
    assert code == 0
    cpus = document["cpus"]
    assert (cpus["requested"], cpus["pinned_by"], cpus["allowed"]) == ([last], "sched_setaffinity", [last])
    assert set(cpus["threads"]) == {str(last)}


def test_a_forked_run_is_pinned_and_leaves_the_warm_server_unpinned(matmul_relu, tmp_path):
    server = AgentServer.start(
        LocalTransport("local"), sys.executable, str(AGENT_FILE), str(tmp_path), "onnxruntime"
    )
    try:
        run = [
            sys.executable,
            str(AGENT_FILE),
            "run",
            "--model",
            str(matmul_relu),
            "--runtime",
            "onnxruntime",
            *FAST,
        ]
        pinned = json.loads(server.call([*run, "--cpus", "0"], timeout=120).stdout)
        assert pinned["cpus"]["allowed"] == [0] and pinned["cpus"]["pinned_by"] == "sched_setaffinity"
        free = json.loads(server.call(run, timeout=120).stdout)
        assert free["cpus"]["allowed"] == sorted(os.sched_getaffinity(0))
        assert os.sched_getaffinity(server.pid) == os.sched_getaffinity(0)
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("arguments", "phase", "message"),
    [
        (["--threads", "0"], "args", "--threads must be >= 1"),
        (["--cpus", "1,x"], "args", "--cpus takes comma-separated cpu numbers, got '1,x'"),
        (["--cpus", "1,1"], "args", "--cpus needs distinct cpu numbers >= 0"),
        (["--cpus", "4095"], "cpus", "cannot pin to cpus [4095]"),
    ],
)
def test_bad_threads_and_cpus_are_json_errors_with_the_fix(matmul_relu, arguments, phase, message):
    code, document = agent("run", "--model", str(matmul_relu), "--runtime", "onnxruntime", *arguments, *FAST)
    assert (code, document["phase"]) == (2, phase)
    assert document["error"]["message"].startswith(message)
    if phase == "cpus":
        assert "fix cpus in devices.yaml" in document["error"]["message"]


def _fake_getprop(folder: Path, props: dict[str, str]) -> Path:
    """A getprop on PATH that logs each key asked and prints the value given here."""
    log = folder / "asked"
    script = folder / "getprop"
    lines = "".join(f'  {key}) echo "{value}" ;;\n' for key, value in props.items())
    script.write_text(f'#!/bin/sh\necho "$1" >> {log}\ncase "$1" in\n{lines}  *) ;;\nesac\n')
    script.chmod(0o755)
    return log


def test_read_only_properties_are_asked_once_and_only_on_android(tmp_path, monkeypatch):
    from harness.agent import edgelab_agent

    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    sysfs = str(tmp_path / "sys")
    log = _fake_getprop(tmp_path, {})  # a Linux board: no ro.build.version.sdk
    monkeypatch.setattr(edgelab_agent, "_READ_ONLY", {})
    assert [edgelab_agent.virtual_device(sysfs) for _ in range(3)] == [False] * 3
    assert log.read_text().split() == ["ro.build.version.sdk"]  # ro.edgelab.virtual: not asked

    log.unlink()
    log = _fake_getprop(tmp_path, {"ro.build.version.sdk": "34", "ro.edgelab.virtual": "1"})
    monkeypatch.setattr(edgelab_agent, "_READ_ONLY", {})
    assert [edgelab_agent.virtual_device(sysfs) for _ in range(3)] == [True] * 3
    assert log.read_text().split() == ["ro.build.version.sdk", "ro.edgelab.virtual"]


@pytest.fixture(params=["posix_spawn", "popen"])
def tool_starter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a run starts a device tool: posix_spawn, and Popen where Python has no
    os.posix_spawnp (bionic before Android 9)."""
    if request.param == "popen":
        monkeypatch.delattr(os, "posix_spawnp")
    return str(request.param)


def test_commands_asked_together_answer_in_order_and_a_failure_is_none(tmp_path, tool_starter):
    from harness.agent import edgelab_agent

    texts = edgelab_agent._run_texts(
        [
            ["sh", "-c", "sleep 0.2; echo first"],
            ["sh", "-c", "echo second"],
            ["sh", "-c", "exit 3"],
            [str(tmp_path / "missing")],
        ]
    )
    assert texts == ["first\n", "second\n", None, None]


def test_a_command_that_outlives_its_timeout_is_killed_and_none(tmp_path, tool_starter):
    """Past the timeout a tool is killed and reaped, whether it still writes or has closed its
    stdout and hangs; the others asked with it still answer."""
    from harness.agent import edgelab_agent

    pids = tmp_path / "pids"
    texts = edgelab_agent._run_texts(
        [
            ["sh", "-c", f"echo $$ >> {pids}; echo partial; exec sleep 30"],
            ["sh", "-c", f"echo $$ >> {pids}; exec >&-; exec sleep 30"],
            ["sh", "-c", "echo quick"],
        ],
        timeout=0.5,
    )
    assert texts == [None, None, "quick\n"]
    for pid in pids.read_text().split():
        assert not Path(f"/proc/{pid}").exists()  # killed and reaped: not even a zombie


def test_a_commands_odd_bytes_are_replaced_not_a_failure(tool_starter):
    from harness.agent import edgelab_agent

    assert (
        edgelab_agent._run_text(["printf", "Thermal Status: 0\\n\\377\\376"])
        == "Thermal Status: 0\n\ufffd\ufffd"
    )


def _fake_android(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """getprop (SDK 34) and a dumpsys that logs what it is asked to folder/dumpsys-asked, first
    on PATH; the getprop log."""
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    dumpsys = folder / "dumpsys"
    dumpsys.write_text(
        '#!/bin/sh\necho "$*" >> ' + str(folder / "dumpsys-asked") + "\n"
        'case "$1" in\n  thermalservice) echo "Thermal Status: 0" ;;\n'
        '  meminfo) echo "** MEMINFO in pid $2 [python] **"; echo "TOTAL PSS: 1234" ;;\nesac\n'
    )
    dumpsys.chmod(0o755)
    return _fake_getprop(folder, {"ro.build.version.sdk": "34"})


def test_a_process_that_forks_runs_asks_their_properties_before(tmp_path, monkeypatch):
    """A virtual phone answers virtual_device() from its sensor state, without the SDK property:
    warming asks that too, or every forked run would start getprop (8-18 ms there)."""
    from harness.agent import edgelab_agent

    sysfs = tmp_path / "sys"
    (sysfs / "edgelab").mkdir(parents=True)
    (sysfs / "edgelab" / "state").write_text("{}")
    asked = _fake_android(tmp_path, monkeypatch)
    monkeypatch.setattr(edgelab_agent, "_READ_ONLY", {})
    edgelab_agent._warm_run_steps(str(sysfs))
    assert asked.read_text().split() == ["ro.build.version.sdk"]
    for _ in range(2):
        found = edgelab_agent.environment(str(sysfs))
        assert found["android"] is True and found["virtual"] is True
    assert asked.read_text().split() == ["ro.build.version.sdk"]


WARM_THEN_RUN_STEPS = """
import fnmatch, json, sys
from harness.agent import edgelab_agent as agent
sysfs = sys.argv[1]
agent._warm_run_steps(sysfs)
modules, misses = set(sys.modules), fnmatch._compile_pattern.cache_info().misses
found = agent.environment(sysfs)
agent.hottest_zone_c(sysfs)
agent.energy_sources(sysfs)
print(json.dumps([sorted(set(sys.modules) - modules), fnmatch._compile_pattern.cache_info().misses - misses,
                  found["governors"], found["battery"]]))
"""


def test_a_process_that_forks_runs_compiles_the_probes_lookups_before(tmp_path):
    """Every forked run would otherwise import glob and shutil and compile the same name patterns
    (7 ms of a run's wall time on the 0.5-core virtual board): warming does it once, so a run's
    environment, cool-down and energy lookups import and compile nothing, and still find all."""
    sysfs = tmp_path / "sys"
    for policy in ("policy4", "policy0"):
        (sysfs / "devices/system/cpu/cpufreq" / policy).mkdir(parents=True)
        (sysfs / "devices/system/cpu/cpufreq" / policy / "scaling_governor").write_text("schedutil\n")
    (sysfs / "class/thermal/thermal_zone0").mkdir(parents=True)
    (sysfs / "class/thermal/thermal_zone0/temp").write_text("41000\n")
    battery = sysfs / "class/power_supply/battery"
    battery.mkdir(parents=True)
    for name, value in (
        ("capacity", "80"),
        ("status", "Discharging"),
        ("current_now", "1"),
        ("voltage_now", "2"),
    ):
        (battery / name).write_text(value + "\n")
    done = subprocess.run(
        [sys.executable, "-c", WARM_THEN_RUN_STEPS, str(sysfs)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    imported, compiled, governors, battery_found = json.loads(done.stdout)
    assert (imported, compiled) == ([], 0)
    assert governors == {"policy0": "schedutil", "policy4": "schedutil"}
    assert battery_found == {"capacity_pct": 80, "status": "Discharging"}


REHEARSED_RUN_STEPS = """
import json, os, resource, sys, threading
from harness.agent import edgelab_agent as agent
model_path, inputs_path, sysfs = sys.argv[1:4]
agent._warm_run_steps(sysfs)
agent._onnxruntime_info()
agent._PARSER.append(agent.build_parser())
model = agent.load_model("onnxruntime", model_path, 1, None)
argv = ["run", "--model", model_path, "--runtime", "onnxruntime", "--environment", "--inputs", inputs_path,
        "--sample-period-s", "0.05", "--cooldown-below-c", "90", "--cpus", "0"]

def run_steps():  # what a run does around its model, in order
    arguments = agent._PARSER[0].parse_args(argv)
    agent.pin_cpus(agent.parse_cpus_argument(arguments.cpus))
    agent.cool_down(arguments.cooldown_below_c, 1.0, 0.5, sysfs)
    agent.load_inputs(model, arguments.inputs)
    found = agent.environment(sysfs)
    agent.ThermalSampler(arguments.sample_period_s, sysfs).start().stop()
    agent.environment_after(found)
    agent.read_status_kb()
    json.dumps(found)

rows = []
for rehearse, ask_first in ((False, False), (True, False), (True, True)):
    report, report_to = os.pipe()
    request, request_to = os.pipe()
    if ask_first:
        os.write(request_to, b"{}\\n")
    pid = os.fork()
    if pid == 0:
        threads = threading.active_count()
        done = agent.rehearse_run("onnxruntime", request, sysfs) if rehearse else None
        left = threading.active_count() - threads
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        run_steps()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        os.write(report_to, json.dumps([done, left, faults, sorted(agent._VERIFIED)]).encode())
        os._exit(0)
    os.close(report_to)
    rows.append(json.loads(os.read(report, 1 << 16)))
    os.waitpid(pid, 0)
print(json.dumps(rows))
"""


def test_a_spare_rehearses_a_runs_steps_so_the_run_copies_no_pages_for_them(matmul_relu, tmp_path):
    """A forked run's first call of each step writes to pages it shares with the agent, and the
    kernel copies each (0.8k page faults here, 2.6 ms of a run's CPU on the 0.5-core virtual
    board). The spare rehearses those steps on stand-ins while it waits: the run then faults on
    a small fraction of them. The rehearsal starts no command (vcgencmd, getprop), leaves no
    thread and no file behind, and stops at once when the request is already there."""
    sysfs = tmp_path / "sys"
    (sysfs / "class/thermal/thermal_zone0").mkdir(parents=True)
    (sysfs / "class/thermal/thermal_zone0/temp").write_text("41000\n")
    (sysfs / "devices/system/cpu/cpufreq/policy0").mkdir(parents=True)
    (sysfs / "devices/system/cpu/cpufreq/policy0/scaling_governor").write_text("schedutil\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    started = tmp_path / "started"
    tool = bin_dir / "vcgencmd"
    tool.write_text(f"#!/bin/sh\necho \"$0 $*\" >> '{started}'\necho throttled=0x0\n")
    tool.chmod(0o755)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, x=np.ones((3, 1, 4), dtype=np.float32))
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", REHEARSED_RUN_STEPS, str(matmul_relu), str(inputs), str(sysfs)],
        capture_output=True, text=True, check=True, cwd=workdir,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )  # fmt: skip
    (_, _, unrehearsed, _), (steps, left, rehearsed, verified), (stopped, _, _, _) = json.loads(done.stdout)
    assert steps == ["arguments", "inputs", "environment", "sampler", "answer"]
    assert stopped == []
    assert left == 0 and verified == [] and list(workdir.iterdir()) == []
    # the three runs' own: the environment, the sampler's first status, the environment after
    assert started.read_text().splitlines() == [f"{tool} get_throttled"] * 9
    assert unrehearsed > 300
    assert rehearsed < unrehearsed / 4


def test_dumpsys_meminfo_is_asked_on_android_only_where_a_delegate_ran(matmul_relu, tmp_path, monkeypatch):
    """On the CPU the kernel's PSS is the whole of it; a delegate's GPU memory shows only in
    `dumpsys meminfo` (memtrack), so that is asked then, with the run's own pid."""
    from harness.agent import edgelab_agent

    _fake_android(tmp_path, monkeypatch)
    monkeypatch.setattr(edgelab_agent, "_READ_ONLY", {})
    documents = {}
    for provider in (None, "CPUExecutionProvider"):
        argv = ["run", "--model", str(matmul_relu), "--runtime", "onnxruntime", "--environment", *FAST]
        argv += ["--delegate", provider] if provider else []
        out = tmp_path / f"{provider}.json"
        assert edgelab_agent.main([*argv, "--result", str(out)]) == 0
        documents[provider] = json.loads(out.read_text())
    plain, delegated = documents[None], documents["CPUExecutionProvider"]
    assert plain["environment"]["android"] is True and plain["pss_kb"] > 0
    assert plain["environment"]["dumpsys_thermalservice"] == "Thermal Status: 0\n"
    assert plain["dumpsys_meminfo"] is None
    assert delegated["dumpsys_meminfo"] == f"** MEMINFO in pid {os.getpid()} [python] **\nTOTAL PSS: 1234\n"
    asked = (tmp_path / "dumpsys-asked").read_text().splitlines()
    assert sorted(asked) == sorted(["power"] * 2 + ["thermalservice"] * 4 + [f"meminfo {os.getpid()}"])


def test_the_samplers_first_status_is_the_environments_reading(matmul_relu, tmp_path, monkeypatch):
    """The environment has just read the thermal status; the sampler keeps that reading as its
    first status sample instead of asking dumpsys again (before, after: two asks per run)."""
    from harness.agent import edgelab_agent

    _fake_android(tmp_path, monkeypatch)
    monkeypatch.setattr(edgelab_agent, "_READ_ONLY", {})
    out = tmp_path / "run.json"
    argv = ["run", "--model", str(matmul_relu), "--runtime", "onnxruntime", "--environment", *FAST]
    assert edgelab_agent.main([*argv, "--sample-period-s", "5", "--result", str(out)]) == 0
    document = json.loads(out.read_text())
    status = document["thermal"]["status"]
    assert document["thermal"]["status_kind"] == "android" and [value for _, value in status] == [0]
    assert document["clock"]["perf_counter_start_ns"] > status[0][0]
    asked = (tmp_path / "dumpsys-asked").read_text().split()
    assert asked.count("thermalservice") == 2 and asked.count("power") == 1


def test_pss_of_a_process_not_forked_from_the_agent_is_the_kernels():
    from harness.agent import edgelab_agent

    own, kernel = edgelab_agent.pss_kb()
    assert own == kernel and kernel is not None and kernel > 0


def test_pss_of_a_forked_run_adds_what_the_kernel_splits_with_the_agent(monkeypatch):
    """A forked run: shared anonymous pages whole (Anonymous for Pss_Anon), plus the shortfall of
    the agent's file pages measured when it started; without Pss_Anon it cannot be told."""
    from harness.agent import edgelab_agent

    rollup = {"Rss": 90_000, "Pss": 51_000, "Pss_Anon": 31_000, "Pss_File": 20_000, "Anonymous": 42_000}
    monkeypatch.setattr(edgelab_agent, "_smaps_rollup_kb", lambda: dict(rollup))
    monkeypatch.setattr(edgelab_agent, "_SHARED_FILE_KB", [8_500])
    assert edgelab_agent.pss_kb() == (51_000 - 31_000 + 42_000 + 8_500, 51_000)
    monkeypatch.setattr(edgelab_agent, "_SHARED_FILE_KB", [None])  # the agent could not measure it
    assert edgelab_agent.pss_kb() == (None, 51_000)
    monkeypatch.setattr(edgelab_agent, "_SHARED_FILE_KB", [8_500])
    del rollup["Pss_Anon"]  # a kernel whose smaps_rollup does not split PSS by kind
    assert edgelab_agent.pss_kb() == (None, 51_000)


def test_the_agent_measures_what_a_childs_pss_of_its_file_pages_falls_short_by(tmp_path):
    """In a process of its own (it forks): after mapping its resident file pages, a child shares
    them, so the agent's Pss_File drops by what the child's falls short of a fresh process's."""
    script = tmp_path / "measure.py"
    script.write_text(
        "import json, sys\n"
        f"sys.path.insert(0, {str(AGENT_FILE.parent)!r})\n"
        "import numpy, edgelab_agent as agent\n"
        "resident = agent.resident_file_pages()\n"
        "runs = agent.forks_runs_from(resident)\n"
        "print(json.dumps({'pages': len(resident), 'runs': len(runs), 'shared_kb': agent._SHARED_FILE_KB}))\n"
    )
    found = json.loads(
        subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    )
    assert found["pages"] > 1000 and found["runs"] > 0
    (shared_kb,) = found["shared_kb"]
    # numpy and Python's own libraries: megabytes, at most half of what the process has resident
    assert 1024 < shared_kb <= found["pages"] * os.sysconf("SC_PAGE_SIZE") // 1024 // 2
