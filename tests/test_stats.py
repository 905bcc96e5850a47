"""Latency summaries against values computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.stats import (
    bootstrap_medians,
    compare,
    detect_modes,
    median_ci,
    proportion_drop,
    summarize_latency,
)


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


# -- two modes in one run ----------------------------------------------------------------------------


def tailed_lognormal(n: int, cv: float, seed: int) -> np.ndarray:
    """Latencies in ns around 2 ms with the ordinary right tail, and 1% of outliers 3x slower."""
    rng = np.random.default_rng(seed)
    values = lognormal(n, 2e6, cv, seed)
    values[rng.random(n) < 0.01] *= 3.0
    return values


def two_modes(n: int, fast_share: float, cv: float, seed: int) -> np.ndarray:
    fast = round(n * fast_share)
    values = np.concatenate([lognormal(fast, 2.0e6, cv, seed), lognormal(n - fast, 3.9e6, cv, seed + 1)])
    return np.random.default_rng(seed).permutation(values)


@pytest.mark.parametrize("n", [30, 50, 200, 2000])
def test_a_unimodal_lognormal_with_a_slow_tail_is_one_mode(n):
    flagged = [seed for seed in range(200) if detect_modes(tailed_lognormal(n, 0.3, seed)).bimodal]
    assert len(flagged) <= (2 if n == 30 else 0)  # 0.2% of runs at n = 30 (calibration)
    check = detect_modes(tailed_lognormal(n, 0.3, 7))
    assert check.bimodal is False and check.reason.startswith("one mode")
    assert check.separation is not None and check.separation < 5


@pytest.mark.parametrize("fast_share", [0.5, 0.8, 0.2])
@pytest.mark.parametrize("n", [30, 50, 500])
def test_two_modes_of_2_and_3_9_ms_are_flagged_with_their_centres_and_shares(n, fast_share):
    for seed in range(20):
        check = detect_modes(two_modes(n, fast_share, 0.03, seed))
        assert check.bimodal is True and check.reason.startswith("two modes")
        fast, slow = check.modes
        assert fast.centre_ms == pytest.approx(2.0, rel=0.05)
        assert slow.centre_ms == pytest.approx(3.9, rel=0.05)
        assert fast.share == pytest.approx(round(n * fast_share) / n)
        assert fast.samples + slow.samples == n
        assert check.ratio == pytest.approx(1.95, rel=0.06)
        assert check.separation is not None and check.separation > 10


def test_too_few_samples_are_not_judged_and_say_why():
    check = detect_modes(two_modes(29, 0.5, 0.03, 1))
    assert (check.bimodal, check.modes, check.separation) == (None, (), None)
    assert check.reason == "29 samples; the modes check needs at least 30"


def test_close_or_tiny_clusters_are_not_a_second_mode():
    # two tight clusters 2% apart: separated, but one mode for a comparison with a 3% floor
    close = np.concatenate([np.full(50, 2.00e6), np.full(50, 2.04e6)])
    check = detect_modes(close)
    assert check.bimodal is False and check.ratio == pytest.approx(1.02) and check.separation > 5
    # 5 slow iterations of 100 (a GC pause, a page fault) are below the 10% share of a mode
    tiny = np.concatenate([lognormal(95, 2e6, 0.03, 1), lognormal(5, 6e6, 0.03, 2)])
    assert detect_modes(tiny).bimodal is False


def test_identical_timings_of_a_coarse_clock_stay_finite():
    check = detect_modes(np.concatenate([np.full(40, 1e6), np.full(40, 2e6)]))
    assert check.bimodal is True and check.separation is not None and np.isfinite(check.separation)
    assert detect_modes(np.full(40, 1e6)).bimodal is False


def test_the_modes_check_refuses_non_positive_samples():
    with pytest.raises(ValueError, match="finite and positive"):
        detect_modes([1e6] * 40 + [0])


REAL = Path(__file__).resolve().parent / "fixtures" / "real-outputs" / "agent_latencies"


def real_run(name: str) -> dict:
    return json.loads((REAL / f"{name}.json").read_text())


def test_a_real_run_whose_core_was_taken_midway_has_two_modes():
    run = real_run("hand_landmark_onnx_core_taken_midrun")
    check = detect_modes(run["latencies_ns"])
    assert check.bimodal is True and len(run["latencies_ns"]) == 333
    fast, slow = check.modes
    assert fast.centre_ms == pytest.approx(7.93, abs=0.01) and slow.centre_ms == pytest.approx(20.84, abs=0.01)
    assert fast.share == pytest.approx(0.66, abs=0.01) and check.separation is not None and check.separation > 5
    # the slow mode is the part of the run after the busy loop took the core
    late = [ns for ns, offset in zip(run["latencies_ns"], run["start_offsets_ns"], strict=True) if offset > 2.2e9]
    assert min(late) / 1e6 > fast.centre_ms * 1.3


def test_a_real_run_on_a_loaded_host_with_its_right_tail_is_one_mode():
    run = real_run("hand_landmark_onnx_one_core")
    check = detect_modes(run["latencies_ns"])
    assert check.bimodal is False and len(run["latencies_ns"]) == 483
    assert check.separation is not None and check.separation < 3
    assert check.modes[0].centre_ms == pytest.approx(8.16, abs=0.01)
