"""What the reports show, computed once from a run's records (and its baseline's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.compare import BaselineSource, compare_records
from harness.stats import NOISE_FLOOR
from harness.store.db import ResultsStore


@dataclass
class RunReport:
    run: dict[str, Any]
    records: list[dict[str, Any]]
    comparisons: list[dict[str, Any] | None] = field(default_factory=list)  # RecordComparison.as_dict()
    baseline_spec: str | None = None

    @property
    def regressions(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [
            (r, c)
            for r, c in zip(self.records, self.comparisons, strict=False)
            if c and c["verdict"] == "regressed"
        ]


def build(
    run: dict[str, Any],
    records: list[dict[str, Any]],
    *,
    baseline: str | None = None,
    store: ResultsStore | None = None,
    noise_floor: float = NOISE_FLOOR,
) -> RunReport:
    report = RunReport(run=run, records=records, baseline_spec=baseline)
    if baseline:
        source = BaselineSource(baseline, store, current_run=run.get("id"))
        report.comparisons = [
            compare_records(r, source.find(r), noise_floor).as_dict() if r.get("status") == "passed" else None
            for r in records
        ]
    else:  # comparisons made during the run (pytest --baseline), if any
        report.comparisons = [r.get("comparison") for r in records]
    return report


def distribution(samples: list[float]) -> dict[str, float] | None:
    """Box-plot statistics, precomputed so the page carries 7 numbers, not every sample."""
    if not samples:
        return None
    values = np.asarray(samples, dtype=np.float64)
    p1, q1, median, q3, p99 = np.percentile(values, [1, 25, 50, 75, 99])
    return {
        "min": float(values.min()),
        "p1": float(p1),
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "p99": float(p99),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }
