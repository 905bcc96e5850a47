"""Memory of a run forked from the persistent agent against a fresh interpreter, same model.

Run: ``python benchmarks/warm_memory.py [--runs 3]`` (after ``pip install -e .``). For each zoo
model: ``--runs`` fresh interpreters first, while no agent maps the same libraries, then as many
runs forked from the persistent agent of the model's runtime (as a session runs them). Compares
peak RSS (VmHWM after the run) and PSS as the agent reports it (``pss_kb``), next to the kernel's
own PSS of the forked run (``pss_kernel_kb``, which splits the pages the run shares with the agent).
Goal: forked / fresh within 5% on both. Writes benchmarks/results/warm_memory.json (``--output``).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.models import zoo
from harness.models.variants import RUNTIME_FOR_FORMAT
from harness.runners.python_agent import AGENT_FILE, agent_channel
from harness.transport.channel import run_over
from harness.transport.local import LocalTransport

MODELS = ("silero_vad", "face_detection", "hand_landmark", "ppocr_det")
RESULTS = Path(__file__).parent / "results" / "warm_memory.json"


def run_argv(runtime: str, model: Path, inputs: Path) -> list[str]:
    return [
        "run", "--model", str(model), "--runtime", runtime, "--threads", "1", "--inputs", str(inputs),
        "--warmup-iters", "5", "--warmup-s", "0", "--min-iters", "50", "--min-s", "0",
    ]  # fmt: skip


def figures(document: dict[str, Any]) -> dict[str, int]:
    return {
        "peak_rss_kb": document["memory_kb"]["vmhwm_after_run"],
        "pss_kb": document["pss_kb"],
        "pss_kernel_kb": document["pss_kernel_kb"],
    }


def measure(name: str, runs: int, scratch: Path) -> dict[str, Any]:
    spec = zoo.get(name)
    model = zoo.fetch(spec)
    inputs = zoo.make_inputs(spec, scratch / f"{name}.npz")
    runtime = RUNTIME_FOR_FORMAT[spec.format]
    argv = run_argv(runtime, model, inputs)
    fresh = []
    for _ in range(runs):
        command = [sys.executable, str(AGENT_FILE), *argv]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        fresh.append(figures(json.loads(done.stdout)))
    channel = agent_channel(LocalTransport("host"), sys.executable, str(AGENT_FILE), runtime)
    try:
        forked = []
        for _ in range(runs):
            answer = run_over(channel, "agent", argv, timeout=600)
            assert answer is not None and answer.exit_code == 0, answer
            forked.append(figures(json.loads(answer.stdout)))
    finally:
        channel.close()
    row: dict[str, Any] = {"model": name, "format": spec.format, "fresh": fresh, "forked": forked}
    for key in ("peak_rss_kb", "pss_kb"):
        low = min(r[key] for r in fresh)
        row[f"{key}_forked_over_fresh"] = [round(r[key] / low, 4) for r in forked]
    low = min(r["pss_kb"] for r in fresh)
    row["pss_kernel_over_fresh"] = [round(r["pss_kernel_kb"] / low, 4) for r in forked]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for name in args.models.split(","):
            row = measure(name, args.runs, Path(folder))
            print(
                f"{name}: peak RSS forked/fresh {row['peak_rss_kb_forked_over_fresh']}, PSS "
                f"{row['pss_kb_forked_over_fresh']} (the kernel's figure {row['pss_kernel_over_fresh']})",
                flush=True,
            )
            rows.append(row)
    document = {"host": platform.node(), "python": platform.python_version(), "runs": args.runs}
    document["models"] = rows
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
