"""Step changes in a history series (a result identity's median latency, run after run).

A penalized piecewise-constant fit with absolute deviations (the L1 Potts functional, Friedrich
et al. 2008, "Complexity penalized M-estimation", J. Comput. Graph. Stat. 17(1); the fit asv's
step_detect makes), solved exactly by dynamic programming on log values; steps smaller than the
noise floor are then merged away. It describes a history; it does not judge a run (harness.compare does).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_NOISE = 0.005  # below 0.5% run-to-run noise is not believable: the penalty never goes to 0
MIN_LEVEL = 3  # runs a level needs before the newest one: one or two odd runs are noise, not a level


@dataclass(frozen=True)
class Step:
    index: int  # the first point of the new level
    before: float  # level (median) of the segment before
    after: float  # level of the segment from ``index``

    @property
    def change(self) -> float:
        return self.after / self.before - 1


def _noise(logs: np.ndarray) -> float:
    """Robust run-to-run spread: the median absolute successive difference, scaled to a standard
    deviation (a step moves one difference, not the median of them)."""
    if logs.size < 3:
        return MIN_NOISE
    spread = 1.4826 * float(np.median(np.abs(np.diff(logs)))) / math.sqrt(2)
    return max(spread, MIN_NOISE)


def _segment_costs(logs: np.ndarray) -> np.ndarray:
    """cost[i, j]: sum of absolute deviations of logs[i:j] from their median (inf where empty),
    with a running median in two heaps per start: O(n^2 log n) for all segments."""
    n = logs.size
    cost = np.full((n + 1, n + 1), np.inf)
    values = [float(v) for v in logs]
    for begin in range(n):
        lower: list[float] = []  # the smaller half, negated (a max-heap); holds the median
        upper: list[float] = []
        lower_sum = upper_sum = 0.0
        for end in range(begin + 1, n + 1):
            value = values[end - 1]
            if lower and value > -lower[0]:
                heapq.heappush(upper, value)
                upper_sum += value
            else:
                heapq.heappush(lower, -value)
                lower_sum += value
            if len(lower) > len(upper) + 1:
                moved = -heapq.heappop(lower)
                lower_sum -= moved
                heapq.heappush(upper, moved)
                upper_sum += moved
            elif len(upper) > len(lower):
                moved = heapq.heappop(upper)
                upper_sum -= moved
                heapq.heappush(lower, -moved)
                lower_sum += moved
            median = -lower[0]
            cost[begin, end] = (upper_sum - median * len(upper)) + (median * len(lower) - lower_sum)
    return cost


def _fit(logs: np.ndarray, penalty: float) -> list[int]:
    """Segment starts minimising the sum of absolute deviations + penalty x segments (absolute,
    not squared: one odd run moves a median, not a level). Every segment but the newest holds at
    least MIN_LEVEL points; the newest may hold one, so a change at the newest run is seen the run
    it happens."""
    n = logs.size
    cost = _segment_costs(logs)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    start = np.zeros(n + 1, dtype=int)
    for end in range(1, n + 1):
        minimum = 1 if end == n else MIN_LEVEL
        begins = np.arange(0, end - minimum + 1)
        begins = begins[(begins == 0) | (begins >= MIN_LEVEL)]  # the segment before holds enough too
        if begins.size == 0:
            begins = np.array([0])
        candidates = best[begins] + cost[begins, end] + penalty
        pick = int(np.argmin(candidates))
        best[end], start[end] = candidates[pick], begins[pick]
    starts = []
    end = n
    while end > 0:
        starts.append(int(start[end]))
        end = int(start[end])
    return sorted(starts)


def detect_steps(values: Sequence[float], floor: float = 0.03) -> list[Step]:
    """Steps in ``values`` (positive, oldest first) larger than ``floor`` (a fraction)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size < 3 or np.any(data <= 0):
        return []
    logs = np.log(data)
    sigma = _noise(logs)
    # the BIC-like penalty of a Laplace fit: 2 ln(n) per segment, in units of the noise's scale
    starts = _fit(logs, 2 * sigma * math.log(data.size))
    while True:
        bounds = [*starts, data.size]
        levels = [float(np.median(logs[a:b])) for a, b in itertools.pairwise(bounds)]
        changes = [abs(levels[i + 1] - levels[i]) for i in range(len(levels) - 1)]
        if not changes or min(changes) >= math.log1p(floor):
            break
        starts.pop(int(np.argmin(changes)) + 1)  # merge the smallest step into its neighbours
    return [Step(starts[i + 1], math.exp(levels[i]), math.exp(levels[i + 1])) for i in range(len(levels) - 1)]
