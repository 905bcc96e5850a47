"""Agent overhead: the agent's reported median latency vs a bare inference loop, same model.

Run: ``python benchmarks/agent_overhead.py [--rounds 5] [--iters 300] [--via channel]`` (after
``pip install -e .``). Bare and agent runs alternate (A/B/B/A...) in one process so drift hits
both; threads are 1. ``--via channel``: each agent run is a child forked from the persistent
agent of its runtime (as the session runs it), not a fresh interpreter. Goal: agent median /
bare median <= 1.02. Writes benchmarks/results/agent_overhead.json (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.models import zoo
from harness.models.variants import RUNTIME_FOR_FORMAT
from harness.runners.python_agent import AGENT_FILE, agent_channel
from harness.transport.channel import PersistentChannel, run_over
from harness.transport.local import LocalTransport

MODELS = ("silero_vad", "face_detection", "hand_landmark", "ppocr_det")
RESULTS = Path(__file__).parent / "results" / "agent_overhead.json"


def bare_loop(spec: zoo.ModelSpec, model: Path, inputs: Path, iters: int, warmup: int) -> list[int]:
    """The reference: what a user would write by hand, timed per iteration the same way."""
    with np.load(inputs) as archive:
        feed = {name: np.array(archive[name][0]) for name in archive.files}
    if spec.format == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])

        def once() -> None:
            session.run(None, feed)

    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(model), num_threads=1)
        interpreter.allocate_tensors()
        details = [(d["index"], feed[d["name"]]) for d in interpreter.get_input_details()]

        def once() -> None:
            for index, value in details:
                interpreter.set_tensor(index, value)
            interpreter.invoke()

    for _ in range(warmup):
        once()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(iters):
        begin = clock()
        once()
        samples.append(clock() - begin)
    return samples


CHANNELS: dict[str, PersistentChannel] = {}  # --via channel: one persistent agent per runtime
VIA = ["fresh"]


def _channel(runtime: str) -> PersistentChannel:
    if runtime not in CHANNELS:
        CHANNELS[runtime] = agent_channel(LocalTransport("host"), sys.executable, str(AGENT_FILE), runtime)
    return CHANNELS[runtime]


def agent_run(spec: zoo.ModelSpec, model: Path, inputs: Path, iters: int, warmup: int) -> list[int]:
    runtime = RUNTIME_FOR_FORMAT[spec.format]
    command = [
        sys.executable, str(AGENT_FILE), "run", "--model", str(model), "--runtime", runtime, "--threads", "1",
        "--inputs", str(inputs), "--warmup-iters", str(warmup), "--warmup-s", "0",
        "--min-iters", str(iters), "--min-s", "0", "--max-iters", str(iters),
    ]  # fmt: skip
    if VIA[0] == "channel":
        served = run_over(_channel(runtime), "agent", command[2:], timeout=600)
        assert served is not None and served.exit_code == 0, served
        output = served.stdout
    else:
        output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
    samples: list[int] = json.loads(output)["latencies_ns"]
    return samples


def measure(name: str, rounds: int, iters: int, warmup: int, scratch: Path) -> dict[str, object]:
    spec = zoo.get(name)
    model = zoo.fetch(spec)
    inputs = zoo.make_inputs(spec, scratch / f"{name}.npz")
    bare: list[int] = []
    agent: list[int] = []
    round_ratios = []
    for index in range(rounds):
        order = (bare_loop, agent_run) if index % 2 == 0 else (agent_run, bare_loop)
        results = {fn.__name__: fn(spec, model, inputs, iters, warmup) for fn in order}
        bare += results["bare_loop"]
        agent += results["agent_run"]
        round_ratios.append(statistics.median(results["agent_run"]) / statistics.median(results["bare_loop"]))
    bare_ms = statistics.median(bare) / 1e6
    agent_ms = statistics.median(agent) / 1e6
    return {
        "model": name,
        "format": spec.format,
        "samples_each": len(bare),
        "bare_median_ms": round(bare_ms, 4),
        "agent_median_ms": round(agent_ms, 4),
        "ratio": round(agent_ms / bare_ms, 4),
        "round_ratios": [round(r, 4) for r in round_ratios],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--via", choices=["fresh", "channel"], default="fresh")
    parser.add_argument("--output", type=Path, default=RESULTS)
    arguments = parser.parse_args()
    VIA[0] = arguments.via
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        rows = [
            measure(name, arguments.rounds, arguments.iters, arguments.warmup, Path(scratch))
            for name in arguments.models
        ]
    print("| model | format | bare median ms | agent median ms | agent / bare | per-round ratios |")
    print("|---|---|---:|---:|---:|---|")
    for row in rows:
        ratios = ", ".join(f"{r:.3f}" for r in row["round_ratios"])  # type: ignore[attr-defined]
        print(
            f"| {row['model']} | {row['format']} | {row['bare_median_ms']:.4f} "
            f"| {row['agent_median_ms']:.4f} | {row['ratio']:.3f} | {ratios} |"
        )
    for channel in CHANNELS.values():
        channel.close()
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "host": platform.node(),
        "cpu": platform.processor(),
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "settings": {**vars(arguments), "output": str(arguments.output)},
        "rows": rows,
    }
    arguments.output.write_text(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
