"""Accuracy on real edge-case data, per corruption x severity, for every precision of each model
that has an evaluation task, on every selected device; with the drop against the host's fp32.

Budgets are product decisions: a variant that loses more than ACCURACY_BUDGET_POINTS on clean
inputs against fp32 is reported as not shippable (a warning in the run, the numbers in the
results and the HTML report) rather than failing the whole suite.
"""

from __future__ import annotations

import warnings

import pytest

ACCURACY_BUDGET_POINTS = 5.0


class NotShippable(UserWarning):
    """A variant's accuracy drop against fp32 exceeds the budget."""


@pytest.mark.edge(model=["ppocr_rec", "ppocr_cls", "ppocr_det", "silero_vad", "face_detection"])
def test_accuracy_per_slice(edge):
    report = edge.evaluate()
    assert report.slices["clean"].samples > 0
    assert len(report.slices) >= 1 + 5 * 3  # clean + 5 corruptions x 3 severities
    if edge.precision == "fp32":
        # the device's fp32 is the host's fp32: same runtime, same inputs
        assert report.max_drop_vs_fp32()[1] == pytest.approx(0.0, abs=1e-9)
        assert report.slices["clean"].agreement >= 0.99
    worst = report.max_drop_vs_fp32()
    clean_drop = report.drop_vs_fp32("clean")
    if worst is None:  # shipped in this precision only (face_detection: fp16): nothing to drop from
        assert report.fp32_missing and report.slices["clean"].fp32 is None
    elif clean_drop is not None and clean_drop > ACCURACY_BUDGET_POINTS:
        worst_slice, drop = worst
        warnings.warn(
            NotShippable(
                f"{edge.device} {edge.variant.id}: {report.metric} on clean inputs "
                f"{report.value():.3f} vs fp32 {report.slices['clean'].fp32[report.metric]:.3f} "
                f"(-{clean_drop:.1f} points; worst slice {worst_slice}: -{drop:.1f})"
            ),
            stacklevel=1,
        )
    assert edge.result is not None  # the same pass gives latency on the real inputs
    assert edge.result.latency_ms.samples == sum(s.samples for s in report.slices.values())
