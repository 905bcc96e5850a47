"""What the reports show, computed once from a run's records (and its baseline's): the runtime x
precision matrices, Pareto fronts, slice tables and distributions, grouped by result identity.

No verdict is made here: a comparison is the record's own, or one made again by harness.compare
under the run's recorded policy. Whatever was not measured stays None and is shown as such.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from harness.compare import BaselineSource, VerdictPolicy, compare_runs, read_results
from harness.errors import EdgeLabError
from harness.record import AccuracyRecord, ResultIdentity, ResultRecord, RunInfo
from harness.stats import Verdict, proportion_drop
from harness.store.db import ResultsStore

# Metrics that are a share of samples judged right: their drop has a binomial CI.
PROPORTION_METRICS = {"accuracy", "exact_match"}
LOWER_IS_BETTER = {"cer"}
PRECISION_ORDER = ("fp32", "fp16", "int8-dynamic", "int8-static", "int8")


@dataclass(frozen=True)
class AccuracyDrop:
    """Clean-slice accuracy of a variant against the host fp32 reference on the same inputs."""

    metric: str
    value: float
    fp32: float
    points: float  # positive is worse
    ci_low: float | None  # 95% CI of the drop, for proportion metrics
    ci_high: float | None


BudgetState = Literal["ok", "failed", "unjudged", "none"]

# Without an accuracy budget, the most a variant may lose against fp32 and still be marked best.
UNBUDGETED_DROP_POINTS = 1.0


@dataclass(frozen=True)
class Cell:
    record: ResultRecord
    anchor: str
    speedup: float | None  # this runtime's fp32 median / this median; None without an fp32 cell
    accuracy: AccuracyDrop | None
    budget: BudgetState
    best: bool = False


@dataclass
class Grid:
    """One test on one device in one protocol: rows are models, columns runtime/precision."""

    device: str
    test: str
    kind: str
    models: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    best_rule: str = ""

    @property
    def title(self) -> str:
        return f"{self.device} · {short_test(self.test)} ({self.kind})"

    @property
    def records(self) -> list[ResultRecord]:
        return [cell.record for cell in self.cells.values()]

    def measured(self, what: str) -> bool:
        return any(_measured(cell.record, what) for cell in self.cells.values())


@dataclass(frozen=True)
class ParetoPoint:
    label: str
    anchor: str
    latency_ms: float
    score: float  # accuracy in % (or energy in mJ for the energy front)
    on_front: bool


@dataclass(frozen=True)
class Pareto:
    device: str
    model: str
    test: str
    y_title: str
    higher_is_better: bool
    points: tuple[ParetoPoint, ...]

    @property
    def front(self) -> list[ParetoPoint]:
        return sorted((p for p in self.points if p.on_front), key=lambda p: p.latency_ms)


@dataclass(frozen=True)
class SliceCell:
    value: float
    drop_points: float | None  # None: no fp32 reference (the model ships quantized)
    worst: bool


@dataclass(frozen=True)
class SliceTable:
    """Accuracy per slice (corruption x severity) of one model on one device, a column per variant."""

    device: str
    model: str
    test: str
    metric: str
    columns: tuple[str, ...]
    anchors: tuple[str, ...]
    rows: tuple[str, ...]
    cells: dict[tuple[str, str], SliceCell]
    worst: dict[str, tuple[str, float]]  # column -> (slice, value)
    max_drop: dict[str, tuple[str, float] | None]  # column -> (slice, points); None: no fp32


@dataclass
class RunReport:
    run: RunInfo
    records: list[ResultRecord]
    baseline_spec: str | None = None
    baselines: dict[ResultIdentity, ResultRecord] = field(default_factory=dict)

    @property
    def compared(self) -> bool:
        return any(r.comparison is not None for r in self.records)

    @property
    def regressions(self) -> list[ResultRecord]:
        return [r for r in self.records if r.verdict == Verdict.REGRESSED]

    @functools.cached_property
    def _positions(self) -> dict[int, int]:
        return {id(record): index for index, record in enumerate(self.records)}

    def anchor(self, record: ResultRecord) -> str:
        """The id of the result's detail row (by object, not by value: two reruns may be equal)."""
        return f"r-{self._positions[id(record)]}"

    def verdict_counts(self) -> dict[str, int]:
        counts = {str(v): 0 for v in Verdict}
        for record in self.records:
            if record.comparison is not None:
                counts[str(record.comparison.verdict)] += 1
        return {verdict: n for verdict, n in counts.items() if n}

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for record in self.records:
            counts[record.status] += 1
        return dict(counts)


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
    reports_dir: Path | None = None,
) -> RunReport:
    """The run's records; with ``baseline``, each passed one compared again under ``policy`` (the
    run's own unless given). A comparison the run made in interleaved rounds against the baseline
    run found is kept: its rounds cannot be made again from the stored samples. The baseline
    records are kept too, so their distributions can be drawn beside the run's."""
    if not baseline:
        return RunReport(run, records, _spec_of(records), _recorded_baselines(records, store, reports_dir))
    chosen = policy or policy_of(run)
    source = BaselineSource(baseline, store, current_run=run.id)
    compared = []
    found_baselines: dict[ResultIdentity, ResultRecord] = {}
    for record in records:
        if record.status != "passed":
            compared.append(record)
            continue
        found = source.find(record.identity())
        if found is not None:
            found_baselines[record.identity()] = found
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
    return RunReport(run, compared, baseline, found_baselines)


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


def _recorded_baselines(
    records: list[ResultRecord], store: ResultsStore | None, reports_dir: Path | None
) -> dict[ResultIdentity, ResultRecord]:
    """The baseline records the run's comparisons name, from the store or their run folders
    (a baseline that can no longer be read is simply not drawn)."""
    wanted: dict[str, set[ResultIdentity]] = defaultdict(set)
    for record in records:
        if record.comparison is not None and record.comparison.baseline_run:
            wanted[record.comparison.baseline_run].add(record.identity())
    found: dict[ResultIdentity, ResultRecord] = {}
    for run_id, identities in wanted.items():
        candidates: list[ResultRecord] = []
        try:
            if store is not None and store.run(run_id) is not None:
                candidates = store.records(run_id)
            elif reports_dir is not None and (reports_dir / run_id).is_dir():
                candidates = read_results(reports_dir / run_id)
        except EdgeLabError:
            continue
        for candidate in candidates:
            if candidate.status == "passed" and candidate.identity() in identities:
                found[candidate.identity()] = candidate
    return found


# -- the matrix ---------------------------------------------------------------------------------------


def short_test(test: str) -> str:
    """``suites/vision/test_vision.py::test_latency`` -> ``test_vision.py::test_latency``."""
    path, _, rest = test.partition("::")
    return f"{path.rsplit('/', 1)[-1]}::{rest}" if rest else test


def grid_test(record: ResultRecord) -> str:
    """The test without this variant's part of the parameter id: every variant of one test
    (with the same other parameters) lands in one grid."""
    return test_without_variant(record.test_id, record.model, record.runtime, record.precision)


def test_without_variant(test_id: str, model: str, runtime: str, precision: str) -> str:
    match = re.search(r"\[([^\]]*)\]", test_id)
    if match is None:
        return test_id
    rest = match.group(1).replace(f"{model}-{runtime}-{precision}", "", 1).strip("-").replace("--", "-")
    head = test_id[: match.start()]
    return f"{head}[{rest}]" if rest else head


def column_of(record: ResultRecord, with_threads: bool) -> str:
    threads = f" x{record.threads}" if with_threads and record.threads is not None else ""
    return f"{record.runtime}/{record.precision}{threads}"


def _column_order(column: str) -> tuple[str, int, str]:
    runtime, _, rest = column.partition("/")
    precision = rest.split(" ")[0]
    rank = PRECISION_ORDER.index(precision) if precision in PRECISION_ORDER else len(PRECISION_ORDER)
    return runtime, rank, rest


def _measured(record: ResultRecord, what: str) -> bool:
    if what == "energy":
        return record.energy is not None and record.energy.mj_per_inference is not None
    if what == "accuracy":
        return record.accuracy is not None
    if what == "rss":
        return record.peak_rss_mb is not None
    if what == "pss":
        return record.memory is not None and record.memory.pss_mb is not None
    raise ValueError(what)


def accuracy_drop(accuracy: AccuracyRecord) -> AccuracyDrop | None:
    """The clean slice against its fp32 reference; a 95% CI for proportion metrics."""
    clean = accuracy.slices.get("clean")
    if (
        clean is None
        or clean.fp32 is None
        or accuracy.metric not in clean.metrics
        or accuracy.metric not in clean.fp32
    ):
        return None
    value, reference = clean.metrics[accuracy.metric], clean.fp32[accuracy.metric]
    sign = -1 if accuracy.metric in LOWER_IS_BETTER else 1
    points = sign * (reference - value) * 100
    low = high = None
    if accuracy.metric in PROPORTION_METRICS and clean.samples > 0:
        drop = proportion_drop(
            round(reference * clean.samples), clean.samples, round(value * clean.samples), clean.samples
        )
        low, high = drop.ci_low_points, drop.ci_high_points
    return AccuracyDrop(accuracy.metric, value, reference, points, low, high)


def budget_state(record: ResultRecord) -> BudgetState:
    if not record.budgets:
        return "none"
    if any(check.ok is False for check in record.budgets):
        return "failed"
    if all(check.ok is True for check in record.budgets):
        return "ok"
    return "unjudged"


def matrices(report: RunReport) -> list[Grid]:
    """One grid per (device, test, kind), so a cell never mixes a latency run with an accuracy or
    sustained one; a cell is one result identity."""
    grouped: dict[tuple[str, str, str], list[ResultRecord]] = defaultdict(list)
    for record in report.records:
        grouped[(record.device, grid_test(record), record.kind)].append(record)
    grids = []
    for (device, test, kind), records in sorted(grouped.items()):
        with_threads = len({r.threads for r in records}) > 1
        grid = Grid(device, test, kind)
        for record in records:
            if record.model not in grid.models:
                grid.models.append(record.model)
            column = column_of(record, with_threads)
            if column not in grid.columns:
                grid.columns.append(column)
        grid.columns.sort(key=_column_order)
        for record in records:  # a rerun of the same identity: the last one
            column = column_of(record, with_threads)
            grid.cells[(record.model, column)] = Cell(
                record,
                report.anchor(record),
                None,
                accuracy_drop(record.accuracy) if record.accuracy is not None else None,
                budget_state(record),
            )
        _fill_speedups(grid)
        _mark_best(grid)
        grids.append(grid)
    return grids


def _eligible(cell: Cell) -> bool:
    if cell.budget == "failed":
        return False
    if cell.budget != "none" or cell.accuracy is None:
        return True
    return cell.accuracy.points <= UNBUDGETED_DROP_POINTS


def _fill_speedups(grid: Grid) -> None:
    for key, cell in list(grid.cells.items()):
        record = cell.record
        if record.median_ms is None or record.status != "passed":
            continue
        reference = next(
            (
                other.record
                for other in grid.cells.values()
                if other.record.model == record.model
                and other.record.runtime == record.runtime
                and other.record.threads == record.threads
                and other.record.precision == "fp32"
                and other.record.status == "passed"
                and other.record.median_ms
            ),
            None,
        )
        if reference is not None and reference.median_ms:
            speedup = reference.median_ms / record.median_ms
            grid.cells[key] = Cell(record, cell.anchor, speedup, cell.accuracy, cell.budget)


def _mark_best(grid: Grid) -> None:
    """Per row, the lowest median among the cells within their budgets. A cell that lost more
    than UNBUDGETED_DROP_POINTS of accuracy against fp32 is never the best when no budget says
    what the team accepts: a fast variant that is wrong is no candidate. The grid says the rule."""
    any_budgets = any(cell.budget != "none" for cell in grid.cells.values())
    any_accuracy = any(cell.accuracy is not None for cell in grid.cells.values())
    if any_budgets:
        grid.best_rule = (
            "★ fastest median among the cells within every budget of models.yaml (a budget not "
            "judged does not count against a cell)"
        )
    elif any_accuracy:
        grid.best_rule = (
            f"★ fastest median among the cells within {UNBUDGETED_DROP_POINTS:g} point of fp32's "
            "accuracy (no budgets in models.yaml for these models)"
        )
    else:
        grid.best_rule = "★ fastest median (no budgets in models.yaml for these models)"
    for model in grid.models:
        row = [
            (key, cell)
            for key, cell in grid.cells.items()
            if key[0] == model and cell.record.status == "passed" and cell.record.median_ms is not None
        ]
        eligible = [(key, cell) for key, cell in row if _eligible(cell)]
        if not eligible:
            continue
        key, cell = min(eligible, key=lambda pair: pair[1].record.median_ms or 0.0)
        grid.cells[key] = Cell(cell.record, cell.anchor, cell.speedup, cell.accuracy, cell.budget, True)


# -- Pareto fronts and slices -------------------------------------------------------------------------


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool) -> list[bool]:
    """For (latency, score) points: on the front when no other point is at least as fast and at
    least as good, and strictly better in one."""
    flags = []
    for index, (x, y) in enumerate(points):
        dominated = False
        for other, (ox, oy) in enumerate(points):
            if other == index:
                continue
            better_y = oy >= y if higher_is_better else oy <= y
            strictly = ox < x or (oy > y if higher_is_better else oy < y)
            if ox <= x and better_y and strictly:
                dominated = True
                break
        flags.append(not dominated)
    return flags


def _variant(record: ResultRecord, with_threads: bool = False) -> str:
    threads = f" x{record.threads}" if with_threads and record.threads is not None else ""
    return f"{record.runtime}/{record.precision}{threads}"


def accuracy_paretos(report: RunReport) -> list[Pareto]:
    """Clean accuracy vs median latency of the same evaluation pass, per device, test and model."""
    grouped: dict[tuple[str, str, str], list[ResultRecord]] = defaultdict(list)
    for record in report.records:
        if record.status == "passed" and record.accuracy is not None and record.median_ms is not None:
            grouped[(record.device, grid_test(record), record.model)].append(record)
    paretos = []
    for (device, test, model), records in sorted(grouped.items()):
        accuracy = records[0].accuracy
        assert accuracy is not None
        higher = accuracy.metric not in LOWER_IS_BETTER
        values = [(r.median_ms or 0.0, (r.accuracy.clean if r.accuracy else 0.0) * 100) for r in records]
        front = pareto_front(values, higher)
        points = tuple(
            ParetoPoint(_variant(r, len({o.threads for o in records}) > 1), report.anchor(r), x, y, on)
            for r, (x, y), on in zip(records, values, front, strict=True)
        )
        paretos.append(Pareto(device, model, test, f"clean {accuracy.metric} (%)", higher, points))
    return paretos


def energy_paretos(report: RunReport) -> list[Pareto]:
    """Energy per inference vs median latency where energy was measured, per device, test and model
    (both lower is better)."""
    grouped: dict[tuple[str, str, str], list[ResultRecord]] = defaultdict(list)
    for record in report.records:
        if record.status == "passed" and _measured(record, "energy") and record.median_ms is not None:
            grouped[(record.device, grid_test(record), record.model)].append(record)
    paretos = []
    for (device, test, model), records in sorted(grouped.items()):
        values = [
            (r.median_ms or 0.0, r.energy.mj_per_inference if r.energy and r.energy.mj_per_inference else 0.0)
            for r in records
        ]
        front = pareto_front(values, False)
        points = tuple(
            ParetoPoint(_variant(r, len({o.threads for o in records}) > 1), report.anchor(r), x, y, on)
            for r, (x, y), on in zip(records, values, front, strict=True)
        )
        paretos.append(Pareto(device, model, test, "energy per inference (mJ)", False, points))
    return paretos


def _slice_order(name: str) -> tuple[int, str, int]:
    if name == "clean":
        return 0, "", 0
    corruption, _, severity = name.partition("@")
    return 1, corruption, int(severity) if severity.isdigit() else 0


def slice_tables(report: RunReport) -> list[SliceTable]:
    grouped: dict[tuple[str, str, str], list[ResultRecord]] = defaultdict(list)
    for record in report.records:
        if record.accuracy is not None:
            grouped[(record.device, grid_test(record), record.model)].append(record)
    tables = []
    for (device, test, model), records in sorted(grouped.items()):
        threaded = len({r.threads for r in records}) > 1
        records.sort(key=lambda r: _column_order(_variant(r, threaded)))
        metric = records[0].accuracy.metric if records[0].accuracy else ""
        sign = -1 if metric in LOWER_IS_BETTER else 1
        columns = tuple(_variant(r, threaded) for r in records)
        rows: set[str] = set()
        cells: dict[tuple[str, str], SliceCell] = {}
        worst: dict[str, tuple[str, float]] = {}
        max_drop: dict[str, tuple[str, float] | None] = {}
        for column, record in zip(columns, records, strict=True):
            accuracy = record.accuracy
            assert accuracy is not None
            worst[column] = (accuracy.worst_slice.slice, accuracy.worst_slice.value * 100)
            largest = accuracy.max_drop_vs_fp32_points
            max_drop[column] = (largest.slice, largest.points) if largest is not None else None
            for name, part in accuracy.slices.items():
                if accuracy.metric not in part.metrics:
                    continue
                rows.add(name)
                value = part.metrics[accuracy.metric]
                reference = part.fp32.get(accuracy.metric) if part.fp32 is not None else None
                drop = sign * (reference - value) * 100 if reference is not None else None
                cells[(name, column)] = SliceCell(value * 100, drop, name == accuracy.worst_slice.slice)
        tables.append(
            SliceTable(
                device,
                model,
                test,
                metric,
                columns,
                tuple(report.anchor(r) for r in records),
                tuple(sorted(rows, key=_slice_order)),
                cells,
                worst,
                max_drop,
            )
        )
    return tables


# -- distributions ------------------------------------------------------------------------------------


def distribution(samples: Iterable[float] | None) -> dict[str, float] | None:
    """Box-plot statistics, precomputed so the page carries 8 numbers, not every sample."""
    values = np.asarray(list(samples or ()), dtype=np.float64)
    if values.size == 0:
        return None
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
