"""A result against its baseline (harness.compare): identity, one policy, the verdict rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.compare import BaselineSource, VerdictPolicy, compare_interleaved, compare_runs, read_results
from harness.errors import ConfigError
from harness.probes.reference import SpeedReference
from harness.probes.thermal import ThrottleVerdict
from harness.record import InterleavedEvidence
from harness.stats import Verdict, compare_rounds, detect_modes
from tests.factories import energy, make_record, samples, write_results

DRIFT = "latency drift: last/first tenth median ratio 1.52"


def drifted() -> ThrottleVerdict:
    return ThrottleVerdict(None, (DRIFT,), None, None, None, 1.52, drifted=True)


def test_a_flagged_side_turns_a_change_into_inconclusive_with_its_reasons():
    candidate = make_record("cand", median_ms=0.13, seed=1, throttle=drifted())
    baseline = make_record("base", median_ms=0.187, seed=2)
    comparison = compare_runs(candidate, baseline, VerdictPolicy())
    latency = comparison.metrics[0]
    assert latency.ratio < 0.75  # the samples say improved...
    assert latency.verdict == Verdict.INCONCLUSIVE  # ...but the candidate run drifted
    assert latency.evidence.endswith(
        f"; candidate run drifted ({DRIFT}): the change may be the device's state"
    )
    assert "baseline run" not in latency.evidence


def test_a_change_beyond_what_the_drift_can_explain_keeps_its_verdict():
    """Within a drifted run latency rose by its drift ratio, so the device's state can move a
    median that far and no further: a 7x regression is one, the drift said alongside."""
    baseline = make_record("base", median_ms=0.03, seed=2)
    candidate = make_record("cand", median_ms=0.2, seed=1, throttle=drifted())
    latency = compare_runs(candidate, baseline, VerdictPolicy()).metrics[0]
    assert latency.verdict == Verdict.REGRESSED and latency.ci_low > 1.52 * 1.03
    assert latency.evidence.endswith(
        f"; candidate run drifted ({DRIFT}); the change is beyond the 1.52x the drift can make of it"
    )
    faster = compare_runs(
        make_record("c", median_ms=0.03, seed=3, throttle=drifted()),
        make_record("b", median_ms=0.2),
        VerdictPolicy(),
    )
    assert faster.metrics[0].verdict == Verdict.IMPROVED


def test_drift_on_both_sides_reaches_as_far_as_both_together():
    both = {"throttle": drifted()}
    base = make_record("base", median_ms=1.0, seed=2, **both)
    policy = VerdictPolicy()
    within = compare_runs(make_record("cand", median_ms=2.0, seed=1, **both), base, policy).metrics[0]
    assert within.ratio == pytest.approx(2.0, rel=0.05)
    assert within.verdict == Verdict.INCONCLUSIVE  # 2x is within 1.52 * 1.52 = 2.31x
    assert within.evidence.count("the change may be the device's state") == 2
    beyond = compare_runs(make_record("cand", median_ms=3.0, seed=1, **both), base, policy).metrics[0]
    assert beyond.verdict == Verdict.REGRESSED and "beyond the 2.31x" in beyond.evidence


def test_a_throttled_run_makes_any_change_inconclusive():
    """A frequency cap in force from the start shows in no drift ratio: nothing bounds its effect."""
    capped = ThrottleVerdict(
        True, ("frequency capped from the start: policy0",), 0.0, 70.0, 0.6, 1.0, drifted=False
    )
    candidate = make_record("cand", median_ms=0.2, seed=1, throttle=capped)
    latency = compare_runs(candidate, make_record("base", median_ms=0.03, seed=2), VerdictPolicy()).metrics[0]
    assert latency.ratio > 5 and latency.verdict == Verdict.INCONCLUSIVE
    assert latency.evidence.endswith(
        "frequency capped from the start: policy0): the change may be the device's state"
    )


def test_steady_runs_carry_no_caveat_and_same_samples_are_unchanged():
    comparison = compare_runs(make_record("cand", seed=1), make_record("base", seed=2), VerdictPolicy())
    (latency, memory) = comparison.metrics
    assert latency.verdict == Verdict.UNCHANGED and "drifted" not in latency.evidence
    assert memory.metric == "peak_rss_mb" and memory.verdict == Verdict.UNCHANGED
    assert comparison.verdict == Verdict.UNCHANGED and comparison.mode == "runs"


def test_a_record_compared_with_itself_is_unchanged():
    record = make_record("run", median_ms=11.0, seed=3, energy=energy(4.0))
    comparison = compare_runs(record, record, VerdictPolicy())
    assert comparison.verdict == Verdict.UNCHANGED
    assert all(m.verdict == Verdict.UNCHANGED and m.ratio == 1.0 for m in comparison.metrics)


def test_slower_faster_and_energy():
    policy = VerdictPolicy()
    base = make_record("base", median_ms=11.0, seed=1, energy=energy(44.0))
    slower = compare_runs(make_record("cand", median_ms=22.0, seed=2, energy=energy(88.0)), base, policy)
    assert slower.verdict == Verdict.REGRESSED and slower.baseline_run == "base"
    latency = slower.metrics[0]
    assert latency.metric == "latency_median_ms" and latency.ratio == pytest.approx(2.0, rel=0.02)
    assert "Mann-Whitney" in latency.evidence and "noise floor 3%" in latency.evidence
    assert (
        next(m for m in slower.metrics if m.metric == "energy_mj_per_inference").verdict == Verdict.REGRESSED
    )
    faster = compare_runs(make_record("cand", median_ms=5.0, seed=3), base, policy)
    assert faster.metrics[0].verdict == Verdict.IMPROVED
    assert compare_runs(make_record("cand"), None, policy).verdict == Verdict.NEW


def test_the_device_floor_the_option_and_the_default():
    fleet_floors = {"pixel8": 0.5, "rpi5": None}
    policy = VerdictPolicy.build(fleet_floors, None)
    assert (policy.floor("pixel8"), policy.floor("rpi5"), policy.floor("other")) == (0.5, 0.03, 0.03)
    assert VerdictPolicy.build(fleet_floors, 0.1).floor("pixel8") == 0.1  # --noise-floor wins
    assert VerdictPolicy.from_json(policy.to_json()) == policy
    base = make_record("base", device="pixel8", median_ms=10.0, seed=1)
    cand = make_record("cand", device="pixel8", median_ms=13.0, seed=2)
    assert compare_runs(cand, base, VerdictPolicy()).verdict == Verdict.REGRESSED
    assert compare_runs(cand, base, policy).verdict == Verdict.UNCHANGED  # 30% is noise on this device
    with pytest.raises(ConfigError, match="noise floor 1.5 must be a fraction"):
        VerdictPolicy(noise_floor=1.5)


def test_a_changed_model_file_is_compared_and_said_so():
    base = make_record("base", model_sha256="a" * 64)
    comparison = compare_runs(make_record("cand", model_sha256="b" * 64), base, VerdictPolicy())
    assert comparison.artifact_changed and comparison.baseline_model_sha256 == "a" * 64
    assert "the model file changed: sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb" in comparison.notes


def test_results_without_samples_are_inconclusive_not_unchanged():
    base = make_record("base", median_ms=None)
    comparison = compare_runs(make_record("cand", median_ms=None), base, VerdictPolicy())
    assert comparison.verdict == Verdict.INCONCLUSIVE and comparison.metrics == ()
    assert any("no per-iteration samples" in note for note in comparison.notes)


def test_interleaved_rounds_judge_from_paired_ratios():
    base_rounds = [samples(10.0 * (1 + 0.1 * i), i) for i in range(6)]  # the device drifts 50%...
    cand_rounds = [samples(10.5 * (1 + 0.1 * i), 10 + i) for i in range(6)]  # ...on both sides alike
    result = compare_rounds(base_rounds, cand_rounds, noise_floor=0.02)
    assert result.paired_rounds == 6 and result.ratio == pytest.approx(1.05, rel=0.01)
    assert result.verdict == Verdict.REGRESSED
    evidence = InterleavedEvidence(
        rounds=6,
        baseline_artifact="host cache",
        baseline_latency_ms=make_record().latency_ms,  # type: ignore[arg-type]
        baseline_round_medians_ms=(10.0,) * 6,
        candidate_round_medians_ms=(10.5,) * 6,
    )
    comparison = compare_interleaved(
        make_record("cand"), make_record("base"), result, evidence, VerdictPolicy()
    )
    assert comparison.mode == "interleaved" and comparison.verdict == Verdict.REGRESSED
    assert "6 ABBA rounds" in comparison.metrics[0].evidence
    assert "interleaved floor 2%" in comparison.metrics[0].evidence


def test_baselines_are_found_by_identity_not_by_variant(tmp_path):
    latency = make_record("base", median_ms=1.0, test="s.py::test_latency[local-m-ort-fp32]")
    accuracy = make_record("base", median_ms=9.0, kind="accuracy", test="s.py::test_acc[local-m-ort-fp32]")
    sustained = make_record("base", median_ms=5.0, kind="sustained", test="s.py::test_sus[local-m-ort-fp32]")
    path = write_results(tmp_path, "base", [latency, accuracy, sustained])
    source = BaselineSource(str(path), store=None)
    for record in (latency, accuracy, sustained):
        found = source.find(record.model_copy(update={"run_id": "cand"}).identity())
        assert found is not None and found.test == record.test and found.median_ms == record.median_ms
    other_threads = latency.model_copy(update={"threads": 4})
    assert source.find(other_threads.identity()) is None
    other_device = make_record("cand", device="rpi5", test="s.py::test_latency[rpi5-m-ort-fp32]")
    assert source.find(other_device.identity()) is None


def test_baseline_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="needs the results database"):
        BaselineSource("branch:main", store=None)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="not a readable results.json"):
        BaselineSource(str(bad), store=None)
    odd = tmp_path / "odd.json"
    odd.write_text('{"results": [{"schema_version": 2, "run_id": "x"}]}')
    with pytest.raises(ConfigError, match="does not match the results schema at"):
        read_results(odd)


def reference(median_ms: float, spread: float = 0.01) -> SpeedReference:
    times = tuple(median_ms * (1 + spread * (i - 3) / 3) for i in range(7))
    return SpeedReference("local", "@(#)MIRBSD KSH R59", "epochrealtime", 3000, times, median_ms, 2 * spread)


def test_a_device_whose_speed_reference_moved_is_inconclusive_not_regressed():
    policy = VerdictPolicy()
    base = make_record("base", median_ms=10.0, seed=1, speed_reference=reference(80.0))
    slower_host = make_record("cand", median_ms=13.0, seed=2, speed_reference=reference(104.0))
    comparison = compare_runs(slower_host, base, policy)
    latency = comparison.metrics[0]
    assert latency.ratio == pytest.approx(1.3, rel=0.02)
    assert latency.verdict == Verdict.INCONCLUSIVE  # the host slowed down by as much as the model
    assert "the device's speed reference moved +30.0% between the runs (80 -> 104 ms" in latency.evidence
    steady_host = make_record("cand", median_ms=13.0, seed=2, speed_reference=reference(81.0))
    assert compare_runs(steady_host, base, policy).metrics[0].verdict == Verdict.REGRESSED
    other_shell = make_record(
        "cand", median_ms=13.0, seed=2, speed_reference=dataclasses.replace(reference(104.0), shell="dash")
    )
    assert compare_runs(other_shell, base, policy).metrics[0].verdict == Verdict.REGRESSED  # not comparable


def test_a_run_with_two_latency_modes_is_inconclusive_with_the_modes_as_evidence():
    rng = np.random.default_rng(0)
    mixed = np.concatenate([rng.normal(2.0, 0.05, 300), rng.normal(3.9, 0.1, 300)])
    check = detect_modes((mixed * 1e6).astype(np.int64))
    assert check.bimodal
    base = make_record("base", median_ms=2.0, seed=1)
    cand = make_record("cand", median_ms=4.0, seed=2, modes=check)
    latency = compare_runs(cand, base, VerdictPolicy()).metrics[0]
    assert latency.verdict == Verdict.INCONCLUSIVE
    assert "candidate run has two latency modes (" in latency.evidence and "ms (50%)" in latency.evidence


def test_two_modes_do_not_block_a_change_larger_than_the_modes():
    rng = np.random.default_rng(0)
    mixed = np.concatenate([rng.normal(2.0, 0.05, 300), rng.normal(3.9, 0.1, 300)])
    check = detect_modes((mixed * 1e6).astype(np.int64))
    assert check.bimodal
    # the baseline is 10x faster than either mode: regressed whichever mode the median fell in
    base = make_record("base", median_ms=0.2, seed=1)
    cand = make_record("cand", median_ms=4.0, seed=2, modes=check)
    latency = compare_runs(cand, base, VerdictPolicy()).metrics[0]
    assert latency.verdict == Verdict.REGRESSED, latency.evidence
    assert "two latency modes" not in latency.evidence
    # and the other way round: improved
    assert compare_runs(base, cand, VerdictPolicy()).metrics[0].verdict == Verdict.IMPROVED


def test_a_speed_reference_that_scattered_says_the_device_was_busy():
    policy = VerdictPolicy()
    steady = reference(80.0)
    # one repetition fast, the rest 20% slower: the device was not at one speed while timed
    busy = dataclasses.replace(steady, times_ms=(66.0, 80.0, 80.0, 80.0, 81.0, 82.0, 95.0))
    base = make_record("base", median_ms=10.0, seed=1, speed_reference=steady)
    cand = make_record("cand", median_ms=11.5, seed=2, speed_reference=busy)
    latency = compare_runs(cand, base, policy).metrics[0]
    assert latency.verdict == Verdict.INCONCLUSIVE
    assert (
        "the candidate run's speed reference scattered (median 80 ms, fastest 66 ms, +21%)"
        in latency.evidence
    )
    # a scatter of a few percent is a steady device: the verdict stands
    calm = dataclasses.replace(steady, times_ms=(78.0, 79.0, 80.0, 80.0, 81.0, 82.0, 83.0))
    calm_cand = make_record("cand", median_ms=11.5, seed=2, speed_reference=calm)
    assert compare_runs(calm_cand, base, policy).metrics[0].verdict == Verdict.REGRESSED


def test_scatter_alone_is_no_move_between_runs():
    policy = VerdictPolicy()
    # medians 10% apart but the repetitions overlap: not "moved"
    before = dataclasses.replace(reference(80.0), times_ms=(76.0, 78.0, 79.0, 80.0, 82.0, 84.0, 90.0))
    after = dataclasses.replace(reference(88.0), times_ms=(82.0, 85.0, 87.0, 88.0, 88.0, 89.0, 90.0))
    base = make_record("base", median_ms=10.0, seed=1, speed_reference=before)
    cand = make_record("cand", median_ms=13.0, seed=2, speed_reference=after)
    latency = compare_runs(cand, base, policy).metrics[0]
    assert "speed reference moved" not in latency.evidence and latency.verdict == Verdict.REGRESSED
