"""Interleaved measurement of several variants on one device, to cancel drift.

Each variant's timed phase is split into ``rounds`` shorter runs, executed in ABBA order
(A B, B A, A B, ...), so a slow drift of the device (heat, background load) falls on every
variant alike instead of on whichever ran last. Each variant's rounds are merged into one
result: samples concatenated, memory the maximum, energy summed over rounds.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

from harness.measurement import BenchmarkResult, LatencyProtocol
from harness.models.variants import Variant
from harness.probes.energy import EnergyReport
from harness.probes.thermal import ThrottleVerdict, judge
from harness.stats import detect_modes, summarize_latency

Measure = Callable[[Variant, LatencyProtocol], BenchmarkResult]
T = TypeVar("T")


def round_protocol(protocol: LatencyProtocol, rounds: int) -> LatencyProtocol:
    """The protocol of one round: the timed minimums (and maximum) divided among the rounds."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    min_s = protocol.min_s / rounds
    return dataclasses.replace(
        protocol,
        min_iters=max(1, math.ceil(protocol.min_iters / rounds)),
        min_s=min_s,
        max_s=max(protocol.max_s / rounds, min_s),
    )


def schedule(variants: Sequence[T], rounds: int) -> list[T]:
    """ABBA order: forward on even rounds, backward on odd ones."""
    order: list[T] = []
    for index in range(rounds):
        order += list(variants) if index % 2 == 0 else list(reversed(variants))
    return order


def merge(parts: Sequence[BenchmarkResult], protocol: LatencyProtocol) -> BenchmarkResult:
    """One result from a variant's rounds, in the order they ran."""
    first = parts[0]
    samples: list[int] = []
    offsets: list[int] = []
    shift = 0
    for part in parts:
        samples += part.latency_samples_ns
        offsets += [shift + o for o in part.start_offsets_ns]
        if part.start_offsets_ns:
            shift += part.start_offsets_ns[-1] + part.latency_samples_ns[-1]
    reasons: list[str] = []
    for index, part in enumerate(parts):
        if part.throttle is not None:
            reasons += [f"round {index + 1}: {reason}" for reason in part.throttle.reasons]
    merged_verdict = judge(None, samples, offsets)
    judged = [
        p.throttle.throttled for p in parts if p.throttle is not None and p.throttle.throttled is not None
    ]
    verdict = ThrottleVerdict(
        throttled=any(judged) if judged else None,
        reasons=tuple(reasons) + merged_verdict.reasons,
        first_throttle_s=None,
        max_temp_c=max(
            (p.throttle.max_temp_c for p in parts if p.throttle and p.throttle.max_temp_c), default=None
        ),
        min_ceiling_ratio=min(
            (p.throttle.min_ceiling_ratio for p in parts if p.throttle and p.throttle.min_ceiling_ratio),
            default=None,
        ),
        drift_ratio=merged_verdict.drift_ratio,
        drifted=bool(merged_verdict.drifted) or any(p.throttle.drifted for p in parts if p.throttle),
    )
    memory = dataclasses.replace(
        first.memory,
        peak_rss_mb=_max([p.memory.peak_rss_mb for p in parts]),
        load_peak_mb=_max([p.memory.load_peak_mb for p in parts]),
        pss_mb=_max([p.memory.pss_mb for p in parts]),
    )
    warnings = tuple(dict.fromkeys(w for p in parts for w in p.warnings))
    return dataclasses.replace(
        first,
        latency_ms=summarize_latency(samples),
        memory=memory,
        load_ms=sorted(p.load_ms for p in parts)[len(parts) // 2],
        agent_phases_ms=_median_phases(parts),
        iterations=len(samples),
        stopped_by=",".join(sorted({p.stopped_by for p in parts})),
        protocol=protocol,
        latency_samples_ns=tuple(samples),
        start_offsets_ns=tuple(offsets),
        thermal=None,
        throttle=verdict,
        energy=_merge_energy([p.energy for p in parts]),
        warnings=warnings,
        rounds=len(parts),
        modes=detect_modes(samples) if samples else first.modes,  # two modes may be two rounds
    )


def _max(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _merge_energy(reports: Sequence[EnergyReport | None]) -> EnergyReport | None:
    usable = [r for r in reports if r is not None and r.net_energy_mj is not None]
    if not usable:
        return next((r for r in reports if r is not None), None)
    iterations = sum(r.iterations for r in usable)
    net = sum(r.net_energy_mj or 0.0 for r in usable)
    spread = math.sqrt(sum(((r.uncertainty_mj_per_inference or 0.0) * r.iterations) ** 2 for r in usable))
    duration = sum(r.duration_s for r in usable)
    return dataclasses.replace(
        usable[0],
        duration_s=round(duration, 6),
        iterations=iterations,
        avg_power_w=round(sum((r.avg_power_w or 0.0) * r.duration_s for r in usable) / duration, 6),
        idle_power_w=_max([r.idle_power_w for r in usable]),
        net_energy_mj=round(net, 6),
        mj_per_inference=round(net / iterations, 9) if iterations else None,
        uncertainty_mj_per_inference=round(spread / iterations, 9) if iterations else None,
        samples=sum(r.samples for r in usable),
    )


def run_interleaved(
    variants: Sequence[Variant], protocol: LatencyProtocol, rounds: int, measure: Measure
) -> dict[str, BenchmarkResult]:
    """Measure every variant in ABBA rounds; results by variant id, each merged over its rounds."""
    if len({v.id for v in variants}) != len(variants):
        raise ValueError("interleave: each variant once")
    per_round = round_protocol(protocol, rounds)
    parts: dict[str, list[BenchmarkResult]] = {v.id: [] for v in variants}
    for variant in schedule(variants, rounds):
        parts[variant.id].append(measure(variant, per_round))
    return {key: merge(results, protocol) for key, results in parts.items()}


def _median_phases(parts: Sequence[BenchmarkResult]) -> dict[str, float] | None:
    """Each agent phase's median over the rounds that report it."""
    names = dict.fromkeys(name for p in parts for name in (p.agent_phases_ms or {}))
    if not names:
        return None
    return {
        name: statistics.median(
            p.agent_phases_ms[name] for p in parts if p.agent_phases_ms and name in p.agent_phases_ms
        )
        for name in names
    }
