"""Report generation time and size for 200 results x 1,000 samples (goal: <= 3 s, HTML <= 5 MB).

Run: ``python benchmarks/report_generation.py`` (after ``pip install -e .``). Builds a run of 200
records (4 devices x 10 models x 5 runtime/precision variants, 1,000 latency samples each, energy
on two devices), then times the HTML page and summary.md against a baseline of the same shape
(every record compared again under the run's policy), in one process, as the median of 3 builds.
Writes benchmarks/results/report_generation.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.measurement import MemoryUsage
from harness.probes.energy import EnergyReport
from harness.record import ResultRecord, RunInfo, RunRef
from harness.report import write_reports
from harness.report.html import plotly_bundle
from harness.stats import summarize_latency

RESULTS = Path(__file__).parent / "results" / "report_generation.json"
VARIANTS = [
    ("onnxruntime", "fp32", 1.0),
    ("onnxruntime", "fp16", 0.8),
    ("onnxruntime", "int8-dynamic", 0.55),
    ("onnxruntime", "int8-static", 0.5),
    ("litert", "fp16", 0.7),
]


def records(run_id: str, shift: float, seed: int) -> list[ResultRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for device in range(4):
        for model in range(10):
            for runtime, precision, speed in VARIANTS:
                median = (1.0 + model * 2.5) * speed * (1 + device * 0.5)
                samples = rng.lognormal(np.log(median * shift), 0.05, 1000)
                name = f"model{model}"
                test = f"suites/bench.py::test[dev{device}-{name}-{runtime}-{precision}]"
                energy = None
                if device < 2:
                    energy = EnergyReport(
                        source="odpm",
                        kind="counter",
                        status="ok",
                        duration_s=2.0,
                        iterations=1000,
                        avg_power_w=1.0,
                        idle_power_w=0.5,
                        net_energy_mj=median * 4000,
                        mj_per_inference=median * 4,
                        uncertainty_mj_per_inference=0.1,
                        sample_rate_hz=10.0,
                        samples=20,
                    )
                out.append(
                    ResultRecord(
                        run_id=run_id,
                        run=RunRef(id=run_id),
                        test=test,
                        test_id=test.replace(f"[dev{device}-", "["),
                        kind="latency",
                        status="passed",
                        finished_at="2026-11-30T12:00:00Z",
                        device=f"dev{device}",
                        device_kind="adb",
                        virtual=True,
                        model=name,
                        model_sha256="0" * 64,
                        format="onnx" if runtime == "onnxruntime" else "tflite",
                        runtime=runtime,
                        precision=precision,
                        threads=1,
                        latency_samples_ms=tuple(round(float(v), 6) for v in samples),
                        latency_ms=summarize_latency([int(v * 1e6) for v in samples]),
                        memory=MemoryUsage(baseline_mb=50.0, load_peak_mb=90.0, peak_rss_mb=100.0),
                        energy=energy,
                    )
                )
    return out


def write(folder: Path, run_id: str, shift: float, seed: int, started_at: str) -> None:
    (folder / run_id).mkdir(parents=True)
    run = RunInfo(id=run_id, started_at=started_at, devices=("dev0", "dev1", "dev2", "dev3"), complete=True)
    document = {
        "schema_version": 2,
        "run": run.to_json(),
        "results": [r.to_json() for r in records(run_id, shift, seed)],
    }
    compact = json.dumps(document, separators=(",", ":"))  # as the harness writes it
    (folder / run_id / "results.json").write_text(compact)


def main() -> None:
    plotly_bundle()  # the one-time compression is cached on disk; time the steady state
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write(folder, "base", 1.0, 1, "2026-11-29T02:00:00Z")
        write(folder, "cand", 1.05, 2, "2026-11-30T02:00:00Z")
        timings, cpu = [], []
        for _ in range(3):
            started, started_cpu = time.perf_counter(), time.process_time()
            written = write_reports(folder, "cand", None, baseline=str(folder / "base"))
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        assert written is not None
        html, summary = written
        results = json.loads((folder / "cand" / "results.json").read_text())["results"]
        figures = {
            "results": len(results),
            "samples_per_result": len(results[0]["latency_samples_ms"]),
            "seconds_median_of_3": round(statistics.median(timings), 3),
            "seconds_each": [round(t, 3) for t in timings],
            "cpu_seconds_each": [round(t, 3) for t in cpu],
            "html_mb": round(html.stat().st_size / 1e6, 3),
            "summary_kb": round(summary.stat().st_size / 1e3, 2),
            "run_folder_mb": round(sum(p.stat().st_size for p in (folder / "cand").iterdir()) / 1e6, 3),
            "host": platform.node(),
            "load_average_1m": round(os.getloadavg()[0], 1),
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
