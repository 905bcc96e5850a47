"""Step changes in a history series (a result identity's median latency, run after run).

A penalized piecewise-constant least-squares fit (the Potts functional, Friedrich et al. 2008,
"Complexity penalized M-estimation", J. Comput. Graph. Stat. 17(1); the fit asv's step_detect
makes), solved exactly by dynamic programming on log values, then steps smaller than the noise
floor are merged away. It describes a history; it does not judge a run (harness.compare does).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_NOISE = 0.005  # below 0.5% run-to-run noise is not believable: the penalty never goes to 0


@dataclass(frozen=True)
class Step:
    index: int  # the first point of the new level
    before: float  # level (geometric mean) of the segment before
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


def _fit(logs: np.ndarray, penalty: float) -> list[int]:
    """Segment starts minimising sum of squared residuals + penalty x segments. Inner segments
    hold at least two points (one odd run is noise, not a level); the newest one may hold one,
    so a change at the newest run is seen the run it happens."""
    n = logs.size
    sums = np.concatenate([[0.0], np.cumsum(logs)])
    squares = np.concatenate([[0.0], np.cumsum(logs**2)])
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    start = np.zeros(n + 1, dtype=int)
    for end in range(1, n + 1):
        minimum = 1 if end == n else 2
        begins = np.arange(0, end - minimum + 1)
        begins = begins[(begins == 0) | (begins >= 2)]  # the segment before holds >= 2 too
        if begins.size == 0:
            begins = np.array([0])
        length = end - begins
        total = sums[end] - sums[begins]
        cost = squares[end] - squares[begins] - total**2 / length
        candidates = best[begins] + cost + penalty
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
    starts = _fit(logs, 2 * sigma**2 * math.log(data.size) * 2)
    while True:
        bounds = [*starts, data.size]
        levels = [float(np.mean(logs[a:b])) for a, b in itertools.pairwise(bounds)]
        changes = [abs(levels[i + 1] - levels[i]) for i in range(len(levels) - 1)]
        if not changes or min(changes) >= math.log1p(floor):
            break
        starts.pop(int(np.argmin(changes)) + 1)  # merge the smallest step into its neighbours
    return [Step(starts[i + 1], math.exp(levels[i]), math.exp(levels[i + 1])) for i in range(len(levels) - 1)]
