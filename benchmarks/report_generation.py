"""Report generation time and size for 200 variants x 1,000 samples (goal: <= 3 s, HTML <= 5 MB).

Run: ``python benchmarks/report_generation.py`` (after ``pip install -e .``). Builds a run of 200
records (4 devices x 50 models, 1,000 latency samples each, with energy), then times the HTML
page and summary.md against a baseline of the same shape (every record compared), in one process.
Writes benchmarks/results/report_generation.json.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.report import write_reports
from harness.report.html import plotly_bundle

RESULTS = Path(__file__).parent / "results" / "report_generation.json"


def records(run_id: str, shift: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for index in range(200):
        median = 1.0 + index * 0.25
        samples = rng.lognormal(np.log(median * shift), 0.05, 1000)
        out.append(
            {
                "run_id": run_id,
                "test": f"suites/bench.py::test[dev{index % 4}-model{index // 4}]",
                "status": "passed",
                "device": f"dev{index % 4}",
                "model": f"model{index // 4}",
                "format": "onnx",
                "runtime": "onnxruntime",
                "precision": "fp32",
                "threads": 1,
                "model_sha256": "0" * 64,
                "latency_ms": {"median": float(np.median(samples)), "p90": float(np.percentile(samples, 90))},
                "latency_samples_ms": [round(float(v), 6) for v in samples],
                "peak_rss_mb": 100.0,
                "energy": {
                    "mj_per_inference": median * 4,
                    "uncertainty_mj_per_inference": 0.1,
                    "source": "odpm",
                },
                "warnings": [],
            }
        )
    return out


def write(folder: Path, run_id: str, shift: float, seed: int) -> None:
    (folder / run_id).mkdir(parents=True)
    document = {
        "schema_version": 1,
        "run": {"id": run_id, "devices": ["dev0"]},
        "results": records(run_id, shift, seed),
    }
    (folder / run_id / "results.json").write_text(json.dumps(document))


def main() -> None:
    plotly_bundle()  # the one-time compression is cached on disk; time the steady state
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write(folder, "base", 1.0, 1)
        write(folder, "cand", 1.05, 2)
        started = time.perf_counter()
        html, summary = write_reports(folder, "cand", None, baseline=str(folder / "base"))
        seconds = time.perf_counter() - started
        figures = {
            "variants": 200,
            "samples_per_variant": 1000,
            "seconds": round(seconds, 3),
            "html_mb": round(html.stat().st_size / 1e6, 3),
            "summary_kb": round(summary.stat().st_size / 1e3, 2),
            "host": platform.node(),
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
