"""Candidate vs baseline records (harness.compare)."""

from __future__ import annotations

import numpy as np

from harness.compare import compare_records


def record(run_id: str, median_ms: float, seed: int, reasons: list[str] | None = None) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "run_id": run_id,
        "device": "local",
        "model": "silero_vad",
        "runtime": "onnxruntime",
        "precision": "fp32",
        "latency_samples_ms": list(rng.normal(median_ms, median_ms * 0.02, 400)),
        "thermal": {"verdict": {"throttled": bool(reasons), "reasons": reasons or []}},
    }


def test_a_throttled_side_is_named_with_its_reasons_next_to_the_verdict():
    drift = "latency drift: last/first tenth median ratio 1.52"
    comparison = compare_records(record("cand", 0.13, 1, [drift]), record("base", 0.187, 2))
    (latency,) = comparison.metrics
    assert latency.verdict == "improved" and latency.ratio < 0.75
    assert latency.evidence.endswith(
        f"; candidate run throttled ({drift}): the change may be the device's state"
    )
    assert "baseline run throttled" not in latency.evidence


def test_runs_judged_steady_carry_no_caveat():
    comparison = compare_records(record("cand", 0.187, 1), record("base", 0.187, 2))
    (latency,) = comparison.metrics
    assert latency.verdict == "unchanged" and "throttled" not in latency.evidence
    no_thermal = {**record("cand", 0.187, 3), "thermal": None}
    assert "throttled" not in compare_records(no_thermal, record("base", 0.187, 2)).metrics[0].evidence
