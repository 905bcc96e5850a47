"""The product's budgets (models.yaml ``budgets:``) checked against one result record.

Each budget is judged on the measurement that measures it: latency p90, peak RSS and energy on
latency, interleaved and sustained runs; the accuracy drop on ``edge.evaluate()``. What a record did
not measure is listed with ``value`` None and the reason. The call is made on the measured value;
the evidence gives its uncertainty (an order-statistics CI of p90, the energy's uncertainty, a
binomial CI of an accuracy drop) so a reader sees how close the call was.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.record import BudgetCheck, ResultRecord
from harness.record import BudgetMetric as Metric
from harness.stats import proportion_drop, quantile_ci

PROPORTION_METRICS = frozenset({"top1", "top5", "exact_match", "accuracy"})
_PERFORMANCE_KINDS = ("latency", "interleaved", "sustained")


def _where(block: str) -> str:
    return "budget" if block == "default" else f"budget for tag '{block}'"


def _judged(metric: Metric, limit: float, value: float, block: str, *, what: str, unit: str) -> BudgetCheck:
    """A measured ``value`` against ``limit``; ``what`` is the value with its evidence."""
    verb = "within" if value <= limit else "over"
    return BudgetCheck(
        metric=metric,
        limit=limit,
        value=value,
        ok=value <= limit,
        evidence=f"{what} {verb} the {_where(block)} of {limit:g} {unit}",
    )


def _unjudged(metric: Metric, limit: float, why: str) -> BudgetCheck:
    return BudgetCheck(metric=metric, limit=limit, value=None, ok=None, evidence=why)


def _latency(record: ResultRecord, limit: float, block: str) -> BudgetCheck:
    metric: Metric = "latency_p90_ms"
    if record.kind not in _PERFORMANCE_KINDS:
        why = f"not judged: a {record.kind} pass runs each sample once, not the latency protocol"
        return _unjudged(metric, limit, why)
    if record.latency_ms is None:
        return _unjudged(metric, limit, "not measured")
    value = record.latency_ms.p90
    interval = quantile_ci(record.latency_samples_ms, 0.9) if record.latency_samples_ms else None
    spread = (
        f"95% CI {interval[0]:.4g}-{interval[1]:.4g} ms"
        if interval
        else "no CI: too few per-iteration samples"
    )
    what = f"latency p90 {value:.4g} ms ({spread}, n={record.latency_ms.samples})"
    return _judged(metric, limit, value, block, what=what, unit="ms")


def _memory(record: ResultRecord, limit: float, block: str) -> BudgetCheck:
    metric: Metric = "peak_rss_mb"
    if record.kind not in _PERFORMANCE_KINDS:
        why = f"not judged: a {record.kind} pass holds the whole evaluation set in memory"
        return _unjudged(metric, limit, why)
    value = record.peak_rss_mb
    if value is None:
        return _unjudged(metric, limit, "not measured")
    what = f"peak RSS {value:.4g} MB (one reading of VmHWM)"
    return _judged(metric, limit, value, block, what=what, unit="MB")


def _energy(record: ResultRecord, limit: float, block: str) -> BudgetCheck:
    metric: Metric = "energy_mj_per_inference"
    energy = record.energy
    if record.kind not in _PERFORMANCE_KINDS:
        return _unjudged(metric, limit, f"not judged: a {record.kind} pass does not sample energy")
    if energy is None:
        return _unjudged(metric, limit, "not measured: no energy source on this device (or --energy none)")
    if energy.mj_per_inference is None:
        return _unjudged(metric, limit, f"not measured: {energy.status}")
    value = energy.mj_per_inference
    uncertainty = energy.uncertainty_mj_per_inference
    spread = f" +- {uncertainty:.3g}" if uncertainty is not None else ""
    what = f"energy {value:.4g}{spread} mJ/inference ({energy.source})"
    return _judged(metric, limit, value, block, what=what, unit="mJ")


def _accuracy(record: ResultRecord, limit: float, block: str) -> BudgetCheck:
    metric: Metric = "accuracy_drop_points"
    accuracy = record.accuracy
    if record.kind != "accuracy" or accuracy is None:
        return _unjudged(metric, limit, "not judged here: measured by edge.evaluate()")
    drop = accuracy.max_drop_vs_fp32_points
    if drop is None:
        return _unjudged(metric, limit, f"not measured: {accuracy.fp32_missing or 'no fp32 reference'}")
    spread = "no CI: the metric is not a share of samples"
    part = accuracy.slices.get(drop.slice)
    if accuracy.metric in PROPORTION_METRICS and part is not None and part.fp32 is not None:
        n = part.samples
        interval = proportion_drop(
            round(part.fp32[accuracy.metric] * n), n, round(part.metrics[accuracy.metric] * n), n
        )
        spread = f"95% CI {interval.ci_low_points:.3g} to {interval.ci_high_points:.3g} points, n={n}"
    what = f"{accuracy.metric} drop vs fp32 {drop.points:.3g} points on {drop.slice} ({spread})"
    return _judged(metric, limit, drop.points, block, what=what, unit="points")


_CHECKS = {
    "latency_p90_ms": _latency,
    "peak_rss_mb": _memory,
    "energy_mj_per_inference": _energy,
    "accuracy_drop_points": _accuracy,
}


def check(record: ResultRecord, limits: Mapping[str, tuple[float, str]]) -> tuple[BudgetCheck, ...]:
    """Every budget in ``limits`` (metric -> (limit, block it came from)) against ``record``."""
    return tuple(_CHECKS[metric](record, limit, block) for metric, (limit, block) in limits.items())


def misses(checks: tuple[BudgetCheck, ...]) -> str | None:
    """The evidence of every missed budget, or None when none was missed."""
    missed = [budget.evidence for budget in checks if budget.ok is False]
    return "; ".join(missed) if missed else None
