"""Energy, memory and environment on the virtual devices, end to end through the agent:
ODPM on the phone, RAPL on the board, PSS from dumpsys meminfo, vcgencmd flags."""

from __future__ import annotations

import pytest

from harness.measurement import LatencyProtocol
from harness.models.variants import variants_for
from harness.session import Lab, RunOptions

PROTOCOL = LatencyProtocol(warmup_iters=3, warmup_s=0.1, min_iters=20, min_s=1.5, max_s=20.0, idle_s=1.0)


@pytest.fixture(scope="module")
def harness_lab(lab_fleet, tmp_path_factory):
    session = Lab(
        lab_fleet,
        RunOptions(
            reports_dir=tmp_path_factory.mktemp("reports"),
            devices=("virtual-pixel8", "virtual-rpi5"),
            lease_timeout_s=None,  # the pytester runs of this module lease these devices
        ),
    )
    yield session
    session.close()


def test_phone_energy_from_odpm_scales_with_work(harness_lab):
    big = harness_lab.benchmark(
        "virtual-pixel8", variants_for("ppocr_det")[0], PROTOCOL, cooldown_below_c=35.0
    ).result
    small = harness_lab.benchmark(
        "virtual-pixel8", variants_for("silero_vad")[0], PROTOCOL, cooldown_below_c=35.0
    ).result
    for result in (big, small):
        energy = result.energy
        assert energy is not None and energy.source == "odpm" and energy.status == "ok"
        assert energy.idle_power_w is not None and energy.avg_power_w is not None
        assert energy.avg_power_w > 3 * energy.idle_power_w  # busy vs idle on a 0.4 W / 4.5 W model
        assert energy.sample_rate_hz is not None and energy.sample_rate_hz >= 5
        assert energy.uncertainty_mj_per_inference is not None
        assert energy.uncertainty_mj_per_inference < energy.mj_per_inference
    # ~11 ms vs ~0.06 ms of CPU per inference: energy per inference follows the CPU time
    assert big.energy.mj_per_inference / small.energy.mj_per_inference > 20
    assert big.memory.pss_source == "smaps_rollup"  # a run on the CPU: no `dumpsys meminfo` asked
    assert 0 < big.memory.pss_mb <= big.memory.peak_rss_mb
    assert big.warnings[0].startswith("VIRTUAL-DEVICE")
    assert not any(w.startswith(("SCREEN-ON", "LOW-BATTERY", "CHARGING")) for w in big.warnings)


def test_board_energy_from_rapl_and_pi_flags(harness_lab):
    result = harness_lab.benchmark(
        "virtual-rpi5", variants_for("ppocr_det")[0], PROTOCOL, cooldown_below_c=35.0
    ).result
    assert result.energy is not None and result.energy.source == "rapl" and result.energy.kind == "counter"
    assert result.energy.mj_per_inference > 0
    assert result.memory.pss_source == "smaps_rollup"
    assert result.energy.source == "rapl" and result.memory.pss_mb is not None


def test_an_energy_source_the_device_lacks_is_a_clear_error(harness_lab):
    from harness.errors import ConfigError

    with pytest.raises(
        ConfigError, match="energy source 'tegrastats' is not on the device .*set energy: auto or none"
    ):
        harness_lab.benchmark("virtual-rpi5", variants_for("silero_vad")[0], PROTOCOL, energy="tegrastats")


def test_a_slower_device_is_measured_with_direction_and_size_and_not_called_a_model_change(harness_lab):
    from harness.compare import VerdictPolicy, compare_runs

    # The same suite on virtual-pixel8 (1.0 core) then on virtual-rpi5 (0.5 core), compared as
    # if it were one device slot: a real slowdown of about 2x, but of the device, not the model.
    protocol = LatencyProtocol(warmup_iters=3, warmup_s=0.1, min_iters=40, min_s=0.4, max_s=30.0, idle_s=0.0)
    variant = variants_for("ppocr_det")[0]
    records = []
    for device in ("virtual-pixel8", "virtual-rpi5"):
        measured = harness_lab.benchmark(device, variant, protocol, cooldown_below_c=33.0, energy="none")
        test = f"t.py::test[{device}-ppocr_det-onnxruntime-fp32]"
        records.append(
            harness_lab.record(test=test, status="passed", device=device, variant=variant, measured=measured)
        )
    base = records[0].model_copy(update={"run_id": "phone"})
    cand = records[1].model_copy(update={"run_id": "board", "device": "virtual-pixel8"})
    comparison = compare_runs(cand, base, VerdictPolicy())
    latency = comparison.metrics[0]
    # Half the CFS quota costs 2x or more: an inference that straddles the end of the board's
    # 50-ms budget waits out the rest of the 100-ms period, so the longer one inference takes on
    # this host (11 ms on one machine, 26 ms on another), the more of them do (measured 2.2x,
    # 2.6x, 3.3x on a CI machine).
    assert 1.6 < latency.ratio < 4.0, latency.evidence
    assert latency.ci_low > 1.03
    # Each record carries the device's speed reference, timed at connect: the board's is slower
    # (and, on half a core, scattered: a repetition that meets the end of the CFS budget waits),
    # so the comparison cannot blame the model and says why. How much slower depends on what else
    # the host ran at each connect (a fork-heavy shell loop: 1.25x in one CI run, 2x on a quiet
    # host), so only the direction is asserted here; the evidence below names the move or scatter.
    assert base.speed_reference is not None and cand.speed_reference is not None
    assert cand.speed_reference.median_ms > base.speed_reference.median_ms
    assert comparison.verdict == "inconclusive" and latency.verdict == "inconclusive", latency.evidence
    assert (
        "the device's speed reference moved +" in latency.evidence
        or "the candidate run's speed reference scattered" in latency.evidence
    ), latency.evidence
    reverse = compare_runs(base, cand, VerdictPolicy()).metrics[0]
    assert reverse.ratio < 1 / 1.6 and reverse.verdict == "inconclusive"
    assert (
        "the device's speed reference moved -" in reverse.evidence
        or "the baseline run's speed reference scattered" in reverse.evidence
    ), reverse.evidence
