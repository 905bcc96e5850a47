"""Candidate vs baseline, per (device, variant): where baselines come from, and the verdicts.

``--baseline`` takes a run id (from the results store), ``branch:NAME`` (the newest run on that
branch that measured the same device and variant), or a path to a results.json / run folder.
Latency is compared on raw samples (harness.stats.compare); peak memory and energy, which a run
measures once, are compared against a fixed margin and their own uncertainty.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.stats import NOISE_FLOOR, compare
from harness.store.db import ResultsStore, variant_key
from harness.store.results_json import RESULTS_FILE

MEMORY_MARGIN = 0.05  # peak RSS is nearly deterministic: 5% (and 2 MB) is a real change
MEMORY_MIN_MB = 2.0
VERDICT_ORDER = {"regressed": 0, "inconclusive": 1, "improved": 2, "unchanged": 3, "new": 4}


@dataclass(frozen=True)
class MetricComparison:
    metric: str  # latency_median_ms, peak_rss_mb, energy_mj_per_inference
    baseline: float
    candidate: float
    ratio: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    verdict: str
    evidence: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RecordComparison:
    device: str
    model: str
    runtime: str
    precision: str
    baseline_run: str | None
    metrics: tuple[MetricComparison, ...] = field(default=())

    @property
    def verdict(self) -> str:
        if self.baseline_run is None:
            return "new"
        verdicts = [m.verdict for m in self.metrics] or ["unchanged"]
        return min(verdicts, key=lambda v: VERDICT_ORDER.get(v, 9))

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline_run": self.baseline_run,
            "verdict": self.verdict,
            "metrics": [m.as_dict() for m in self.metrics],
        }


def compare_records(
    candidate: dict[str, Any], baseline: dict[str, Any] | None, noise_floor: float = NOISE_FLOOR
) -> RecordComparison:
    identity = (
        candidate["device"],
        candidate["model"],
        candidate.get("runtime", ""),
        candidate.get("precision", ""),
    )
    if baseline is None:
        return RecordComparison(*identity, baseline_run=None)
    metrics: list[MetricComparison] = []
    base_samples, cand_samples = (
        baseline.get("latency_samples_ms") or [],
        candidate.get("latency_samples_ms") or [],
    )
    if len(base_samples) >= 2 and len(cand_samples) >= 2:
        result = compare(base_samples, cand_samples, noise_floor=noise_floor)
        caveats = "".join(
            f"; {side} run throttled ({'; '.join(reasons)}): the change may be the device's state"
            for side, reasons in (
                ("baseline", _throttle_reasons(baseline)),
                ("candidate", _throttle_reasons(candidate)),
            )
            if reasons
        )
        metrics.append(
            MetricComparison(
                "latency_median_ms",
                result.baseline_median,
                result.candidate_median,
                result.ratio,
                result.ci_low,
                result.ci_high,
                result.p_value,
                result.verdict,
                f"median {result.baseline_median:.4g} -> {result.candidate_median:.4g} ms "
                f"({result.change:+.1%}, 99% CI {result.ci_low - 1:+.1%}..{result.ci_high - 1:+.1%}, "
                f"Mann-Whitney p={result.p_value:.2g}, n={result.n_baseline}/{result.n_candidate}, "
                f"floor {noise_floor:.0%}){caveats}",
            )
        )
    base_mem, cand_mem = baseline.get("peak_rss_mb"), candidate.get("peak_rss_mb")
    if base_mem and cand_mem:
        ratio = cand_mem / base_mem
        delta = cand_mem - base_mem
        if ratio > 1 + MEMORY_MARGIN and delta > MEMORY_MIN_MB:
            verdict = "regressed"
        elif ratio < 1 - MEMORY_MARGIN and -delta > MEMORY_MIN_MB:
            verdict = "improved"
        else:
            verdict = "unchanged"
        metrics.append(
            MetricComparison(
                "peak_rss_mb", base_mem, cand_mem, ratio, None, None, None, verdict,
                f"peak RSS {base_mem:.1f} -> {cand_mem:.1f} MB ({ratio - 1:+.1%}; "
                f"margin {MEMORY_MARGIN:.0%} and {MEMORY_MIN_MB:g} MB)",
            )
        )  # fmt: skip
    base_energy, cand_energy = baseline.get("energy") or {}, candidate.get("energy") or {}
    b, c = base_energy.get("mj_per_inference"), cand_energy.get("mj_per_inference")
    if b and c and base_energy.get("source") == cand_energy.get("source"):
        spread = math.hypot(
            base_energy.get("uncertainty_mj_per_inference") or 0.0,
            cand_energy.get("uncertainty_mj_per_inference") or 0.0,
        )
        delta = c - b
        beyond = abs(delta) > 2.58 * spread and abs(delta) / b > noise_floor
        verdict = (
            ("regressed" if delta > 0 else "improved")
            if beyond
            else (
                "unchanged"
                if abs(delta) <= 2.58 * spread or abs(delta) / b <= noise_floor
                else "inconclusive"
            )
        )
        metrics.append(
            MetricComparison(
                "energy_mj_per_inference", b, c, c / b, None, None, None, verdict,
                f"energy {b:.4g} -> {c:.4g} mJ/inference ({c / b - 1:+.1%}, uncertainty +-{spread:.2g} mJ)",
            )
        )  # fmt: skip
    return RecordComparison(*identity, baseline_run=baseline.get("run_id"), metrics=tuple(metrics))


def _throttle_reasons(record: dict[str, Any]) -> list[str]:
    """Why the run behind ``record`` was judged throttled (frequency cap, thermal status or latency
    drift); empty when it was not, or was not judged."""
    verdict = (record.get("thermal") or {}).get("verdict") or {}
    return [str(reason) for reason in verdict.get("reasons") or []] if verdict.get("throttled") else []


class BaselineSource:
    """Finds the baseline record of a candidate record, from one of the three kinds of spec."""

    def __init__(self, spec: str, store: ResultsStore | None, current_run: str | None = None) -> None:
        self.spec = spec
        self.store = store
        self.current_run = current_run
        self._records: dict[str, list[dict[str, Any]]] = {}
        self.branch: str | None = None
        self.run_id: str | None = None
        if spec.startswith("branch:"):
            self.branch = spec[len("branch:") :]
            self._need_store()
        elif Path(spec).exists():
            self._records[spec] = _read_results(Path(spec))
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

    def _run_records(self, run_id: str) -> list[dict[str, Any]]:
        if run_id not in self._records:
            assert self.store is not None
            self._records[run_id] = self.store.records(run_id)
        return self._records[run_id]

    def find(self, record: dict[str, Any]) -> dict[str, Any] | None:
        key = variant_key(record)
        if self.branch is not None:
            assert self.store is not None
            run_id = self.store.latest_run_with(
                branch=self.branch, device=record["device"], variant=key, before=self.current_run
            )
            if run_id is None:
                return None
            pool = self._run_records(run_id)
        elif self.run_id is not None:
            pool = self._run_records(self.run_id)
        else:
            pool = self._records[self.spec]
        matches = [
            r
            for r in pool
            if r["device"] == record["device"] and variant_key(r) == key and r.get("status") == "passed"
        ]
        return matches[-1] if matches else None


def _read_results(path: Path) -> list[dict[str, Any]]:
    file = path / RESULTS_FILE if path.is_dir() else path
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        records = document["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--baseline {path}: not a readable results.json ({exc})") from None
    if not isinstance(records, list):
        raise ConfigError(f"--baseline {path}: 'results' is not a list")
    return records
