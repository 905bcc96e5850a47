"""What the reports show, computed once from a run's records (and its baseline's)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.compare import BaselineSource, VerdictPolicy, compare_runs
from harness.record import ResultRecord, RunInfo
from harness.stats import Verdict
from harness.store.db import ResultsStore


@dataclass
class RunReport:
    run: RunInfo
    records: list[ResultRecord]
    baseline_spec: str | None = None

    @property
    def compared(self) -> bool:
        return any(r.comparison is not None for r in self.records)

    @property
    def regressions(self) -> list[ResultRecord]:
        return [r for r in self.records if r.verdict == Verdict.REGRESSED]


def policy_of(run: RunInfo) -> VerdictPolicy:
    """The verdict policy the run was made with (the default for runs that recorded none)."""
    return VerdictPolicy.from_json(run.policy) if run.policy else VerdictPolicy()


def build(
    run: RunInfo,
    records: list[ResultRecord],
    *,
    baseline: str | None = None,
    store: ResultsStore | None = None,
    policy: VerdictPolicy | None = None,
) -> RunReport:
    """The run's records; with ``baseline``, each passed one compared again under ``policy`` (the
    run's own unless given). A comparison the run made in interleaved rounds against the baseline
    run found is kept: its rounds cannot be made again from the stored samples."""
    if not baseline:
        return RunReport(run, records, _spec_of(records))
    chosen = policy or policy_of(run)
    source = BaselineSource(baseline, store, current_run=run.id)
    compared = []
    for record in records:
        if record.status != "passed":
            compared.append(record)
            continue
        found = source.find(record.identity())
        kept = record.comparison
        if (
            kept is not None
            and kept.mode == "interleaved"
            and found is not None
            and kept.baseline_run == found.run_id
        ):
            compared.append(record)  # measured in this run's rounds: cannot be made again from samples
            continue
        compared.append(record.model_copy(update={"comparison": compare_runs(record, found, chosen)}))
    return RunReport(run, compared, baseline)


def _spec_of(records: list[ResultRecord]) -> str | None:
    runs = sorted({r.comparison.baseline_run for r in records if r.comparison and r.comparison.baseline_run})
    return ", ".join(runs) if runs else None


def distribution(samples: tuple[float, ...] | list[float] | None) -> dict[str, float] | None:
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
