"""The product's budgets against result records: each judged on the measurement that measures it,
what was not measured said so, and the evidence carrying the value, the budget and its spread."""

from __future__ import annotations

import pytest

from harness import budgets
from harness.record import AccuracyRecord, SliceDrop, SliceRecord, SliceValue
from harness.stats import quantile_ci
from tests.factories import energy, make_record


def accuracy_record(fp32: float | None, value: float, samples: int = 200, metric: str = "top1") -> AccuracyRecord:
    return AccuracyRecord(
        task="npz data/val.npz",
        metric=metric,
        precision="int8-static",
        clean=value,
        worst_slice=SliceValue(slice="clean", value=value),
        max_drop_vs_fp32_points=SliceDrop(slice="clean", points=(fp32 - value) * 100) if fp32 is not None else None,
        slices={
            "clean": SliceRecord(
                samples=samples,
                metrics={metric: value},
                fp32={metric: fp32} if fp32 is not None else None,
                agreement=0.9 if fp32 is not None else None,
            )
        },
        fp32_missing=None if fp32 is not None else "ships int8",
    )


def test_a_latency_run_is_judged_on_p90_with_its_order_statistics_ci():
    record = make_record(median_ms=10.0, energy=energy(4.0, uncertainty=0.3))
    limits = {
        "latency_p90_ms": (5.0, "phone"),
        "peak_rss_mb": (150.0, "default"),
        "energy_mj_per_inference": (3.0, "default"),
        "accuracy_drop_points": (1.0, "default"),
    }
    latency, memory, power, accuracy = budgets.check(record, limits)
    low, high = quantile_ci(record.latency_samples_ms, 0.9)
    assert low <= record.latency_ms.p90 <= high
    assert (latency.value, latency.ok) == (record.latency_ms.p90, False)
    assert latency.evidence == (
        f"latency p90 {record.latency_ms.p90:.4g} ms (95% CI {low:.4g}-{high:.4g} ms, n=400) over the budget for tag "
        "'phone' of 5 ms"
    )
    assert (memory.value, memory.ok) == (100.0, True) and "within the budget of 150 MB" in memory.evidence
    assert (power.value, power.ok) == (4.0, False) and power.evidence.startswith("energy 4 +- 0.3 mJ/inference (odpm) over")
    assert (accuracy.value, accuracy.ok) == (None, None)
    assert accuracy.evidence == "not judged here: measured by edge.evaluate()"
    assert budgets.misses((latency, memory, power, accuracy)) == f"{latency.evidence}; {power.evidence}"


def test_an_accuracy_run_is_judged_on_its_drop_with_a_binomial_ci_and_not_on_latency():
    record = make_record(kind="accuracy", accuracy=accuracy_record(0.90, 0.85))
    latency, drop = budgets.check(record, {"latency_p90_ms": (1.0, "default"), "accuracy_drop_points": (2.0, "default")})
    assert (latency.value, latency.ok) == (None, None)
    assert latency.evidence == "not judged: a accuracy pass runs each sample once, not the latency protocol"
    assert drop.value == pytest.approx(5.0) and drop.ok is False
    assert drop.evidence.startswith("top1 drop vs fp32 5 points on clean (95% CI ")
    assert drop.evidence.endswith("points, n=200) over the budget of 2 points")


def test_what_was_not_measured_is_none_with_the_reason():
    no_fp32 = make_record(kind="accuracy", accuracy=accuracy_record(None, 0.8))
    (drop,) = budgets.check(no_fp32, {"accuracy_drop_points": (1.0, "default")})
    assert (drop.value, drop.ok, drop.evidence) == (None, None, "not measured: ships int8")
    silent = make_record(median_ms=1.0)  # no energy source on the device
    (power,) = budgets.check(silent, {"energy_mj_per_inference": (1.0, "default")})
    assert power.ok is None and power.evidence.startswith("not measured: no energy source")
    custom = make_record(kind="accuracy", accuracy=accuracy_record(0.5, 0.49, metric="m:f"))
    (drop,) = budgets.check(custom, {"accuracy_drop_points": (5.0, "default")})
    assert drop.ok is True and "no CI: the metric is not a share of samples" in drop.evidence
    assert budgets.misses((drop,)) is None
