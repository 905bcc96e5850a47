"""Results as pandas DataFrames: one row per result with flat columns, and the latency samples in
long form, from the results database or the run folders' results.json (what a notebook reads).

Read-only: nothing here measures or judges; verdicts are the ones the records carry. Columns that
were not measured are missing values (pandas NA), never 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from harness.errors import ConfigError
from harness.record import ResultRecord, RunInfo
from harness.store.db import ResultsStore, resolve_url
from harness.store.results_json import RESULTS_FILE, ResultsFile

IDENTITY = ["test_id", "device", "model", "runtime", "precision", "threads", "kind"]

# Column -> pandas dtype. Nullable dtypes keep "not measured" apart from a measured 0.
COLUMNS: dict[str, str] = {
    "run_id": "string",
    "run_started_at": "datetime",
    "git_branch": "string",
    "git_commit": "string",
    "test": "string",
    "test_id": "string",
    "device": "string",
    "model": "string",
    "runtime": "string",
    "precision": "string",
    "threads": "Int64",
    "kind": "string",
    "status": "string",
    "error": "string",
    "finished_at": "datetime",
    "duration_s": "Float64",
    "device_kind": "string",
    "virtual": "boolean",
    "runner": "string",
    "runtime_version": "string",
    "model_sha256": "string",
    "latency_samples": "Int64",
    "latency_median_ms": "Float64",
    "latency_median_ci_low_ms": "Float64",
    "latency_median_ci_high_ms": "Float64",
    "latency_p90_ms": "Float64",
    "latency_p99_ms": "Float64",
    "latency_mean_ms": "Float64",
    "latency_std_ms": "Float64",
    "latency_cv": "Float64",
    "latency_min_ms": "Float64",
    "latency_max_ms": "Float64",
    "load_ms": "Float64",
    "first_inference_ms": "Float64",
    "latency_bimodal": "boolean",
    "speed_reference_ms": "Float64",
    "peak_rss_mb": "Float64",
    "load_peak_rss_mb": "Float64",
    "pss_mb": "Float64",
    "energy_mj_per_inference": "Float64",
    "energy_uncertainty_mj": "Float64",
    "energy_source": "string",
    "throttled": "boolean",
    "drifted": "boolean",
    "throttle_reasons": "string",
    "accuracy_metric": "string",
    "accuracy_clean": "Float64",
    "accuracy_worst_slice": "string",
    "accuracy_worst": "Float64",
    "accuracy_max_drop_points": "Float64",
    "accuracy_max_drop_slice": "string",
    "budgets_ok": "boolean",
    "verdict": "string",
    "baseline_run": "string",
    "latency_verdict": "string",
    "latency_change": "Float64",
    "latency_change_ci_low": "Float64",
    "latency_change_ci_high": "Float64",
    "peak_rss_verdict": "string",
    "energy_verdict": "string",
}

SAMPLE_COLUMNS: dict[str, str] = {
    "run_id": "string",
    "run_started_at": "datetime",
    **{name: COLUMNS[name] for name in IDENTITY},
    "iteration": "Int64",
    "latency_ms": "Float64",
    "start_offset_ms": "Float64",
}

ExportFormat = Literal["csv", "parquet", "json"]


@dataclass(frozen=True)
class LoadedRun:
    run: RunInfo
    records: list[ResultRecord]


def _budgets_ok(record: ResultRecord) -> bool | None:
    """False when any budget failed, True when all were judged and held, None when none was judged."""
    judged = [check.ok for check in record.budgets if check.ok is not None]
    if any(ok is False for ok in judged):
        return False
    return True if judged else None


def row(run: RunInfo, record: ResultRecord) -> dict[str, Any]:
    """One result as flat columns (see COLUMNS)."""
    latency, memory, energy, throttle = record.latency_ms, record.memory, record.energy, record.throttle
    accuracy, comparison = record.accuracy, record.comparison
    metrics = {m.metric: m for m in comparison.metrics} if comparison is not None else {}
    latency_metric = metrics.get("latency_median_ms")
    values: dict[str, Any] = {
        "run_id": record.run_id,
        "run_started_at": run.started_at,
        "git_branch": record.run.git_branch,
        "git_commit": record.run.git_commit,
        "test": record.test,
        "test_id": record.test_id,
        "device": record.device,
        "model": record.model,
        "runtime": record.runtime,
        "precision": record.precision,
        "threads": record.threads,
        "kind": record.kind,
        "status": record.status,
        "error": record.error,
        "finished_at": record.finished_at,
        "duration_s": record.duration_s,
        "device_kind": record.device_kind,
        "virtual": record.virtual,
        "runner": record.runner,
        "runtime_version": record.runtime_version,
        "model_sha256": record.model_sha256,
        "load_ms": record.load_ms,
        "first_inference_ms": record.first_inference_ms,
        "budgets_ok": _budgets_ok(record),
        "latency_bimodal": record.modes.bimodal if record.modes is not None else None,
        "speed_reference_ms": None if record.speed_reference is None else record.speed_reference.median_ms,
    }
    if latency is not None:
        values |= {
            "latency_samples": latency.samples,
            "latency_median_ms": latency.median,
            "latency_median_ci_low_ms": latency.median_ci_low,
            "latency_median_ci_high_ms": latency.median_ci_high,
            "latency_p90_ms": latency.p90,
            "latency_p99_ms": latency.p99,
            "latency_mean_ms": latency.mean,
            "latency_std_ms": latency.std,
            "latency_cv": latency.cv,
            "latency_min_ms": latency.min,
            "latency_max_ms": latency.max,
        }
    if memory is not None:
        values |= {
            "peak_rss_mb": memory.peak_rss_mb,
            "load_peak_rss_mb": memory.load_peak_mb,
            "pss_mb": memory.pss_mb,
        }
    if energy is not None:
        values |= {
            "energy_mj_per_inference": energy.mj_per_inference,
            "energy_uncertainty_mj": energy.uncertainty_mj_per_inference,
            "energy_source": energy.source,
        }
    if throttle is not None:
        values |= {
            "throttled": throttle.throttled,
            "drifted": throttle.drifted,
            "throttle_reasons": "; ".join(throttle.reasons) or None,
        }
    if accuracy is not None:
        largest = accuracy.max_drop_vs_fp32_points  # None: no fp32 variant to compare with
        values |= {
            "accuracy_metric": accuracy.metric,
            "accuracy_clean": accuracy.clean,
            "accuracy_worst_slice": accuracy.worst_slice.slice,
            "accuracy_worst": accuracy.worst_slice.value,
            "accuracy_max_drop_points": largest.points if largest is not None else None,
            "accuracy_max_drop_slice": largest.slice if largest is not None else None,
        }
    if comparison is not None:
        values |= {
            "verdict": str(comparison.verdict),
            "baseline_run": comparison.baseline_run,
            "peak_rss_verdict": _verdict_of(metrics.get("peak_rss_mb")),
            "energy_verdict": _verdict_of(metrics.get("energy_mj_per_inference")),
        }
        if latency_metric is not None:
            values |= {
                "latency_verdict": str(latency_metric.verdict),
                "latency_change": latency_metric.ratio - 1,
                "latency_change_ci_low": None if latency_metric.ci_low is None else latency_metric.ci_low - 1,
                "latency_change_ci_high": None
                if latency_metric.ci_high is None
                else latency_metric.ci_high - 1,
            }
    return values


def _verdict_of(metric: Any) -> str | None:
    return None if metric is None else str(metric.verdict)


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    for name, dtype in columns.items():
        if dtype == "datetime":  # UTC timestamps (pandas picks the resolution)
            frame[name] = pd.to_datetime(frame[name], utc=True, errors="coerce", format="ISO8601")
        else:
            frame[name] = frame[name].astype(dtype)  # type: ignore[call-overload]
    return frame


# -- where runs come from ---------------------------------------------------------------------------


def iter_runs(
    reports_dir: Path | str = "reports",
    results_db: str | None = None,
    *,
    last: int | None = None,
    branch: str | None = None,
    with_samples: bool = False,
) -> Iterator[LoadedRun]:
    """The newest ``last`` runs (of ``branch``), oldest first: from the results database when there
    is one (``results_db``, $EDGELAB_RESULTS_DB, or reports/results.db), else from the run folders."""
    if last is not None and last < 1:
        raise ConfigError(f"last={last}: give a positive number of runs, or None for every run")
    folder = Path(reports_dir)
    url = resolve_url(results_db, folder)
    database = url is not None and not (
        url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists()
    )
    if results_db not in (None, "none") and not database:
        raise ConfigError(f"results_db={results_db}: no such database file; give an existing one or None")
    if database:
        assert url is not None
        store = ResultsStore(url)
        try:
            for stored in reversed(store.runs(branch=branch, limit=last)):
                info = store.run_info(stored.id) or RunInfo(id=stored.id, started_at=stored.started_at or "")
                yield LoadedRun(info, store.records(stored.id, with_samples=with_samples))
        finally:
            store.close()
        return
    if not folder.is_dir():
        raise ConfigError(f"reports_dir={folder}: no such folder (run the suites, or pass reports_dir=...)")
    files = []
    for path in folder.glob(f"*/{RESULTS_FILE}"):
        file = ResultsFile(folder, path.parent.name)
        info = file.run()
        if branch is None or info.git_branch == branch:
            files.append((info, file))
    files.sort(key=lambda pair: (pair[0].started_at, pair[0].id))
    for info, file in files[-last:] if last else files:
        yield LoadedRun(info, file.records())


def load(
    reports_dir: Path | str = "reports",
    results_db: str | None = None,
    *,
    last: int | None = None,
    branch: str | None = None,
) -> pd.DataFrame:
    """One row per result of the newest ``last`` runs (of ``branch``), oldest run first; the
    columns are COLUMNS (identity, latency statistics, memory, energy, throttling, accuracy,
    budgets, verdicts)."""
    rows = [
        row(loaded.run, record)
        for loaded in iter_runs(reports_dir, results_db, last=last, branch=branch)
        for record in loaded.records
    ]
    return _frame(rows, COLUMNS)


def latency_samples(
    reports_dir: Path | str = "reports",
    results_db: str | None = None,
    *,
    last: int | None = None,
    branch: str | None = None,
) -> pd.DataFrame:
    """Every timed iteration in long form: run, identity, iteration, latency_ms, start_offset_ms
    (missing when the runner gave no per-iteration start)."""
    rows = []
    for loaded in iter_runs(reports_dir, results_db, last=last, branch=branch, with_samples=True):
        for record in loaded.records:
            values = record.latency_samples_ms or ()
            offsets = record.start_offsets_ms or ()
            base = {"run_id": record.run_id, "run_started_at": loaded.run.started_at}
            base |= {name: getattr(record, name) for name in IDENTITY}
            for index, value in enumerate(values):
                offset = offsets[index] if index < len(offsets) else None
                rows.append(base | {"iteration": index, "latency_ms": value, "start_offset_ms": offset})
    return _frame(rows, SAMPLE_COLUMNS)


def export(frame: pd.DataFrame, format: ExportFormat, path: Path | None) -> str | None:
    """Write ``frame`` as CSV, Parquet or JSON (records) to ``path``; CSV and JSON are returned as
    text when ``path`` is None. Parquet needs pyarrow (``pip install 'edgelab[parquet]'``)."""
    if format == "parquet":
        if path is None:
            raise ConfigError("--format parquet writes a binary file: give --output PATH")
        try:
            import pyarrow  # noqa: F401
        except ModuleNotFoundError:
            raise ConfigError(
                "--format parquet needs pyarrow: pip install 'edgelab[parquet]' (or use csv or json)"
            ) from None
        frame.to_parquet(path, index=False)
        return None
    if format == "csv":
        text = frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    elif format == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=1) or "[]"
    else:
        raise ConfigError(f"--format {format}: choose csv, parquet or json")
    if path is None:
        return text
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return None
