"""Latency summaries against values computed by hand."""

from __future__ import annotations

import pytest

from harness.stats import summarize_latency


def test_summary_of_known_samples():
    samples_ns = [i * 1_000_000 for i in range(1, 101)]  # 1..100 ms
    summary = summarize_latency(samples_ns)
    assert summary.samples == 100
    assert summary.median == pytest.approx(50.5)
    assert summary.p90 == pytest.approx(90.1)
    assert summary.p99 == pytest.approx(99.01)
    assert summary.mean == pytest.approx(50.5)
    assert summary.std == pytest.approx(29.011491975882016)
    assert summary.cv == pytest.approx(29.011491975882016 / 50.5)
    assert (summary.min, summary.max) == (1.0, 100.0)


def test_single_sample_has_zero_spread():
    summary = summarize_latency([2_500_000])
    assert (summary.median, summary.std, summary.cv, summary.samples) == (2.5, 0.0, 0.0, 1)


def test_no_samples_is_an_error():
    with pytest.raises(ValueError, match="no latency samples"):
        summarize_latency([])
