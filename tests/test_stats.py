"""Latency summaries against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from harness.stats import bootstrap_medians, compare, median_ci, proportion_drop, summarize_latency


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


# -- comparisons -----------------------------------------------------------------------------------


def lognormal(n: int, scale: float, cv: float, seed: int) -> np.ndarray:
    sigma = np.sqrt(np.log(1 + cv**2))
    return scale * np.random.default_rng(seed).lognormal(0.0, sigma, n)


def test_bootstrap_medians_match_brute_force_resampling():
    rng = np.random.default_rng(3)
    values = lognormal(101, 10.0, 0.1, seed=1)
    brute = np.median(values[rng.integers(0, 101, size=(20000, 101))], axis=1)
    fast = bootstrap_medians(values, 20000, np.random.default_rng(4))
    assert np.percentile(fast, [2.5, 50, 97.5]) == pytest.approx(
        np.percentile(brute, [2.5, 50, 97.5]), rel=2e-3
    )


def test_five_percent_slower_with_enough_samples_is_regressed_with_its_size():
    result = compare(lognormal(1000, 10.0, 0.05, seed=1), lognormal(1000, 10.5, 0.05, seed=2))
    assert result.verdict == "regressed"
    assert result.ratio == pytest.approx(1.05, abs=0.01)
    assert 1.03 < result.ci_low < result.ratio < result.ci_high < 1.08
    assert result.p_value < 1e-6 and (result.n_baseline, result.n_candidate) == (1000, 1000)


def test_faster_is_improved_and_same_is_unchanged():
    assert compare(lognormal(800, 10.0, 0.05, 1), lognormal(800, 9.0, 0.05, 2)).verdict == "improved"
    same = compare(lognormal(800, 10.0, 0.05, 1), lognormal(800, 10.0, 0.05, 2))
    assert same.verdict == "unchanged" and abs(same.change) < 0.01


def test_few_noisy_samples_are_inconclusive_not_a_verdict():
    result = compare(lognormal(20, 10.0, 0.3, 1), lognormal(20, 10.6, 0.3, 2))
    assert result.verdict == "inconclusive"


def test_changes_inside_the_noise_floor_are_never_regressions():
    result = compare(lognormal(5000, 10.0, 0.02, 1), lognormal(5000, 10.2, 0.02, 2))
    assert result.p_value < 1e-6  # clearly different...
    assert result.verdict == "unchanged"  # ...but within the 3% floor
    assert (
        compare(lognormal(5000, 10.0, 0.02, 1), lognormal(5000, 10.2, 0.02, 2), noise_floor=0.01).verdict
        == "regressed"
    )


def test_compare_is_deterministic_and_checks_its_input():
    a, b = lognormal(300, 10.0, 0.05, 1), lognormal(300, 10.4, 0.05, 2)
    assert compare(a, b) == compare(a, b)
    with pytest.raises(ValueError, match="at least 2"):
        compare([1.0], [1.0, 2.0])


def test_median_ci_and_accuracy_drop():
    ci = median_ci(list(range(1, 101)))
    assert ci.median == 50.5 and ci.low < 50.5 < ci.high and (ci.low, ci.high) == (40.0, 61.0)
    drop = proportion_drop(95, 100, 90, 100)
    assert drop.drop_points == pytest.approx(5.0)
    assert drop.ci_low_points == pytest.approx(
        5.0 - 1.959964 * np.sqrt(0.95 * 0.05 / 100 + 0.9 * 0.1 / 100) * 100
    )
