"""Calibration of the regression verdicts: false alarms and power, two-run mode vs interleaved mode.

Run: ``python benchmarks/stats_calibration.py [--trials 300] [--real-trials 40] [--device local]``
(after ``pip install -e .``). Printed as tables and written to
benchmarks/results/stats_calibration.json.

1. Simulated, two runs: lognormal latencies (CV 2%, 5%, 10%; n samples per run) with a run-to-run
   drift (each run's scale ~ N(1, drift)). A/A pairs give the false-alarm rate (regressed or
   improved), pairs with a true +5% the power (regressed). The same drift in interleaved rounds
   (a random walk of the device's speed across rounds, the two sides of a round sharing it).
2. Real, on a device (default ``local``; ``--device virtual-pixel8`` with a lab up), through the
   session as a run makes them (harness.session.Lab, harness.compare): a model A and models made
   5% and 10% slower (chained MatMuls, so the work grows by exactly that; the true ratio is
   measured by a long bare loop), each trial both modes side by side:
   - two runs: A measured, then A again (A/A) or B (A/B), compared with ``compare_runs``;
   - interleaved: B (or A) with ``--interleave-baseline`` against A's record, ABBA rounds.
   A/A trials flagged regressed or improved are false alarms; A/B trials called regressed are power.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.compare import INTERLEAVED_FLOOR
from harness.stats import NOISE_FLOOR, Verdict, compare, compare_rounds

RESULTS = Path(__file__).parent / "results" / "stats_calibration.json"
GRID_CV = (0.02, 0.05, 0.10)
GRID_N = (50, 200, 1000)
ROUNDS = 8
FLAGGED = (Verdict.REGRESSED, Verdict.IMPROVED)


def simulate(trials: int, drift: float, seed: int = 1) -> list[dict[str, Any]]:
    """False alarms and power of both modes on synthetic samples with run-to-run drift."""
    rng = np.random.default_rng(seed)
    rows = []
    for cv in GRID_CV:
        for n in GRID_N:
            sigma = float(np.sqrt(np.log(1 + cv**2)))
            counts = {"runs": [0, 0], "interleaved": [0, 0]}
            per_round = max(2, n // ROUNDS)
            for trial in range(trials):
                scales = rng.normal(1.0, drift, size=3)
                base = 10.0 * scales[0] * rng.lognormal(0.0, sigma, n)
                same = 10.0 * scales[1] * rng.lognormal(0.0, sigma, n)
                slower = 10.5 * scales[2] * rng.lognormal(0.0, sigma, n)
                counts["runs"][0] += compare(base, same, seed=trial).verdict in FLAGGED
                counts["runs"][1] += compare(base, slower, seed=trial).verdict == Verdict.REGRESSED
                walk = 1.0 + np.cumsum(rng.normal(0.0, drift, ROUNDS))  # the device's speed per round
                rounds_a = [10.0 * w * rng.lognormal(0.0, sigma, per_round) for w in walk]
                rounds_a2 = [10.0 * w * rng.lognormal(0.0, sigma, per_round) for w in walk]
                rounds_b = [10.5 * w * rng.lognormal(0.0, sigma, per_round) for w in walk]
                floor = INTERLEAVED_FLOOR
                counts["interleaved"][0] += (
                    compare_rounds(rounds_a, rounds_a2, noise_floor=floor).verdict in FLAGGED
                )
                counts["interleaved"][1] += (
                    compare_rounds(rounds_a, rounds_b, noise_floor=floor).verdict == Verdict.REGRESSED
                )
            for mode, (alarms, detections) in counts.items():
                rows.append(
                    {
                        "mode": mode,
                        "cv": cv,
                        "n": n,
                        "drift": drift,
                        "false_alarm_rate": alarms / trials,
                        "power_5pct": detections / trials,
                    }
                )
            print(
                f"  cv {cv:4.0%}  n {n:5d}  two runs: false alarms {counts['runs'][0] / trials:6.1%} "
                f"power {counts['runs'][1] / trials:6.1%}  |  interleaved: false alarms "
                f"{counts['interleaved'][0] / trials:6.1%} power {counts['interleaved'][1] / trials:6.1%}"
            )
    return rows


# -- real pairs -------------------------------------------------------------------------------------

SIZE = 256
DEPTH = 20  # A: 20 chained MatMuls; +5%: 21; +10%: 22


def chain(path: Path, depth: int) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, previous = [], [], "x"
    for index in range(depth):
        weights.append(
            numpy_helper.from_array(
                (rng.standard_normal((SIZE, SIZE)) / SIZE).astype(np.float32), f"w{index}"
            )
        )
        output = "y" if index == depth - 1 else f"h{index}"
        nodes.append(helper.make_node("MatMul", [previous, f"w{index}"], [output]))
        previous = output
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, SIZE])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def variant_of(file: Path) -> Any:
    """A model named ``chain`` with these bytes, kept where the zoo keeps verified files."""
    from harness.models import zoo
    from harness.models.variants import Variant

    digest = zoo.sha256_of(file)
    spec = zoo.ModelSpec(
        name="chain",
        format="onnx",
        precision="fp32",
        task="none",
        description="calibration model",
        license="none",
        source=zoo.WheelSource("none", "0", "chain.onnx"),
        sha256=digest,
        size_bytes=file.stat().st_size,
        inputs=(zoo.InputSpec("x", (8, SIZE), "float32"),),
    )
    kept = zoo.cache_dir() / "models" / digest / "chain.onnx"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(file.read_bytes())
    return Variant("chain", "onnx", "onnxruntime", "fp32", spec)


def bare_ratios(files: list[Path], rounds: int = 10, iterations: int = 300) -> list[float]:
    """Each file's median latency over the first's, from a hand-written loop (one thread,
    alternating): the true size of each change."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [
        onnxruntime.InferenceSession(str(f), options, providers=["CPUExecutionProvider"]) for f in files
    ]
    feed = {"x": np.random.default_rng(0).random((8, SIZE), dtype=np.float32)}
    medians: list[list[float]] = [[] for _ in files]
    for _ in range(rounds):
        for index, session in enumerate(sessions):
            times = []
            for _ in range(iterations):
                start = time.perf_counter_ns()
                session.run(None, feed)
                times.append(time.perf_counter_ns() - start)
            medians[index].append(statistics.median(times))
    return [statistics.median(m / b for b, m in zip(medians[0], other, strict=True)) for other in medians]


def real_trials(device: str, trials: int) -> dict[str, Any]:
    from harness.compare import VerdictPolicy, compare_runs
    from harness.config import load_fleet
    from harness.measurement import LatencyProtocol
    from harness.session import Lab, RunOptions

    folder = Path(tempfile.mkdtemp(prefix="edgelab-calibration-"))
    files = [chain(folder / f"chain-{depth}.onnx", depth) for depth in (DEPTH, DEPTH + 1, DEPTH + 2)]
    variants = [variant_of(f) for f in files]
    truth = bare_ratios(files)
    print(f"  true ratios (bare loop): +5% model {truth[1]:.4f}, +10% model {truth[2]:.4f}")
    fleet = load_fleet(Path("devices.yaml") if Path("devices.yaml").exists() else None)
    protocol = LatencyProtocol(idle_s=0.0)
    test = f"calibration.py::test[{device}-chain-onnxruntime-fp32]"
    test_id = "calibration.py::test[chain-onnxruntime-fp32]"

    def record(lab: Any, variant: Any) -> Any:
        measured = lab.benchmark(device, variant, protocol, test_id=test_id, energy="none")
        return measured, lab.record(
            test=test, status="passed", device=device, variant=variant, measured=measured
        )

    base_options = RunOptions(reports_dir=folder / "reports", run_id="baseline", results_db=None, threads=1)
    base_lab = Lab(fleet, base_options)
    try:
        record(base_lab, variants[0])
    finally:
        base_lab.close()
    options = RunOptions(
        reports_dir=folder / "reports",
        run_id="trials",
        results_db=None,
        threads=1,
        baseline=str(folder / "reports" / "baseline" / "results.json"),
        interleave_baseline=True,
        interleave_rounds=ROUNDS,
    )
    lab = Lab(fleet, options)
    two_runs = Lab(
        fleet, RunOptions(reports_dir=folder / "reports", run_id="runs", results_db=None, threads=1)
    )
    outcome: dict[str, dict[str, list[Any]]] = {
        mode: {"A/A": [], "+5%": [], "+10%": []} for mode in ("runs", "interleaved")
    }
    policy = VerdictPolicy()
    try:
        for trial in range(trials):
            for label, variant in (("A/A", variants[0]), ("+5%", variants[1]), ("+10%", variants[2])):
                measured, _ = record(lab, variant)  # interleaved against the baseline's own bytes
                assert measured.paired is not None, measured.notes
                paired = measured.paired.comparison
                outcome["interleaved"][label].append((str(paired.verdict), paired.ratio))
                _, first = record(two_runs, variants[0])
                _, second = record(two_runs, variant)
                compared = compare_runs(second, first, policy)
                latency = compared.metrics[0]
                outcome["runs"][label].append((str(latency.verdict), latency.ratio))
            print(f"  trial {trial + 1}/{trials} done", flush=True)
    finally:
        lab.close()
        two_runs.close()
    summary: dict[str, Any] = {"true_ratio_5pct": truth[1], "true_ratio_10pct": truth[2], "modes": {}}
    for mode, labels in outcome.items():
        row: dict[str, Any] = {}
        for label, pairs in labels.items():
            verdicts = [v for v, _ in pairs]
            ratios = [r for _, r in pairs]
            row[label] = {
                "trials": len(pairs),
                "regressed": verdicts.count("regressed"),
                "improved": verdicts.count("improved"),
                "unchanged": verdicts.count("unchanged"),
                "inconclusive": verdicts.count("inconclusive"),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        summary["modes"][mode] = row
        aa = row["A/A"]
        print(
            f"  {mode:12s} A/A false alarms {(aa['regressed'] + aa['improved']) / aa['trials']:6.1%} "
            f"(ratios {aa['ratio_min']:.3f}-{aa['ratio_max']:.3f}, "
            f"unchanged {aa['unchanged']}/{aa['trials']})  "
            f"power +5% {row['+5%']['regressed'] / row['+5%']['trials']:6.1%} "
            f"(median ratio {row['+5%']['ratio_median']:.3f})  "
            f"power +10% {row['+10%']['regressed'] / row['+10%']['trials']:6.1%}"
        )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=300, help="simulated trials per cell")
    parser.add_argument("--drift", type=float, default=0.01, help="run-to-run sd of the scale (simulated)")
    parser.add_argument("--real-trials", type=int, default=40, help="real trials per change and mode")
    parser.add_argument("--device", default="local")
    arguments = parser.parse_args()
    started = time.time()
    print(
        f"simulated ({arguments.trials} trials per cell, drift {arguments.drift:.0%}, floors "
        f"{NOISE_FLOOR:.0%} two runs / {INTERLEAVED_FLOOR:.0%} interleaved, {ROUNDS} rounds):"
    )
    simulated = simulate(arguments.trials, arguments.drift)
    real = real_trials(arguments.device, arguments.real_trials) if arguments.real_trials > 0 else {}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    RESULTS.write_text(
        json.dumps(
            {
                "host": platform.node(),
                "machine": platform.machine(),
                "load_after": load,
                "noise_floor": NOISE_FLOOR,
                "interleaved_floor": INTERLEAVED_FLOOR,
                "rounds": ROUNDS,
                "device": arguments.device,
                "simulated": simulated,
                "real": real,
                "seconds": round(time.time() - started, 1),
            },
            indent=1,
        )
    )
    print(f"written {RESULTS} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
