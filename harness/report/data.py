"""What the reports show, computed once from a run's records (and its baseline's)."""

from __future__ import annotations

from collections.abc import Sequence
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


def merged(reports: Sequence[RunReport]) -> RunReport:
    """One report over runs made together on several lab hosts (one run id per host, as a CI
    matrix makes them): every record as it was, under a run named after all of them. The first
    run's commit and policy stand for the whole; runs of other commits are refused, since their
    results would read as one build's."""
    if not reports:
        raise ValueError("merged: no runs to merge")
    first = reports[0].run
    commits = {r.run.git_commit for r in reports}
    if len(commits) > 1:
        raise ValueError(
            f"merged: the runs are of different commits ({', '.join(sorted(map(str, commits)))})"
        )
    ids = [r.run.id for r in reports]
    hosts = [r.run.host or "?" for r in reports]
    run = first.model_copy(
        update={
            "id": "+".join(ids),
            "started_at": min(r.run.started_at for r in reports),
            "finished_at": max((r.run.finished_at for r in reports if r.run.finished_at), default=None),
            "host": ", ".join(dict.fromkeys(hosts)),
            "devices": tuple(dict.fromkeys(d for r in reports for d in r.run.devices)),
            "complete": all(r.run.complete for r in reports),
        }
    )
    records = [record for report in reports for record in report.records]
    specs = {r.baseline_spec for r in reports if r.baseline_spec}
    return RunReport(run, records, ", ".join(sorted(specs)) or None)


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
