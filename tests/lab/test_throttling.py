"""Sustained load on the virtual devices: the board is slower than the phone, and the phone
throttles (cpufreq ceiling drops, latency rises) and recovers. Ratios within one run only."""

from __future__ import annotations

import statistics

import pytest

from harness.measurement import LatencyProtocol
from harness.models.variants import variants_for
from harness.probes.thermal import sustained_curve
from harness.session import Lab, RunOptions


@pytest.fixture(scope="module")
def session_lab(lab_fleet, tmp_path_factory):
    harness_lab = Lab(
        lab_fleet,
        RunOptions(
            reports_dir=tmp_path_factory.mktemp("reports"),
            devices=("virtual-pixel8", "virtual-rpi5"),
            lease_timeout_s=None,  # the pytester runs of this module lease these devices
        ),
    )
    yield harness_lab
    harness_lab.close()


def ppocr_det():
    return variants_for("ppocr_det")[0]


def test_board_is_slower_than_the_phone(session_lab):
    protocol = LatencyProtocol(warmup_iters=5, warmup_s=0.2, min_iters=30, min_s=1.0, max_s=20.0)
    phone = session_lab.benchmark("virtual-pixel8", ppocr_det(), protocol).result
    board = session_lab.benchmark("virtual-rpi5", ppocr_det(), protocol).result
    # rpi5's quota is 0.5 core, pixel8's 1.0: a ~11 ms inference takes about twice as long.
    assert board.latency_ms.median / phone.latency_ms.median > 1.5


def test_sustained_run_throttles_with_frequency_drop_and_higher_latency(session_lab):
    protocol = LatencyProtocol(
        warmup_iters=1, warmup_s=0.0, min_iters=1, min_s=8.0, max_s=8.0, sample_period_s=0.1, max_iters=10**7
    )
    result = session_lab.benchmark("virtual-pixel8", ppocr_det(), protocol, cooldown_below_c=35.0).result
    verdict = result.throttle
    assert verdict is not None and verdict.throttled
    assert any(reason.startswith("frequency cap: ") for reason in verdict.reasons)
    assert any(reason.startswith("thermal status: ") for reason in verdict.reasons), result.thermal.status
    assert verdict.min_ceiling_ratio == pytest.approx(1600000 / 2910000, rel=1e-3)  # policy8, the deepest cap
    assert verdict.max_temp_c >= 55.0  # pixel8's trip point
    assert result.cooldown is not None and result.cooldown.reached
    trace = result.thermal
    index = trace.annotate(result.start_offsets_ns)
    capped = [trace.ceiling_ratio(trace.samples[i]) < 0.98 for i in index]
    fast = [d for d, c in zip(result.latency_samples_ns, capped, strict=True) if not c]
    slow = [d for d, c in zip(result.latency_samples_ns, capped, strict=True) if c]
    assert len(fast) > 20 and len(slow) > 20
    assert statistics.median(slow) / statistics.median(fast) > 1.4  # quota 1.0 -> 0.55
    curve = sustained_curve(result.latency_samples_ns, result.start_offsets_ns, trace, verdict, 1.0)
    assert curve.time_to_first_throttle_s == verdict.first_throttle_s
    assert len(curve.points) == 8
