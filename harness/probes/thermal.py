"""Thermal state during a measured run: the agent's sampler trace, per-sample annotation,
a throttling verdict with its evidence, and the curve of a sustained run.

The trace comes from the agent's sampler thread, on the same clock as the latency samples, so
``state_at`` maps any iteration to the thermal state at its start.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# A policy counts as capped when its ceiling falls below this share of where it started.
CAP_RATIO = 0.98
# Latency drift: median of the last window over the first, judged on at least this many samples.
DRIFT_RATIO = 1.15
DRIFT_MIN_SAMPLES = 20


@dataclass(frozen=True)
class ThermalSample:
    offset_s: float  # from the start of the timed phase
    temps_c: tuple[float | None, ...]  # one per zone
    cur_khz: tuple[int | None, ...]  # one per cpufreq policy
    max_khz: tuple[int | None, ...]  # scaling_max_freq: the ceiling thermal caps lower


@dataclass(frozen=True)
class ThermalTrace:
    period_s: float
    zones: tuple[str, ...]
    policies: tuple[str, ...]
    cpuinfo_max_khz: tuple[int | None, ...]
    samples: tuple[ThermalSample, ...]
    status_kind: str | None = None  # "android" (thermal status 0-6) or "vcgencmd" (throttled bits)
    status: tuple[tuple[float, int], ...] = ()  # (offset_s, value), every ~2 s

    @classmethod
    def from_agent(cls, document: dict[str, Any], timed_start_ns: int) -> ThermalTrace:
        """Build from the agent's ``thermal`` section; temperatures arrive in millidegrees C."""
        samples = []
        for t_ns, temps, cur, cap, *_energy in document.get("samples", []):
            samples.append(
                ThermalSample(
                    offset_s=(int(t_ns) - timed_start_ns) / 1e9,
                    temps_c=tuple(None if v is None else to_celsius(v) for v in temps),
                    cur_khz=tuple(cur),
                    max_khz=tuple(cap),
                )
            )
        return cls(
            period_s=float(document.get("period_s", 0.0)),
            zones=tuple(document.get("zones", [])),
            policies=tuple(document.get("policies", [])),
            cpuinfo_max_khz=tuple(document.get("cpuinfo_max_khz", [])),
            samples=tuple(samples),
            status_kind=document.get("status_kind"),
            status=tuple(((int(t) - timed_start_ns) / 1e9, int(v)) for t, v in document.get("status", [])),
        )

    def hottest_c(self, sample: ThermalSample) -> float | None:
        values = [t for t in sample.temps_c if t is not None]
        return max(values) if values else None

    def ceiling_ratio(self, sample: ThermalSample) -> float | None:
        """Lowest scaling_max_freq / cpuinfo_max_freq over policies (1.0: no cap)."""
        ratios = [
            cap / top
            for cap, top in zip(sample.max_khz, self.cpuinfo_max_khz, strict=False)
            if cap is not None and top
        ]
        return min(ratios) if ratios else None

    def index_at(self, offset_s: float) -> int:
        """The last sample taken at or before ``offset_s`` (the first one before any)."""
        offsets = [s.offset_s for s in self.samples]
        return max(0, bisect.bisect_right(offsets, offset_s) - 1)

    def annotate(self, start_offsets_ns: Sequence[int]) -> list[int]:
        """For each latency sample, the index of the thermal sample in force when it started."""
        if not self.samples:
            return []
        offsets = [s.offset_s for s in self.samples]
        return [max(0, bisect.bisect_right(offsets, o / 1e9) - 1) for o in start_offsets_ns]


def to_celsius(value: int | float) -> float:
    """sysfs thermal zones report millidegrees; a few drivers report whole degrees."""
    return float(value) / 1000.0 if abs(value) >= 200 else float(value)


@dataclass(frozen=True)
class ThrottleVerdict:
    """Why a run is flagged. ``throttled`` is the device's own doing (a frequency cap, a thermal
    status, Pi throttle flags) and None when nothing thermal was sampled; ``drifted`` is latency
    that rose within the run whatever the cause (None when the run was too short to judge).
    Drift alone is not throttling."""

    throttled: bool | None
    reasons: tuple[str, ...]
    first_throttle_s: float | None
    max_temp_c: float | None
    min_ceiling_ratio: float | None
    drift_ratio: float | None
    drifted: bool | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.throttled) or bool(self.drifted)


PI_NOW_BITS = {0: "under_voltage_now", 1: "arm_freq_capped_now", 2: "throttled_now", 3: "soft_temp_limit_now"}


def _status_active(trace: ThermalTrace, value: int) -> bool:
    return value >= 1 if trace.status_kind == "android" else bool(value & 0xF)


def _status_reason(trace: ThermalTrace) -> str | None:
    """Android thermal status >= 1, or a Raspberry Pi *_now throttle bit, during the run."""
    active = [(t, v) for t, v in trace.status if _status_active(trace, v)]
    if not active:
        return None
    at, value = active[0]
    if trace.status_kind == "android":
        worst = max(v for _, v in active)
        return f"thermal status: {value} at {max(0.0, at):.1f} s (max {worst}; Android, 0 = none)"
    bits = ", ".join(name for bit, name in PI_NOW_BITS.items() if value & (1 << bit))
    return f"Pi throttle flags: {bits} at {max(0.0, at):.1f} s (vcgencmd get_throttled={value:#x})"


def latency_drift(durations_ns: Sequence[int], start_offsets_ns: Sequence[int]) -> float | None:
    """Median of the last tenth of the run over the first tenth (by time); None if too short."""
    if len(durations_ns) < 2 * DRIFT_MIN_SAMPLES:
        return None
    starts = np.asarray(start_offsets_ns, dtype=np.float64)
    values = np.asarray(durations_ns, dtype=np.float64)
    span = starts[-1] - starts[0]
    first = values[starts <= starts[0] + span / 10]
    last = values[starts >= starts[-1] - span / 10]
    if first.size < DRIFT_MIN_SAMPLES or last.size < DRIFT_MIN_SAMPLES:
        count = max(DRIFT_MIN_SAMPLES, len(values) // 10)
        first, last = values[:count], values[-count:]
    return float(np.median(last) / np.median(first))


def judge(
    trace: ThermalTrace | None, durations_ns: Sequence[int], start_offsets_ns: Sequence[int]
) -> ThrottleVerdict:
    """Throttled when a cpufreq ceiling dropped during the run (or was capped throughout) or the
    device reported a thermal status; drifted when latency rose by more than DRIFT_RATIO. Each
    reason carries its evidence."""
    reasons: list[str] = []
    first_throttle: float | None = None
    max_temp: float | None = None
    min_ratio: float | None = None
    if trace is not None and trace.samples:
        # A ceiling not read at the start (Perfetto reports limits only when they change) is
        # compared with the hardware maximum: a later ceiling below it is a cap all the same.
        initial = tuple(
            first if first is not None else top
            for first, top in zip(
                trace.samples[0].max_khz,
                (*trace.cpuinfo_max_khz, *[None] * len(trace.samples[0].max_khz)),
                strict=False,
            )
        )
        for sample in trace.samples:
            hottest = trace.hottest_c(sample)
            if hottest is not None and (max_temp is None or hottest > max_temp):
                max_temp = hottest
            ratio = trace.ceiling_ratio(sample)
            if ratio is not None and (min_ratio is None or ratio < min_ratio):
                min_ratio = ratio
            dropped = [
                (name, before, now)
                for name, before, now in zip(trace.policies, initial, sample.max_khz, strict=False)
                if before and now is not None and now < before * CAP_RATIO
            ]
            if dropped and first_throttle is None:
                first_throttle = max(0.0, sample.offset_s)
                name, before, now = dropped[0]
                temp = f" at {hottest:.1f} C" if hottest is not None else ""
                reasons.append(
                    f"frequency cap: {name} ceiling {before} -> {now} kHz at {first_throttle:.1f} s{temp}"
                )
        start_ratio = trace.ceiling_ratio(trace.samples[0])
        if first_throttle is None and start_ratio is not None and start_ratio < CAP_RATIO:
            reasons.append(
                f"frequency capped from the start: ceiling at {start_ratio:.0%} of cpuinfo_max_freq"
            )
    if trace is not None:
        status_reason = _status_reason(trace)
        if status_reason is not None:
            reasons.append(status_reason)
            if first_throttle is None:
                first_throttle = next(
                    (max(0.0, t) for t, v in trace.status if _status_active(trace, v)), None
                )
    sensed = trace is not None and bool(trace.zones or trace.policies or trace.status)
    throttled = bool(reasons) if sensed else None  # a sampler with nothing to read judged nothing
    drift = latency_drift(durations_ns, start_offsets_ns)
    drifted = None if drift is None else drift > DRIFT_RATIO
    if drifted:
        reasons.append(f"latency drift: last/first tenth median ratio {drift:.2f}")
    return ThrottleVerdict(
        throttled=throttled,
        reasons=tuple(reasons),
        first_throttle_s=first_throttle,
        max_temp_c=max_temp,
        min_ceiling_ratio=min_ratio,
        drift_ratio=drift,
        drifted=drifted,
    )


@dataclass(frozen=True)
class CurvePoint:
    offset_s: float  # window start
    median_ms: float
    samples: int
    hottest_c: float | None
    ceiling_ratio: float | None


@dataclass(frozen=True)
class SustainedCurve:
    window_s: float
    points: tuple[CurvePoint, ...]
    time_to_first_throttle_s: float | None
    steady_over_initial: float | None  # median of the last quarter of windows / the first window


def sustained_curve(
    durations_ns: Sequence[int],
    start_offsets_ns: Sequence[int],
    trace: ThermalTrace | None,
    verdict: ThrottleVerdict,
    window_s: float,
) -> SustainedCurve:
    """Latency medians per window of ``window_s`` with the thermal state at each window's start."""
    if window_s <= 0:
        raise ValueError("window_s must be > 0")
    values = np.asarray(durations_ns, dtype=np.float64) / 1e6
    windows = (np.asarray(start_offsets_ns, dtype=np.float64) / 1e9 // window_s).astype(int)
    points = []
    for window in np.unique(windows):
        chosen = values[windows == window]
        start = float(window * window_s)
        hottest = ratio = None
        if trace is not None and trace.samples:
            sample = trace.samples[trace.index_at(start)]
            hottest, ratio = trace.hottest_c(sample), trace.ceiling_ratio(sample)
        points.append(CurvePoint(start, float(np.median(chosen)), int(chosen.size), hottest, ratio))
    steady = None
    if len(points) >= 4:
        tail = points[-max(1, len(points) // 4) :]
        steady = float(np.median([p.median_ms for p in tail]) / points[0].median_ms)
    return SustainedCurve(window_s, tuple(points), verdict.first_throttle_s, steady)
