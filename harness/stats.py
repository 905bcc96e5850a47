"""Summaries of latency samples; baseline comparisons arrive with the results history.

All inputs are raw per-iteration samples; nothing here knows about devices or pytest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median": self.median,
            "p90": self.p90,
            "p99": self.p99,
            "mean": self.mean,
            "std": self.std,
            "cv": self.cv,
            "min": self.min,
            "max": self.max,
            "samples": self.samples,
        }


def summarize_latency(samples_ns: Sequence[int]) -> LatencySummary:
    """Median and tail percentiles (linear interpolation), sample std (ddof=1) and CV = std/mean."""
    if len(samples_ns) == 0:
        raise ValueError("no latency samples to summarize")
    values = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
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
    )
