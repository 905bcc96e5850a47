"""Summaries of latency samples and comparisons of a candidate run with a baseline.

All inputs are raw per-iteration samples; nothing here knows about devices or pytest.

A comparison is a ratio of medians (candidate / baseline) with a bootstrap confidence interval,
a Mann-Whitney U test, and a noise floor: run-to-run drift of a device is larger than the
sampling error inside one run, so a change smaller than the floor is never called a regression.
Verdicts: ``regressed`` / ``improved`` (CI entirely beyond the floor and p < alpha),
``unchanged`` (CI entirely inside the floor), else ``inconclusive`` (collect more samples).
The calibration of these defaults is in benchmarks/stats_calibration.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class Verdict(StrEnum):
    """The outcome of comparing a result with its baseline (worst first)."""

    REGRESSED = "regressed"
    INCONCLUSIVE = "inconclusive"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    NEW = "new"

    @property
    def rank(self) -> int:
        return list(Verdict).index(self)


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    """The worst of several verdicts (regressed first); unchanged for none."""
    return min(verdicts, key=lambda verdict: verdict.rank) if verdicts else Verdict.UNCHANGED


@dataclass(frozen=True)
class LatencySummary:
    """Latency of one measured run, in milliseconds."""

    median: float
    p90: float
    p99: float
    mean: float
    std: float
    cv: float
    min: float
    max: float
    samples: int
    median_ci_low: float | None = None  # 95% distribution-free CI of the median (order statistics)
    median_ci_high: float | None = None


def summarize_latency(samples_ns: Sequence[int]) -> LatencySummary:
    """Median and tail percentiles (linear interpolation), sample std (ddof=1) and CV = std/mean."""
    if len(samples_ns) == 0:
        raise ValueError("no latency samples to summarize")
    values = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    ci = median_ci(values) if values.size >= 2 else None
    return LatencySummary(
        median=float(p50),
        p90=float(p90),
        p99=float(p99),
        mean=mean,
        std=std,
        cv=std / mean if mean > 0 else 0.0,
        min=float(values.min()),
        max=float(values.max()),
        samples=int(values.size),
        median_ci_low=ci.low if ci else None,
        median_ci_high=ci.high if ci else None,
    )


# -- two modes in one run ----------------------------------------------------------------------------
#
# A thread pool whose worker parks on a busy core, or flips between two placements, gives a run
# whose iterations fall into two clusters; its median is then whichever cluster holds more than
# half, and it jumps between runs. The check splits the log latencies in two where the groups
# are best separated (1-D two-means, exact over the sorted samples, each group at least
# MODES_MIN_SHARE of the run) and calls the run bimodal when the groups are far apart relative to
# their own spread (Ashman's D in log space) and their centres differ by a meaningful ratio.
# Calibration (tests/test_stats.py): a unimodal lognormal with CV 30% and a 1% tail 3x slower
# splits at D ~ 2.5 (n >= 200), 2.65 (n = 50); above 5 in 0.2% of runs at n = 30 and none of
# 3000 at n >= 50. Two modes 2.0 and 3.9 ms with 3-8% CV each reach D > 11 at n = 30.

MODES_MIN_SAMPLES = 30
MODES_MIN_SHARE = 0.10  # a smaller cluster (a 1% tail of outliers) moves the median too little
MODES_MIN_SEPARATION = 5.0  # Ashman's D; a unimodal distribution split in two gives <= 3.5
MODES_MIN_RATIO = 1.05  # closer centres are one mode for a comparison with a 3-5% floor


@dataclass(frozen=True)
class Mode:
    """One cluster of a run's iterations."""

    centre_ms: float  # median of the cluster
    share: float  # fraction of the run's iterations in it
    samples: int


@dataclass(frozen=True)
class ModesCheck:
    """Whether a run's iterations fall into two separated modes, with the split as evidence.

    ``bimodal`` is None when the run has too few samples to judge (``reason`` says why); the
    ``modes`` (fast first), ``separation`` and ``ratio`` describe the best split either way."""

    bimodal: bool | None
    reason: str
    modes: tuple[Mode, ...] = ()
    separation: float | None = None  # Ashman's D of the two groups' log latencies
    ratio: float | None = None  # slow centre / fast centre


def detect_modes(
    samples_ns: Sequence[int] | Sequence[float] | np.ndarray,
    *,
    min_samples: int = MODES_MIN_SAMPLES,
    min_share: float = MODES_MIN_SHARE,
    min_separation: float = MODES_MIN_SEPARATION,
    min_ratio: float = MODES_MIN_RATIO,
) -> ModesCheck:
    """Tell whether per-iteration latencies (ns) fall into two separated modes.

    Log space makes the ordinary right tail of latencies (lognormal-like) symmetric, so the
    tail alone never looks like a second mode; the minimum share keeps a handful of outliers
    from being one."""
    values = np.asarray(samples_ns, dtype=np.float64)
    if values.size < min_samples:
        return ModesCheck(None, f"{values.size} samples; the modes check needs at least {min_samples}")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError("latency samples must be finite and positive")
    ordered = np.sort(values)
    logs = np.log(ordered)
    n = logs.size
    smallest = max(2, int(np.ceil(min_share * n)))
    sizes = np.arange(smallest, n - smallest + 1)  # size of the fast group
    totals = np.cumsum(logs)
    fast_means = totals[sizes - 1] / sizes
    slow_means = (totals[-1] - totals[sizes - 1]) / (n - sizes)
    between = sizes * (n - sizes) * (slow_means - fast_means) ** 2  # n x between-group variance
    cut = int(sizes[int(np.argmax(between))])
    fast, slow = logs[:cut], logs[cut:]
    # floored at 1 ppm so identical timings (a coarse clock) give a finite separation
    spread = max(float(np.sqrt(fast.var(ddof=1) + slow.var(ddof=1))), 1e-6)
    separation = float(np.sqrt(2.0) * (slow.mean() - fast.mean()) / spread)
    modes = (
        Mode(float(np.median(ordered[:cut])) / 1e6, cut / n, cut),
        Mode(float(np.median(ordered[cut:])) / 1e6, (n - cut) / n, n - cut),
    )
    ratio = modes[1].centre_ms / modes[0].centre_ms
    evidence = (
        f"{modes[0].centre_ms:.4g} ms ({modes[0].share:.0%}) and {modes[1].centre_ms:.4g} ms "
        f"({modes[1].share:.0%}), separation {separation:.3g}, ratio {ratio:.3g}"
    )
    bimodal = separation >= min_separation and ratio >= min_ratio
    verdict = "two modes: " if bimodal else "one mode; best split: "
    return ModesCheck(bimodal, verdict + evidence, modes, round(separation, 3), round(ratio, 4))


NOISE_FLOOR = 0.03  # changes within +-3% are run-to-run noise on the devices we calibrated
ALPHA = 0.01
CONFIDENCE = 0.99
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class MedianCI:
    median: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """Candidate vs baseline for one metric where higher is worse (latency, memory, energy)."""

    baseline_median: float
    candidate_median: float
    ratio: float  # candidate / baseline
    ci_low: float
    ci_high: float
    p_value: float
    verdict: Verdict  # regressed | improved | unchanged | inconclusive
    n_baseline: int
    n_candidate: int
    noise_floor: float
    paired_rounds: int | None = None  # compare_rounds: the number of ABBA pairs judged

    @property
    def change(self) -> float:
        return self.ratio - 1.0


def bootstrap_medians(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``resamples`` bootstrap resamples, drawn exactly without building them.

    The median of a size-n resample of the sorted sample is its k-th order statistic
    (k = (n+1)//2), and P(median <= x_(j)) = P(Binomial(n, j/n) >= k): sampling that
    distribution costs O(n + resamples) instead of O(resamples x n log n).
    """
    from scipy import stats as scipy_stats

    ordered = np.sort(values)
    n = ordered.size
    k = (n + 1) // 2
    cdf = scipy_stats.binom.sf(k - 1, n, np.arange(1, n + 1) / n)
    picks = np.searchsorted(cdf, rng.random(resamples))
    return ordered[np.minimum(picks, n - 1)]


def median_ci(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> MedianCI:
    """Median with a distribution-free CI from order statistics (binomial)."""
    from scipy import stats as scipy_stats

    values = np.sort(np.asarray(samples, dtype=np.float64))
    n = values.size
    if n == 0:
        raise ValueError("no samples")
    low_rank = int(scipy_stats.binom.ppf((1 - confidence) / 2, n, 0.5))
    high_rank = min(n - 1, int(scipy_stats.binom.isf((1 - confidence) / 2, n, 0.5)))
    return MedianCI(float(np.median(values)), float(values[max(0, low_rank - 1)]), float(values[high_rank]))


def compare(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    noise_floor: float = NOISE_FLOOR,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Compare two sets of raw samples (same unit). Deterministic for a given ``seed``."""
    from scipy import stats as scipy_stats

    base = np.asarray(baseline, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if base.size < 2 or cand.size < 2:
        raise ValueError("compare needs at least 2 samples on each side")
    rng = np.random.default_rng(seed)
    base_median, cand_median = float(np.median(base)), float(np.median(cand))
    ratios = bootstrap_medians(cand, resamples, rng) / bootstrap_medians(base, resamples, rng)
    tail = (1 - confidence) / 2 * 100
    low, high = (float(v) for v in np.percentile(ratios, [tail, 100 - tail]))
    p_value = float(scipy_stats.mannwhitneyu(base, cand, alternative="two-sided").pvalue)
    ratio = cand_median / base_median
    return Comparison(
        baseline_median=base_median,
        candidate_median=cand_median,
        ratio=ratio,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        verdict=judge_ratio(low, high, p_value, noise_floor=noise_floor, alpha=alpha),
        n_baseline=int(base.size),
        n_candidate=int(cand.size),
        noise_floor=noise_floor,
    )


def judge_ratio(low: float, high: float, p_value: float, *, noise_floor: float, alpha: float) -> Verdict:
    """The verdict rule: beyond the floor with the whole CI and p < alpha, or inside it entirely."""
    if low > 1 + noise_floor and p_value < alpha:
        return Verdict.REGRESSED
    if high < 1 - noise_floor and p_value < alpha:
        return Verdict.IMPROVED
    if low >= 1 - noise_floor and high <= 1 + noise_floor:
        return Verdict.UNCHANGED
    return Verdict.INCONCLUSIVE


MIN_PAIRED_ROUNDS = 3


def compare_rounds(
    baseline_rounds: Sequence[Sequence[float]],
    candidate_rounds: Sequence[Sequence[float]],
    *,
    noise_floor: float,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
) -> Comparison:
    """Compare two variants measured in ABBA rounds on one device: round i of each side ran back to
    back, so a drift of the device shows in both and cancels in the ratio of their medians. The
    verdict comes from the per-round log ratios (a t interval over rounds), not from pooled samples,
    whose spread between rounds is drift rather than sampling error."""
    from scipy import stats as scipy_stats

    pairs = min(len(baseline_rounds), len(candidate_rounds))
    if pairs < MIN_PAIRED_ROUNDS:
        raise ValueError(f"compare_rounds needs at least {MIN_PAIRED_ROUNDS} rounds on each side")
    if any(len(r) == 0 for r in (*baseline_rounds[:pairs], *candidate_rounds[:pairs])):
        raise ValueError("compare_rounds: a round without samples")
    logs = np.array(
        [
            math.log(float(np.median(c)) / float(np.median(b)))
            for b, c in zip(baseline_rounds[:pairs], candidate_rounds[:pairs], strict=True)
        ]
    )
    mean = float(logs.mean())
    spread = float(logs.std(ddof=1))
    if spread == 0.0:
        low = high = math.exp(mean)
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        half = float(scipy_stats.t.ppf(1 - (1 - confidence) / 2, pairs - 1)) * spread / math.sqrt(pairs)
        low, high = math.exp(mean - half), math.exp(mean + half)
        p_value = float(scipy_stats.ttest_1samp(logs, 0.0).pvalue)
    base_all = np.concatenate([np.asarray(r, dtype=np.float64) for r in baseline_rounds[:pairs]])
    cand_all = np.concatenate([np.asarray(r, dtype=np.float64) for r in candidate_rounds[:pairs]])
    return Comparison(
        baseline_median=float(np.median(base_all)),
        candidate_median=float(np.median(cand_all)),
        ratio=math.exp(mean),
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        verdict=judge_ratio(low, high, p_value, noise_floor=noise_floor, alpha=alpha),
        n_baseline=int(base_all.size),
        n_candidate=int(cand_all.size),
        noise_floor=noise_floor,
        paired_rounds=pairs,
    )


@dataclass(frozen=True)
class ProportionDrop:
    """Accuracy (a proportion) of a candidate vs a baseline, in points, with a Wald CI."""

    baseline: float
    candidate: float
    drop_points: float  # (baseline - candidate) x 100; positive is worse
    ci_low_points: float
    ci_high_points: float


def proportion_drop(
    baseline_correct: int, baseline_n: int, candidate_correct: int, candidate_n: int, confidence: float = 0.95
) -> ProportionDrop:
    from scipy import stats as scipy_stats

    if baseline_n <= 0 or candidate_n <= 0:
        raise ValueError("accuracy needs at least one sample on each side")
    p1, p2 = baseline_correct / baseline_n, candidate_correct / candidate_n
    z = float(scipy_stats.norm.isf((1 - confidence) / 2))
    se = float(np.sqrt(p1 * (1 - p1) / baseline_n + p2 * (1 - p2) / candidate_n))
    drop = (p1 - p2) * 100
    return ProportionDrop(p1, p2, drop, drop - z * se * 100, drop + z * se * 100)
