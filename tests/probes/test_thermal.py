"""Throttle verdicts, per-sample annotation and sustained curves on constructed traces."""

from __future__ import annotations

import pytest

from harness.probes.thermal import ThermalTrace, judge, latency_drift, sustained_curve

START_NS = 1_000_000_000


def trace(caps: list[int], temps_mc: list[int], period_s: float = 1.0) -> ThermalTrace:
    samples = [
        [START_NS + int(i * period_s * 1e9), [temp, temp - 5000], [cap], [cap]]
        for i, (cap, temp) in enumerate(zip(caps, temps_mc, strict=True))
    ]
    document = {
        "period_s": period_s,
        "zones": ["BIG", "skin"],
        "policies": ["policy8"],
        "cpuinfo_max_khz": [2910000],
        "samples": samples,
    }
    return ThermalTrace.from_agent(document, START_NS)


def steady(count: int, latency_ns: int, step_ns: int) -> tuple[list[int], list[int]]:
    return [latency_ns] * count, [i * step_ns for i in range(count)]


def test_trace_converts_millidegrees_and_offsets():
    t = trace([2910000, 1600000], [41500, 56000])
    assert t.samples[1].offset_s == pytest.approx(1.0)
    assert t.samples[1].temps_c == (56.0, 51.0)
    assert t.hottest_c(t.samples[1]) == 56.0
    assert t.ceiling_ratio(t.samples[1]) == pytest.approx(1600000 / 2910000)


def test_annotation_maps_each_latency_sample_to_the_state_in_force():
    t = trace([2910000, 2910000, 1600000], [40000, 50000, 56000])
    assert t.annotate([0, 999_999_999, 1_000_000_000, 2_500_000_000, 9_000_000_000]) == [0, 0, 1, 2, 2]


def test_frequency_cap_during_the_run_is_throttling_with_time_and_temperature():
    durations, offsets = steady(100, 10_000_000, 30_000_000)
    verdict = judge(
        trace([2910000, 2910000, 1600000, 1600000], [40000, 50000, 56000, 55000]), durations, offsets
    )
    assert verdict.throttled
    assert verdict.reasons == ("frequency cap: policy8 ceiling 2910000 -> 1600000 kHz at 2.0 s at 56.0 C",)
    assert verdict.first_throttle_s == pytest.approx(2.0)
    assert verdict.max_temp_c == 56.0 and verdict.drift_ratio == pytest.approx(1.0)


def test_cap_from_the_start_is_reported_as_such():
    durations, offsets = steady(100, 10_000_000, 30_000_000)
    verdict = judge(trace([1600000, 1600000], [40000, 40000]), durations, offsets)
    assert verdict.throttled and verdict.first_throttle_s is None
    assert verdict.reasons[0].startswith("frequency capped from the start: ceiling at 55%")


def test_latency_drift_alone_is_drift_not_throttling_and_noise_is_neither():
    durations = [10_000_000] * 50 + [20_000_000] * 50
    offsets = [i * 10_000_000 for i in range(100)]
    verdict = judge(None, durations, offsets)
    assert verdict.drifted and verdict.drift_ratio == pytest.approx(2.0) and verdict.flagged
    assert verdict.throttled is None  # nothing thermal was sampled: not judged, not "no"
    assert verdict.reasons == ("latency drift: last/first tenth median ratio 2.00",)
    calm = [10_000_000 + (i % 7) * 100_000 for i in range(100)]
    assert judge(None, calm, offsets).drifted is False and not judge(None, calm, offsets).flagged
    assert latency_drift(calm[:30], offsets[:30]) is None  # too few samples to judge


def test_sustained_curve_windows_and_steady_over_initial():
    durations = [10_000_000] * 40 + [20_000_000] * 40
    offsets = [i * 100_000_000 for i in range(80)]  # 8 s, 10 per second
    t = trace([2910000] * 4 + [1600000] * 5, [40000] * 4 + [56000] * 5)
    verdict = judge(t, durations, offsets)
    curve = sustained_curve(durations, offsets, t, verdict, window_s=1.0)
    assert [p.median_ms for p in curve.points] == [10.0] * 4 + [20.0] * 4
    assert [p.samples for p in curve.points] == [10] * 8
    assert curve.points[5].ceiling_ratio == pytest.approx(1600000 / 2910000)
    assert curve.steady_over_initial == pytest.approx(2.0)
    assert curve.time_to_first_throttle_s == pytest.approx(4.0)
    with pytest.raises(ValueError, match="window_s"):
        sustained_curve(durations, offsets, t, verdict, window_s=0)


def test_android_status_and_pi_flags_during_the_run_are_reasons():
    durations, offsets = steady(100, 10_000_000, 30_000_000)
    base = {
        "period_s": 1.0,
        "zones": ["skin"],
        "policies": [],
        "cpuinfo_max_khz": [],
        "samples": [[START_NS, [30000], [], []]],
    }
    android = ThermalTrace.from_agent(
        {
            **base,
            "status_kind": "android",
            "status": [[START_NS, 0], [START_NS + 2 * 10**9, 3], [START_NS + 4 * 10**9, 2]],
        },
        START_NS,
    )
    verdict = judge(android, durations, offsets)
    assert verdict.throttled and verdict.first_throttle_s == pytest.approx(2.0)
    assert verdict.reasons == ("thermal status: 3 at 2.0 s (max 3; Android, 0 = none)",)
    pi = ThermalTrace.from_agent(
        {**base, "status_kind": "vcgencmd", "status": [[START_NS, 0x80000], [START_NS + 10**9, 0x8000A]]},
        START_NS,
    )
    assert judge(pi, durations, offsets).reasons == (
        "Pi throttle flags: arm_freq_capped_now, soft_temp_limit_now at 1.0 s (vcgencmd get_throttled=0x8000a)",
    )  # the sticky *_occurred bit alone (0x80000) is not throttling during this run
