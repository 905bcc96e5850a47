"""The one place a verdict is made: a result's identity -> its baseline -> one policy.

``--baseline`` takes a run id (from the results store), ``branch:NAME`` (the newest run on that
branch with a result of the same identity), or a path to a results.json / run folder. A baseline
is the same identity (test without its device, device, variant, protocol kind) in that run.
Latency is compared on raw samples (harness.stats), or on ABBA rounds measured in this session
(``--interleave-baseline``); peak memory and energy, measured once per run, against a margin and
their own uncertainty. The policy is built once from the fleet and the options, stored with the
run, and used by the pytest run, ``edgelab report``, ``edgelab pr-comment`` and the history alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.record import (
    ComparisonRecord,
    InterleavedEvidence,
    MetricComparison,
    ResultIdentity,
    ResultRecord,
)
from harness.stats import ALPHA, CONFIDENCE, NOISE_FLOOR, Comparison, ModesCheck, Verdict, compare, worst
from harness.store.db import ResultsStore
from harness.store.results_json import RESULTS_FILE

MEMORY_MARGIN = 0.05  # peak RSS is nearly deterministic: 5% (and 2 MB) is a real change
MEMORY_MIN_MB = 2.0
ENERGY_SIGMAS = 2.58  # a change beyond 2.58 combined standard errors (99%)
# ABBA rounds cancel drift between the two sides, so the floor only has to absorb what is left:
# the rounds' own spread, which the t interval already carries (docs/statistics.md).
INTERLEAVED_FLOOR = 0.02
# A speed reference whose median repetition is this much slower than its fastest: the device did
# not run at one speed while it was timed (other work took its cores), so neither will a model
# timed on it then, and a change between two such runs is no verdict. Measured on a shared 2-core
# host: 3-5% on a steady device, 12-120% at the starts of the runs that gave A/A false alarms.
BUSY_REFERENCE = 0.10


@dataclass(frozen=True)
class VerdictPolicy:
    """How much change is noise, per device, and the margins of memory and energy.

    Precedence of the latency floor: ``--noise-floor`` (every device), then the device's
    ``noise_floor`` in devices.yaml, then NOISE_FLOOR."""

    noise_floor: float = NOISE_FLOOR
    device_floors: Mapping[str, float] = field(default_factory=dict)
    interleaved_floor: float = INTERLEAVED_FLOOR
    memory_margin: float = MEMORY_MARGIN
    memory_min_mb: float = MEMORY_MIN_MB
    energy_sigmas: float = ENERGY_SIGMAS
    alpha: float = ALPHA
    confidence: float = CONFIDENCE

    def __post_init__(self) -> None:
        for name, value in (("noise floor", self.noise_floor), ("interleaved floor", self.interleaved_floor)):
            if not 0 <= value < 1:
                raise ConfigError(f"{name} {value} must be a fraction in [0, 1), e.g. 0.03 for 3%")

    @classmethod
    def build(cls, device_floors: Mapping[str, float | None], noise_floor: float | None) -> VerdictPolicy:
        """From the fleet's per-device floors and ``--noise-floor`` (None when not given)."""
        if noise_floor is not None:
            return cls(noise_floor=noise_floor)
        return cls(device_floors={name: f for name, f in device_floors.items() if f is not None})

    def floor(self, device: str) -> float:
        return self.device_floors.get(device, self.noise_floor)

    def to_json(self) -> dict[str, Any]:
        return {
            "noise_floor": self.noise_floor,
            "device_floors": dict(self.device_floors),
            "interleaved_floor": self.interleaved_floor,
            "memory_margin": self.memory_margin,
            "memory_min_mb": self.memory_min_mb,
            "energy_sigmas": self.energy_sigmas,
            "alpha": self.alpha,
            "confidence": self.confidence,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerdictPolicy:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["device_floors"] = dict(known.get("device_floors") or {})
        return cls(**known)


# -- one comparison ---------------------------------------------------------------------------------


def _latency_evidence(result: Comparison, floor: float, label: str) -> str:
    rounds = f", {result.paired_rounds} ABBA rounds" if result.paired_rounds else ""
    test = "t test on round ratios" if result.paired_rounds else "Mann-Whitney"
    return (
        f"median {result.baseline_median:.4g} -> {result.candidate_median:.4g} ms "
        f"({result.change:+.1%}, 99% CI {result.ci_low - 1:+.1%}..{result.ci_high - 1:+.1%}, "
        f"{test} p={result.p_value:.2g}, n={result.n_baseline}/{result.n_candidate}{rounds}, "
        f"{label} floor {floor:.0%})"
    )


def _latency_metric(
    result: Comparison,
    evidence: str,
    caveats: Sequence[str],
    blockers: Sequence[str] = (),
    *,
    reach: float | None = None,
    floor: float = 0.0,
) -> MetricComparison:
    """``caveats`` (a flagged run) forbid a regressed or improved verdict unless the change is
    beyond ``reach``, what the flagged runs' own change of state could make of it (None: not
    bounded); ``blockers`` (two modes in a run, a device that changed speed between the runs)
    forbid any verdict."""
    verdict = result.verdict
    if caveats and verdict in (Verdict.REGRESSED, Verdict.IMPROVED):
        beyond = reach is not None and (
            result.ci_low > reach * (1 + floor)
            if verdict == Verdict.REGRESSED
            else result.ci_high < (1 - floor) / reach
        )
        if beyond:
            caveats = [caveat.removesuffix(_MAY_BE_STATE) for caveat in caveats]
            caveats.append(f"the change is beyond the {reach:.2f}x the drift can make of it")
        else:
            verdict = Verdict.INCONCLUSIVE  # the change may be the device's, not the variant's
    if blockers:
        verdict = Verdict.INCONCLUSIVE
        caveats = (*caveats, *blockers)
    return MetricComparison(
        metric="latency_median_ms",
        baseline=result.baseline_median,
        candidate=result.candidate_median,
        ratio=result.ratio,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        p_value=result.p_value,
        verdict=verdict,
        evidence=evidence + "".join(f"; {caveat}" for caveat in caveats),
    )


def _same_measurement(record: ResultRecord) -> MetricComparison:
    """Identical samples are one measurement, not two: no change, whatever their count."""
    median = record.median_ms or 0.0
    return MetricComparison(
        metric="latency_median_ms",
        baseline=median,
        candidate=median,
        ratio=1.0,
        ci_low=1.0,
        ci_high=1.0,
        p_value=1.0,
        verdict=Verdict.UNCHANGED,
        evidence=f"median {median:.4g} ms: the same samples on both sides (a result compared with itself)",
    )


def _modes_blockers(
    baseline: ModesCheck | None,
    candidate: ModesCheck | None,
    medians: tuple[float | None, float | None],
    floor: float,
) -> list[str]:
    """A run whose iterations fall into two separated modes (a thread pool that parks on a busy
    core) has no single latency to compare, unless the change is larger than the modes: every
    candidate centre beyond every baseline centre by the floor, the same way, whichever mode a
    median fell in."""
    found = []
    for side, check in (("baseline", baseline), ("candidate", candidate)):
        if check is not None and check.bimodal:
            modes = ", ".join(f"{m.centre_ms:.4g} ms ({m.share:.0%})" for m in check.modes)
            found.append(
                f"{side} run has two latency modes ({modes}; separation {check.separation or 0:.1f}): "
                "no single latency to compare"
            )
    if not found:
        return []
    before, after = (
        _centres(check, median) for check, median in zip((baseline, candidate), medians, strict=True)
    )
    ratios = [a / b for a in after for b in before]
    if ratios and (all(r > 1 + floor for r in ratios) or all(r < 1 - floor for r in ratios)):
        return []
    return found


def _centres(check: ModesCheck | None, median: float | None) -> list[float]:
    """Where a run's latency sits: its two mode centres, or its median (none when unknown)."""
    if check is not None and check.bimodal:
        return [m.centre_ms for m in check.modes if m.centre_ms > 0]
    return [median] if median is not None and median > 0 else []


def _reference_blocker(baseline: ResultRecord, candidate: ResultRecord, floor: float) -> list[str]:
    """Two runs on a device whose own speed moved beyond the floor cannot tell the device's change
    from the model's: the speed reference (harness.probes.reference) timed at each run's start.
    Moved means the median and the fastest repetition moved beyond the floor, the same way, and
    every repetition of one run was slower than every one of the other: a few repetitions of a
    short loop scatter on a busy host, and scatter is no move."""
    before, after = baseline.speed_reference, candidate.speed_reference
    if (
        before is None
        or after is None
        or before.shell != after.shell
        or before.iterations != after.iterations
    ):
        return []
    by_median = after.median_ms / before.median_ms
    by_minimum = min(after.times_ms) / min(before.times_ms)
    slower = all(ratio > 1 + floor for ratio in (by_median, by_minimum)) and min(after.times_ms) > max(
        before.times_ms
    )
    faster = all(ratio < 1 - floor for ratio in (by_median, by_minimum)) and max(after.times_ms) < min(
        before.times_ms
    )
    found = []
    if slower or faster:
        found.append(
            f"the device's speed reference moved {by_median - 1:+.1%} between the runs "
            f"({before.median_ms:.4g} -> {after.median_ms:.4g} ms, fastest {by_minimum - 1:+.1%}): "
            "the device, not the model, may have changed"
        )
    for side, reference in (("baseline", before), ("candidate", after)):
        scatter = reference.median_ms / min(reference.times_ms) - 1
        if scatter > BUSY_REFERENCE:
            found.append(
                f"the {side} run's speed reference scattered (median {reference.median_ms:.4g} ms, "
                f"fastest {min(reference.times_ms):.4g} ms, {scatter:+.0%}): the device was busy "
                "while it was timed"
            )
    return found


_MAY_BE_STATE = ": the change may be the device's state"


def _flag_caveats(baseline: ResultRecord, candidate: ResultRecord) -> tuple[list[str], float | None]:
    """A run that was throttled or drifted cannot tell its own change from the device's. With the
    caveats, how far the flagged runs' state can move a median: within a drifted run latency
    rose by its drift ratio, so the two medians by at most the product of those; None when a run
    was throttled (a cap or a thermal state in force from the start shows in no ratio)."""
    caveats = []
    reach: float | None = 1.0
    for side, record in (("baseline", baseline), ("candidate", candidate)):
        verdict = record.throttle
        if verdict is not None and verdict.flagged:
            what = "throttled" if verdict.throttled else "drifted"
            caveats.append(f"{side} run {what} ({'; '.join(verdict.reasons)}){_MAY_BE_STATE}")
            if verdict.throttled or verdict.drift_ratio is None or reach is None:
                reach = None
            else:
                reach *= max(verdict.drift_ratio, 1 / verdict.drift_ratio)
    return caveats, reach


def _memory_metric(baseline: float, candidate: float, policy: VerdictPolicy) -> MetricComparison:
    ratio = candidate / baseline
    delta = candidate - baseline
    if ratio > 1 + policy.memory_margin and delta > policy.memory_min_mb:
        verdict = Verdict.REGRESSED
    elif ratio < 1 - policy.memory_margin and -delta > policy.memory_min_mb:
        verdict = Verdict.IMPROVED
    else:
        verdict = Verdict.UNCHANGED
    return MetricComparison(
        metric="peak_rss_mb",
        baseline=baseline,
        candidate=candidate,
        ratio=ratio,
        ci_low=None,
        ci_high=None,
        p_value=None,
        verdict=verdict,
        evidence=f"peak RSS {baseline:.1f} -> {candidate:.1f} MB ({ratio - 1:+.1%}; margin "
        f"{policy.memory_margin:.0%} and {policy.memory_min_mb:g} MB)",
    )


def _energy_metric(
    baseline: ResultRecord, candidate: ResultRecord, floor: float, policy: VerdictPolicy
) -> MetricComparison | None:
    before, after = baseline.energy, candidate.energy
    if before is None or after is None or before.source != after.source:
        return None
    b, c = before.mj_per_inference, after.mj_per_inference
    if not b or not c:
        return None
    spread = math.hypot(before.uncertainty_mj_per_inference or 0.0, after.uncertainty_mj_per_inference or 0.0)
    delta = c - b
    beyond = abs(delta) > policy.energy_sigmas * spread and abs(delta) / b > floor
    verdict = (Verdict.REGRESSED if delta > 0 else Verdict.IMPROVED) if beyond else Verdict.UNCHANGED
    return MetricComparison(
        metric="energy_mj_per_inference",
        baseline=b,
        candidate=c,
        ratio=c / b,
        ci_low=None,
        ci_high=None,
        p_value=None,
        verdict=verdict,
        evidence=f"energy {b:.4g} -> {c:.4g} mJ/inference ({c / b - 1:+.1%}, uncertainty +-{spread:.2g} mJ)",
    )


def _once_per_run_metrics(
    baseline: ResultRecord, candidate: ResultRecord, floor: float, policy: VerdictPolicy
) -> list[MetricComparison]:
    metrics = []
    if baseline.peak_rss_mb and candidate.peak_rss_mb:
        metrics.append(_memory_metric(baseline.peak_rss_mb, candidate.peak_rss_mb, policy))
    energy = _energy_metric(baseline, candidate, floor, policy)
    if energy is not None:
        metrics.append(energy)
    return metrics


def _finish(
    mode: str,
    baseline: ResultRecord,
    candidate: ResultRecord,
    metrics: list[MetricComparison],
    notes: list[str],
    *,
    interleaved: InterleavedEvidence | None = None,
) -> ComparisonRecord:
    changed = (
        baseline.model_sha256 is not None
        and candidate.model_sha256 is not None
        and baseline.model_sha256 != candidate.model_sha256
    )
    if changed:
        notes.append(
            f"the model file changed: sha256 {str(baseline.model_sha256)[:12]} -> "
            f"{str(candidate.model_sha256)[:12]}"
        )
    if not metrics:
        notes.append("nothing to compare: neither latency samples nor memory nor energy on both sides")
    verdict = worst([m.verdict for m in metrics]) if metrics else Verdict.INCONCLUSIVE
    return ComparisonRecord(
        mode="interleaved" if mode == "interleaved" else "runs",
        baseline_run=baseline.run_id,
        verdict=verdict,
        metrics=tuple(metrics),
        baseline_model_sha256=baseline.model_sha256,
        artifact_changed=changed,
        notes=tuple(notes),
        interleaved=interleaved,
    )


def new_result() -> ComparisonRecord:
    """A result with no baseline of its identity."""
    return ComparisonRecord(mode="runs", baseline_run=None, verdict=Verdict.NEW)


def compare_runs(
    candidate: ResultRecord, baseline: ResultRecord | None, policy: VerdictPolicy
) -> ComparisonRecord:
    """Two runs, each measured on its own: drift between them is indistinguishable from a change,
    so a flagged side makes a latency change inconclusive instead of a verdict."""
    if baseline is None:
        return new_result()
    floor = policy.floor(candidate.device)
    metrics: list[MetricComparison] = []
    base_samples = baseline.latency_samples_ms or ()
    cand_samples = candidate.latency_samples_ms or ()
    notes: list[str] = []
    if base_samples and base_samples == cand_samples:
        metrics.append(_same_measurement(candidate))  # a result compared with itself
    elif len(base_samples) >= 2 and len(cand_samples) >= 2:
        result = compare(
            base_samples, cand_samples, noise_floor=floor, alpha=policy.alpha, confidence=policy.confidence
        )
        evidence = _latency_evidence(result, floor, "noise")
        medians = (baseline.median_ms, candidate.median_ms)
        blockers = _modes_blockers(baseline.modes, candidate.modes, medians, floor) + _reference_blocker(
            baseline, candidate, floor
        )
        caveats, reach = _flag_caveats(baseline, candidate)
        metrics.append(_latency_metric(result, evidence, caveats, blockers, reach=reach, floor=floor))
    else:
        notes.append("latency: no per-iteration samples on both sides; not compared")
    metrics += _once_per_run_metrics(baseline, candidate, floor, policy)
    return _finish("runs", baseline, candidate, metrics, notes)


def compare_interleaved(
    candidate: ResultRecord,
    baseline: ResultRecord,
    result: Comparison,
    evidence: InterleavedEvidence,
    policy: VerdictPolicy,
) -> ComparisonRecord:
    """The baseline's artifact and the candidate measured in ABBA rounds in this session
    (``result`` from harness.stats.compare_rounds): drift falls on both alike."""
    floor = policy.interleaved_floor
    text = _latency_evidence(result, floor, "interleaved")
    medians = (evidence.baseline_latency_ms.median, candidate.median_ms)
    blockers = _modes_blockers(evidence.baseline_modes, candidate.modes, medians, floor)  # these rounds
    metrics = [_latency_metric(result, text, (), blockers)]
    metrics += _once_per_run_metrics(baseline, candidate, floor, policy)
    return _finish("interleaved", baseline, candidate, metrics, [], interleaved=evidence)


# -- where baselines come from ----------------------------------------------------------------------


class BaselineSource:
    """Finds the baseline record of a result identity, from one of the three kinds of spec."""

    def __init__(self, spec: str, store: ResultsStore | None, current_run: str | None = None) -> None:
        self.spec = spec
        self.store = store
        self.current_run = current_run
        self._runs: dict[str, dict[ResultIdentity, ResultRecord]] = {}
        self.branch: str | None = None
        self.run_id: str | None = None
        self._file_records: dict[ResultIdentity, ResultRecord] | None = None
        if spec.startswith("branch:"):
            self.branch = spec[len("branch:") :]
            self._need_store()
        elif Path(spec).exists():
            self._file_records = _index(read_results(Path(spec)))
        else:
            self._need_store()
            assert self.store is not None
            if self.store.run(spec) is None:
                known = ", ".join(r.id for r in self.store.runs(limit=5)) or "none"
                raise ConfigError(
                    f"--baseline {spec}: no such run in {self.store.label} and no such path "
                    f"(latest runs: {known}); give a run id, branch:NAME or a results.json path"
                )
            self.run_id = spec

    def _need_store(self) -> None:
        if self.store is None:
            raise ConfigError(f"--baseline {self.spec} needs the results database; drop --results-db none")

    def _run(self, run_id: str) -> dict[ResultIdentity, ResultRecord]:
        if run_id not in self._runs:
            assert self.store is not None
            self._runs[run_id] = _index(self.store.records(run_id))
        return self._runs[run_id]

    def find(self, identity: ResultIdentity) -> ResultRecord | None:
        if self._file_records is not None:
            return self._file_records.get(identity)
        if self.run_id is not None:
            return self._run(self.run_id).get(identity)
        assert self.store is not None and self.branch is not None
        run_id = self.store.latest_run_with(branch=self.branch, identity=identity, before=self.current_run)
        return None if run_id is None else self._run(run_id).get(identity)


def _index(records: Iterable[ResultRecord]) -> dict[ResultIdentity, ResultRecord]:
    """Passed results by identity (a rerun of the same identity in one run: the last one)."""
    return {record.identity(): record for record in records if record.status == "passed"}


def read_results(path: Path) -> list[ResultRecord]:
    """The records of a results.json (or of the run folder holding one), validated."""
    file = path / RESULTS_FILE if path.is_dir() else path
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        records = document["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{file}: not a readable results.json ({exc})") from None
    if not isinstance(records, list):
        raise ConfigError(f"{file}: 'results' is not a list")
    from pydantic import ValidationError

    try:
        return [ResultRecord.from_json(record) for record in records]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"{file}: a record does not match the results schema at {where}: {first['msg']}"
        ) from None
