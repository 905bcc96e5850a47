"""Result records for tests: every required field filled, anything overridable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.measurement import MemoryUsage
from harness.probes.energy import EnergyReport
from harness.record import ResultRecord, RunInfo, RunRef
from harness.stats import summarize_latency


def samples(median_ms: float, seed: int, n: int = 400, cv: float = 0.02) -> list[float]:
    return [float(v) for v in np.random.default_rng(seed).normal(median_ms, median_ms * cv, n)]


def make_record(
    run_id: str = "cand",
    *,
    device: str = "local",
    model: str = "silero_vad",
    runtime: str = "onnxruntime",
    precision: str = "fp32",
    median_ms: float | None = 1.0,
    seed: int = 0,
    n: int = 400,
    test: str | None = None,
    **fields: Any,
) -> ResultRecord:
    """A passed latency record of ``n`` normal samples around ``median_ms`` (None: no measurement)."""
    test = test or f"suites/t.py::test[{device}-{model}-{runtime}-{precision}]"
    values: dict[str, Any] = {
        "run_id": run_id,
        "run": RunRef(id=run_id),
        "test": test,
        "test_id": test.replace(f"[{device}-", "["),
        "kind": "latency",
        "status": "passed",
        "finished_at": "2026-11-30T12:00:00Z",
        "device": device,
        "device_kind": "local",
        "virtual": False,
        "model": model,
        "model_sha256": "0" * 64,
        "format": "onnx",
        "runtime": runtime,
        "precision": precision,
        "threads": 1,
    }
    if median_ms is not None:
        drawn = samples(median_ms, seed, n)
        values |= {
            "latency_samples_ms": tuple(drawn),
            "latency_ms": summarize_latency([int(v * 1e6) for v in drawn]),
            "memory": MemoryUsage(baseline_mb=50.0, load_peak_mb=90.0, peak_rss_mb=100.0),
        }
    values |= fields
    return ResultRecord(**values)


def energy(mj_per_inference: float, uncertainty: float = 0.1, source: str = "odpm") -> EnergyReport:
    return EnergyReport(
        source=source,
        kind="counter",
        status="ok",
        duration_s=2.0,
        iterations=100,
        avg_power_w=1.0,
        idle_power_w=0.5,
        net_energy_mj=mj_per_inference * 100,
        mj_per_inference=mj_per_inference,
        uncertainty_mj_per_inference=uncertainty,
        sample_rate_hz=10.0,
        samples=20,
    )


def write_results(folder: Path, run_id: str, records: list[ResultRecord], **run: Any) -> Path:
    """A results.json as a run writes it."""
    (folder / run_id).mkdir(parents=True, exist_ok=True)
    path = folder / run_id / "results.json"
    values: dict[str, Any] = {
        "id": run_id,
        "started_at": "2026-11-30T12:00:00Z",
        "git_branch": "main",
        "git_commit": "abc",
        "devices": tuple(sorted({r.device for r in records})),
        "complete": True,
    }
    info = RunInfo(**(values | run))
    document = {"schema_version": 2, "run": info.to_json(), "results": [r.to_json() for r in records]}
    path.write_text(json.dumps(document))
    return path
