"""What the reports show, computed once from a run's records (and its baseline's)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.compare import BaselineSource, compare_records
from harness.errors import ConfigError
from harness.stats import NOISE_FLOOR
from harness.store.db import ResultsStore
from harness.store.results_json import RESULTS_FILE


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


def load_run(
    reports_dir: Path, run_id: str | None, store: ResultsStore | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run's metadata and records: from its results.json, else from the store."""
    if run_id is None:
        latest = reports_dir / "latest"
        if not latest.exists():
            raise ConfigError(
                f"no run in {reports_dir} (reports/latest is missing); run the suites first or name a run"
            )
        run_id = latest.resolve().name
    file = reports_dir / run_id / RESULTS_FILE
    if file.exists():
        document = json.loads(file.read_text(encoding="utf-8"))
        return document["run"], document["results"]
    if store is not None and store.run(run_id) is not None:
        stored = store.run(run_id)
        assert stored is not None
        return {
            "id": run_id,
            "git_branch": stored.git_branch,
            "git_commit": stored.git_commit,
            "devices": stored.devices,
        }, store.records(run_id)
    raise ConfigError(f"run {run_id}: no {file} and not in the results database")


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
