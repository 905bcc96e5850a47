"""Calibration of the regression verdict (harness.stats.compare): false alarms and power.

Run: ``python benchmarks/stats_calibration.py [--trials 300] [--real-pairs 8] [--device local]``
(after ``pip install -e .``). Two parts, printed as tables and written to
benchmarks/results/stats_calibration.json:

1. Simulated: lognormal latencies with a CV of 2%, 5% or 10%, n samples per run, and a
   run-to-run drift (each run's scale ~ N(1, drift)). A/A pairs give the false-alarm rate
   (regressed or improved); pairs with a true +5% give the power (regressed).
2. Real: A/A pairs of the same model measured back to back on a device (default ``local``;
   ``--device virtual-pixel8`` with a lab up) with the default protocol: the ratio spread
   between two runs of the same thing on that device, and how many were flagged.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.stats import NOISE_FLOOR, compare

RESULTS = Path(__file__).parent / "results" / "stats_calibration.json"
GRID_CV = (0.02, 0.05, 0.10)
GRID_N = (50, 200, 1000)


def simulate(trials: int, drift: float, seed: int = 1) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for cv in GRID_CV:
        for n in GRID_N:
            sigma = float(np.sqrt(np.log(1 + cv**2)))
            alarms = detections = 0
            for trial in range(trials):
                scales = rng.normal(1.0, drift, size=3)
                base = 10.0 * scales[0] * rng.lognormal(0.0, sigma, n)
                same = 10.0 * scales[1] * rng.lognormal(0.0, sigma, n)
                slower = 10.5 * scales[2] * rng.lognormal(0.0, sigma, n)
                if compare(base, same, seed=trial).verdict in ("regressed", "improved"):
                    alarms += 1
                if compare(base, slower, seed=trial).verdict == "regressed":
                    detections += 1
            alarm_rate, power = alarms / trials, detections / trials
            rows.append(
                {"cv": cv, "n": n, "drift": drift, "false_alarm_rate": alarm_rate, "power_5pct": power}
            )
            print(f"  cv {cv:4.0%}  n {n:5d}  false alarms {alarm_rate:6.1%}  power(+5%) {power:6.1%}")
    return rows


def real_pairs(device: str, pairs: int) -> list[dict[str, Any]]:
    from harness.config import load_fleet
    from harness.measurement import LatencyProtocol
    from harness.models.variants import variants_for
    from harness.session import Lab, RunOptions

    fleet = load_fleet(Path("devices.yaml") if Path("devices.yaml").exists() else None)
    lab = Lab(fleet, RunOptions(reports_dir=Path("/tmp/edgelab-calibration"), devices=(device,)))
    rows = []
    try:
        for model in ("ppocr_det", "face_detection", "silero_vad"):
            variant = variants_for(model)[0]
            verdicts: list[str] = []
            ratios: list[float] = []
            for _ in range(pairs):
                first = lab.benchmark(device, variant, LatencyProtocol()).result
                second = lab.benchmark(device, variant, LatencyProtocol()).result
                result = compare(first.latency_samples_ns, second.latency_samples_ns)
                verdicts.append(result.verdict)
                ratios.append(result.ratio)
            flagged = sum(v in ("regressed", "improved") for v in verdicts)
            row = {
                "device": device,
                "model": model,
                "pairs": pairs,
                "samples_per_run": first.latency_ms.samples,
                "cv": first.latency_ms.cv,
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "flagged": flagged,
                "verdicts": verdicts,
            }
            rows.append(row)
            print(
                f"  {model:15s} n={row['samples_per_run']:6d} cv={row['cv']:.3f}  A/A ratios "
                f"{row['ratio_min']:.3f}-{row['ratio_max']:.3f}  flagged {flagged}/{pairs}"
            )
    finally:
        lab.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--drift", type=float, default=0.01, help="run-to-run sd of the scale (simulated)")
    parser.add_argument("--real-pairs", type=int, default=8)
    parser.add_argument("--device", default="local")
    arguments = parser.parse_args()
    started = time.time()
    trials, drift = arguments.trials, arguments.drift
    print(f"simulated ({trials} trials per cell, drift {drift:.0%}, floor {NOISE_FLOOR:.0%}):")
    simulated = simulate(arguments.trials, arguments.drift)
    print(f"real A/A pairs on {arguments.device}:")
    real = real_pairs(arguments.device, arguments.real_pairs) if arguments.real_pairs > 0 else []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "host": platform.node(),
                "machine": platform.machine(),
                "noise_floor": NOISE_FLOOR,
                "simulated": simulated,
                "real": real,
                "seconds": round(time.time() - started, 1),
            },
            indent=1,
        )
    )
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
