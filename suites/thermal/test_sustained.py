"""Sustained load: run one model back to back and record the latency curve with the thermal
state (zones and cpufreq ceilings, sampled on the device), time to first throttle and the
steady-state / initial latency ratio. Duration: --sustained-s (default 40 s)."""

from __future__ import annotations

import pytest

# How much slower a product may get under sustained load before it is a regression to look at.
STEADY_OVER_INITIAL_BUDGET = 2.5


@pytest.mark.edge(model="ppocr_det", precisions=["fp32"])
def test_sustained_latency(edge):
    run = edge.sustained(window_s=2.0)
    curve, verdict = run.curve, run.throttle
    assert len(curve.points) >= 2
    assert sum(point.samples for point in curve.points) == run.result.latency_ms.samples
    if verdict.throttled:
        assert verdict.reasons
    if verdict.first_throttle_s is not None:
        assert verdict.first_throttle_s == curve.time_to_first_throttle_s
    if curve.steady_over_initial is not None:
        assert curve.steady_over_initial <= STEADY_OVER_INITIAL_BUDGET, verdict.reasons
