"""ABBA scheduling, per-round protocols and merging of rounds."""

from __future__ import annotations

import dataclasses

import pytest

from harness.interleave import merge, round_protocol, run_interleaved, schedule
from harness.measurement import BenchmarkResult, LatencyProtocol, MemoryUsage, RuntimeInfo
from harness.models.variants import variants_for
from harness.probes.thermal import judge
from harness.stats import summarize_latency

A, B = variants_for("silero_vad")[0], variants_for("face_detection")[0]


def fake_result(variant, latency_ns: int, count: int, peak: float) -> BenchmarkResult:
    samples = [latency_ns] * count
    offsets = [i * latency_ns for i in range(count)]
    return BenchmarkResult(
        device="d",
        model=variant.model,
        format=variant.format,
        runtime=RuntimeInfo(variant.runtime, variant.runtime, "1"),
        precision=variant.precision,
        threads=1,
        latency_ms=summarize_latency(samples),
        memory=MemoryUsage(10.0, 20.0, peak),
        load_ms=5.0,
        first_inference_ms=1.0,
        iterations=count,
        stopped_by="min_reached",
        protocol=LatencyProtocol(),
        latency_samples_ns=tuple(samples),
        start_offsets_ns=tuple(offsets),
        throttle=judge(None, samples, offsets),
    )


def test_abba_order_and_round_protocol():
    assert [v.model for v in schedule([A, B], 4)] == [
        "silero_vad",
        "face_detection",
        "face_detection",
        "silero_vad",
        "silero_vad",
        "face_detection",
        "face_detection",
        "silero_vad",
    ]
    part = round_protocol(LatencyProtocol(min_iters=50, min_s=2.0, max_s=60.0), 4)
    assert (part.min_iters, part.min_s, part.max_s) == (13, 0.5, 15.0)
    with pytest.raises(ValueError, match="rounds"):
        round_protocol(LatencyProtocol(), 0)


def test_rounds_are_measured_in_order_and_merged():
    calls: list[str] = []
    latency = {A.id: 1_000_000, B.id: 3_000_000}

    def measure(variant, protocol):
        calls.append(variant.id)
        round_number = calls.count(variant.id)
        return fake_result(
            variant, latency[variant.id] * round_number, protocol.min_iters, peak=30.0 + round_number
        )

    protocol = LatencyProtocol(min_iters=40)
    results = run_interleaved([A, B], protocol, 2, measure)
    assert calls == [A.id, B.id, B.id, A.id]
    merged = results[A.id]
    assert merged.rounds == 2 and merged.iterations == 40 and merged.protocol is protocol
    assert sorted(set(merged.latency_samples_ns)) == [1_000_000, 2_000_000]
    assert list(merged.start_offsets_ns) == sorted(merged.start_offsets_ns)  # rounds laid end to end
    assert merged.memory.peak_rss_mb == 32.0
    assert merged.throttle is not None and merged.throttle.drift_ratio == pytest.approx(2.0)
    assert any(reason.startswith("latency drift") for reason in merged.throttle.reasons)


def test_merged_agent_phases_are_each_phases_median_over_the_rounds():
    rounds = [
        dataclasses.replace(fake_result(A, 1_000_000, 10, 30.0), agent_phases_ms=phases)
        for phases in ({"load": 10.0, "timed": 5.0}, {"load": 30.0, "timed": 7.0}, {"load": 20.0})
    ]
    merged = merge(rounds, rounds[0].protocol)
    assert merged.agent_phases_ms == {"load": 20.0, "timed": 6.0}
    assert merge([fake_result(A, 1_000_000, 10, 30.0)], LatencyProtocol()).agent_phases_ms is None


def test_merge_of_a_single_round_keeps_the_numbers():
    one = fake_result(A, 2_000_000, 30, peak=40.0)
    merged = merge([one], one.protocol)
    assert merged.latency_ms == one.latency_ms and merged.rounds == 1
