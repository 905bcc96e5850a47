"""The session (harness.session.Lab): options resolved once, records built and compared, and the
baseline's own model file measured in ABBA rounds beside the candidate (--interleave-baseline)."""

from __future__ import annotations

import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.config import load_fleet
from harness.errors import ConfigError, ConnectionLost
from harness.measurement import LatencyProtocol
from harness.models import zoo
from harness.models.variants import Variant
from harness.session import Lab, RunOptions
from harness.stats import Verdict

SIZE = 384  # about 0.2 ms per MatMul here: long enough for the timer, short enough for many samples
PROTOCOL = LatencyProtocol(warmup_iters=20, warmup_s=0.2, min_iters=400, min_s=2.4, max_s=30.0, idle_s=0.0)
ROUNDS = 8


def matmul_chain(path: Path, depth: int) -> Path:
    """``depth`` chained SIZE x SIZE MatMuls: the same input and output, ``depth`` times the work."""
    rng = np.random.default_rng(depth)
    nodes, initializers, previous = [], [], "x"
    for index in range(depth):
        weight = numpy_helper.from_array(
            (rng.standard_normal((SIZE, SIZE)) / SIZE).astype(np.float32), f"w{index}"
        )
        initializers.append(weight)
        output = "y" if index == depth - 1 else f"h{index}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{index}"], [output]))
        previous = output
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, SIZE])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def variant_of(file: Path) -> Variant:
    """A model named ``chain`` whose bytes are ``file``, placed where the zoo keeps verified files."""
    digest = zoo.sha256_of(file)
    spec = zoo.ModelSpec(
        name="chain",
        format="onnx",
        precision="fp32",
        task="none",
        description="test model",
        license="none",
        source=zoo.WheelSource("none", "0", "chain.onnx"),
        sha256=digest,
        size_bytes=file.stat().st_size,
        inputs=(zoo.InputSpec("x", (16, SIZE), "float32"),),
    )
    kept = zoo.cache_dir() / "models" / digest / "chain.onnx"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(file.read_bytes())
    return Variant("chain", "onnx", "onnxruntime", "fp32", spec)


def bare_ratio(fast: Path, slow: Path, rounds: int = 10) -> float:
    """slow / fast median latency from a hand-written loop (one thread each, alternating)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [
        onnxruntime.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for p in (fast, slow)
    ]
    feed = {"x": np.random.default_rng(0).random((16, SIZE), dtype=np.float32)}
    medians: list[list[float]] = [[], []]
    for _ in range(rounds):
        for index, session in enumerate(sessions):
            times = []
            for _ in range(300):
                start = time.perf_counter_ns()
                session.run(None, feed)
                times.append(time.perf_counter_ns() - start)
            medians[index].append(statistics.median(times))
    return statistics.median(s / f for f, s in zip(medians[0], medians[1], strict=True))


@pytest.fixture
def host(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELAB_CACHE", str(tmp_path / "cache"))
    devices = tmp_path / "devices.yaml"
    devices.write_text(f"devices:\n  local: {{kind: local, workdir: {tmp_path / 'device'}, threads: 1}}\n")
    return load_fleet(devices, lab_file=tmp_path / "no-lab.yaml")


def run_once(fleet, tmp_path: Path, run_id: str, variant: Variant, **options) -> object:
    lab = Lab(fleet, RunOptions(reports_dir=tmp_path / "reports", run_id=run_id, results_db=None, **options))
    test = "t.py::test_latency[local-chain-onnxruntime-fp32]"
    try:
        measured = lab.benchmark(
            "local", variant, PROTOCOL, test_id="t.py::test_latency[chain-onnxruntime-fp32]", energy="none"
        )
        return lab.record(test=test, status="passed", device="local", variant=variant, measured=measured)
    finally:
        lab.close()


def test_a_slower_model_file_is_regressed_in_interleaved_rounds_and_the_same_file_unchanged(host, tmp_path):
    # 3x the work, so a loaded host's scatter (a CI run's 99% CI on a 1.5x pair: -0.9%..+54.9%)
    # cannot hide the change
    fast = matmul_chain(tmp_path / "fast.onnx", 2)
    slow = matmul_chain(tmp_path / "slow.onnx", 6)
    baseline = run_once(host, tmp_path, "base", variant_of(fast))
    base_file = str(tmp_path / "reports" / "base" / "results.json")
    interleave = {"baseline": base_file, "interleave_baseline": True, "interleave_rounds": ROUNDS}

    changed = run_once(host, tmp_path, "slower", variant_of(slow), **interleave)
    expected = bare_ratio(fast, slow)
    comparison = changed.comparison
    assert comparison.mode == "interleaved" and comparison.baseline_run == "base"
    assert comparison.artifact_changed and comparison.baseline_model_sha256 == baseline.model_sha256
    assert (
        comparison.interleaved.rounds == ROUNDS and "host cache" in comparison.interleaved.baseline_artifact
    )
    latency = comparison.metrics[0]
    assert latency.verdict == Verdict.REGRESSED, latency.evidence
    # the ratio the harness measured is the ratio a bare loop measures (within 20% on a shared
    # host: one run measured 2.99x where the bare loop, then 6 rounds of 150, measured 2.56x)
    assert abs(math.log(latency.ratio / expected)) < math.log(1.2), (
        latency.ratio,
        expected,
        latency.evidence,
    )

    same = run_once(host, tmp_path, "same", variant_of(fast), **interleave)
    assert same.comparison.mode == "interleaved" and not same.comparison.artifact_changed
    # The same bytes are never called regressed or improved. On a quiet host the rounds agree
    # and the verdict is unchanged; on a loaded one the round ratios scatter (a CI run measured
    # -6.8%..+34.7%) and the honest verdict is inconclusive.
    same_latency = same.comparison.metrics[0]
    assert same_latency.verdict in (Verdict.UNCHANGED, Verdict.INCONCLUSIVE), same_latency.evidence
    if same_latency.verdict == Verdict.INCONCLUSIVE:  # says why: an interval wider than the floor
        assert "99% CI" in same_latency.evidence and "interleaved floor 2%" in same_latency.evidence


def test_without_the_baseline_bytes_it_says_so_and_compares_the_runs(host, tmp_path):
    fast = matmul_chain(tmp_path / "fast.onnx", 2)
    run_once(host, tmp_path, "base", variant_of(fast))
    base_file = tmp_path / "reports" / "base" / "results.json"
    document = base_file.read_text().replace(zoo.sha256_of(fast), "f" * 64)  # bytes no cache has
    base_file.write_text(document)
    record = run_once(
        host, tmp_path, "cand", variant_of(fast), baseline=str(base_file), interleave_baseline=True
    )
    assert record.comparison.mode == "runs"
    assert any(
        "interleaved baseline: the baseline's model (sha256 ffffffffffff) is in no cache" in n
        for n in record.notes
    )


def test_options_are_checked_once_with_the_fix():
    with pytest.raises(ConfigError, match="--interleave-baseline needs --baseline"):
        RunOptions(interleave_baseline=True)
    with pytest.raises(ConfigError, match="--fail-on-regression needs --baseline"):
        RunOptions(fail_on_regression=True)
    with pytest.raises(ValueError, match="max_s"):
        RunOptions(protocol={"min_s": 5.0, "max_s": 1.0})
    options = RunOptions(protocol={"min_iters": 7})
    assert options.merged_protocol({"min_iters": None, "warmup_s": 0.5}) | {} == {
        **options.merged_protocol({}),
        "warmup_s": 0.5,
    }
    assert options.merged_protocol({})["min_iters"] == 7


@pytest.mark.parametrize("keep", [False, True], ids=["deleted", "kept"])
def test_evaluate_deletes_the_raw_outputs_once_scored_unless_kept(tmp_path, keep):
    from harness.models.variants import variants_for
    from harness.report import write_reports

    options = RunOptions(
        reports_dir=tmp_path, devices=("local",), lease_timeout_s=None, health_checks=False, keep_outputs=keep
    )
    lab = Lab(load_fleet(None), options)
    variant = next(v for v in variants_for("ppocr_cls") if v.precision == "fp32")
    try:
        measured, report = lab.evaluate("local", variant, corruptions=(), severities=())
        lab.record(
            test="t.py::test_accuracy[local-ppocr_cls-onnxruntime-fp32]",
            status="passed",
            device="local",
            variant=variant,
            kind="accuracy",
            measured=measured,
            accuracy=report.record(),
        )
    finally:
        lab.close()
    assert set(report.slices) == {"clean"} and 0 <= report.value() <= 1
    outputs = tmp_path / lab.run_id / "outputs"
    assert write_reports(tmp_path, lab.run_id, None) is not None
    kept = sorted(p.name for p in outputs.rglob("*") if p.is_file()) if outputs.exists() else []
    assert kept == (["local-ppocr_cls-onnxruntime-fp32"] if keep else [])
    run_files = [p for p in (tmp_path / lab.run_id).rglob("*") if p.is_file() and outputs not in p.parents]
    assert sum(p.stat().st_size for p in run_files) < 5_000_000  # what CI uploads, outputs aside
    assert (tmp_path / "latest").resolve() == tmp_path / lab.run_id  # it measured: latest moves


@pytest.mark.parametrize("bad", ["../../x", "a/b", "..", "", ".hidden", "x" * 65, "a b", "run\n1"])
def test_a_run_id_cannot_leave_the_reports_folder(bad):
    with pytest.raises(ConfigError, match="--run-id .*: use 1-64 letters"):
        RunOptions(run_id=bad)
    assert RunOptions(run_id="pr-42.nightly_1").run_id == "pr-42.nightly_1"


def _board_whose_first_probe_drops_the_connection(
    sshd, tmp_path: Path, retries: int
) -> tuple[Lab, list[str]]:
    """A board (a real sshd) whose first agent probe SIGKILLs the sshd session serving it: the
    connection closes mid-setup, as when sshd restarts or the link blips."""
    marker = tmp_path / "dropped-once"
    python = tmp_path / "python-that-drops-once"
    python.write_text(
        "#!/bin/sh\n"
        f'if [ "$2" = probe ] && [ ! -e "{marker}" ]; then\n'
        f'  : > "{marker}"; p=$PPID\n'
        f'  while [ "$p" != {sshd.pid} ] && [ "$p" -gt 1 ]; do\n'
        "    next=$(cut -d' ' -f4 /proc/$p/stat); kill -KILL $p; p=$next\n"
        "  done\n"
        "  exit 1\n"
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        "devices:\n  board:\n"
        + "".join(
            f"    {key}: {value}\n"
            for key, value in {
                "kind": "ssh",
                "host": sshd.host,
                "port": sshd.port,
                "user": sshd.user,
                "key_file": sshd.client_key,
                "known_hosts": sshd.known_hosts,
                "workdir": tmp_path / "workdir",
                "python": python,
                "keepalive_s": 3,
                "persistent_channel": "false",  # the probe then runs as its own command, as it drops
            }.items()
        )
    )
    options = RunOptions(
        reports_dir=tmp_path / "reports",
        devices=("board",),
        lease_timeout_s=None,
        health_checks=False,
        speed_reference=False,
        retries=retries,
    )
    lab = Lab(load_fleet(devices), options)
    told: list[str] = []
    lab.notify = told.append
    return lab, told


def test_retries_cover_a_connection_lost_while_the_device_is_set_up(sshd, tmp_path):
    lab, told = _board_whose_first_probe_drops_the_connection(sshd, tmp_path, retries=1)
    try:
        session = lab.device("board")
        assert session.probe.python is not None and session.probe.python.version == platform.python_version()
    finally:
        lab.close()
    assert len(told) == 1
    assert told[0].startswith("device 'board': retry 1 of 1 after: device 'board': the connection closed")
    assert "probe" in told[0]


def test_without_retries_a_connection_lost_in_setup_fails_the_device(sshd, tmp_path):
    lab, told = _board_whose_first_probe_drops_the_connection(sshd, tmp_path, retries=0)
    try:
        with pytest.raises(ConnectionLost, match=r"device 'board': the connection closed .*probe"):
            lab.device("board")
    finally:
        lab.close()
    assert told == []


def test_a_connection_lost_while_timing_the_speed_reference_is_a_note_not_a_failure():
    from harness.errors import ConnectionLost
    from harness.session import _reference

    class Gone:
        device = "board"

        def run(self, argv, *, timeout):
            raise ConnectionLost("board", "the SSH connection closed (sshd killed?)")

    reference, note = _reference(Gone())
    assert reference is None
    assert note is not None and note.startswith("speed reference: not measured (the connection was lost: ")
