"""The one result record: what a finished device test is, in results.json, the database and reports.

Every module that stores, compares or shows a result reads and writes this type; JSON, the
database columns (harness/store/db.py) and docs/results-schema.md are derived from its fields.
Measurement types (latency, memory, energy, thermal) are the dataclasses the runners produce.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.measurement import Cooldown, LatencyProtocol, MemoryUsage
from harness.probes.cpus import CpuPlacement
from harness.probes.energy import EnergyReport
from harness.probes.reference import SpeedReference
from harness.probes.thermal import SustainedCurve, ThermalTrace, ThrottleVerdict
from harness.stats import LatencySummary, ModesCheck, Verdict

SCHEMA_VERSION: Literal[2] = 2

Status = Literal["passed", "failed", "error", "skipped"]
# What protocol produced the numbers: a test that benchmarks, evaluates accuracy or runs sustained
# measures the same variant in three ways, and each is compared only with its own kind.
Kind = Literal["latency", "accuracy", "sustained", "interleaved"]


@dataclass(frozen=True, order=True)
class ResultIdentity:
    """What makes two results comparable: the same test (without its device), device, variant and
    protocol kind. The model's bytes are not part of it: a changed model file is compared with the
    old file's result, and the comparison says the artifact changed."""

    test_id: str
    device: str
    model: str
    runtime: str
    precision: str
    threads: int | None
    kind: str

    def label(self) -> str:
        threads = "" if self.threads is None else f" x{self.threads}"
        return f"{self.test_id} on {self.device} ({self.runtime}/{self.precision}{threads}, {self.kind})"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunReferences(_Frozen):
    """A device's speed reference at the start of the run (carried by each of its records) and
    at its end: how much the device's speed moved while the run measured."""

    start: SpeedReference | None = None
    end: SpeedReference | None = None


class RunInfo(_Frozen):
    """Who ran what, where and on which code: once per run (results.json ``run``, table ``runs``)."""

    id: str
    started_at: str
    git_commit: str | None = None
    git_branch: str | None = None
    git_dirty: bool | None = None
    harness_version: str | None = None
    host: str | None = None
    host_python: str | None = None
    ci: bool = False
    ci_job_id: str | None = None
    devices: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    policy: dict[str, Any] | None = None  # the verdict policy of the run (harness.compare)
    speed_references: dict[str, RunReferences] | None = None  # per device, start and end of the run
    complete: bool | None = None  # set when pytest ended normally; a killed run has none
    finished_at: str | None = None

    def ref(self) -> RunRef:
        return RunRef(
            id=self.id,
            git_commit=self.git_commit,
            git_branch=self.git_branch,
            harness_version=self.harness_version,
            ci_job_id=self.ci_job_id,
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class RunRef(_Frozen):
    """The run a record belongs to, copied into every record so a record stands alone."""

    id: str
    git_commit: str | None = None
    git_branch: str | None = None
    harness_version: str | None = None
    ci_job_id: str | None = None


class LabgridPlaceRecord(_Frozen):
    """The labgrid place a device (devices.yaml ``kind: labgrid``) was acquired as for the run."""

    coordinator: str
    place: str
    resource: str  # exporter/group/class/name of the resource EdgeLab reached the device through
    address: str  # host:port over SSH, the adb serial over adb


class DeviceFingerprint(_Frozen):
    """Enough to tell two devices (or two OS builds of one device) apart in the history."""

    kind: str
    virtual: bool
    system: str | None = None
    release: str | None = None
    machine: str | None = None
    android: dict[str, str | None] | None = None
    cpu_model: str | None = None
    cpu_cores: int | None = None
    python: str | None = None
    numpy: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    labgrid: LabgridPlaceRecord | None = None


class DeployRecord(_Frozen):
    """What placing this test's artifacts on the device did."""

    bytes_pushed: int = 0
    pushed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    present: tuple[str, ...] = ()


class SliceRecord(_Frozen):
    samples: int
    metrics: dict[str, float]
    fp32: dict[str, float]
    agreement: float


class SliceValue(_Frozen):
    slice: str
    value: float


class SliceDrop(_Frozen):
    slice: str
    points: float


class AccuracyRecord(_Frozen):
    """Accuracy of a variant per slice next to the host fp32 reference (harness.accuracy)."""

    task: str
    metric: str
    precision: str
    clean: float
    worst_slice: SliceValue
    max_drop_vs_fp32_points: SliceDrop
    slices: dict[str, SliceRecord]


class BudgetCheck(_Frozen):
    """One of the product's budgets (models.yaml ``budgets:``) against this result."""

    metric: Literal["latency_p90_ms", "peak_rss_mb", "energy_mj_per_inference", "accuracy_drop_points"]
    limit: float
    value: float | None  # None: not measured on this device or by this protocol
    ok: bool | None  # None: not judged (nothing measured)
    evidence: str


class MetricComparison(_Frozen):
    metric: str  # latency_median_ms, peak_rss_mb, energy_mj_per_inference
    baseline: float
    candidate: float
    ratio: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    verdict: Verdict
    evidence: str


class InterleavedEvidence(_Frozen):
    """The baseline's artifact measured in this session, in ABBA rounds with the candidate."""

    rounds: int
    baseline_artifact: str  # where its bytes were found: host cache, device cache or a path
    baseline_latency_ms: LatencySummary
    baseline_modes: ModesCheck | None = None
    baseline_round_medians_ms: tuple[float, ...]
    candidate_round_medians_ms: tuple[float, ...]


class ComparisonRecord(_Frozen):
    """A result against its baseline: one verdict from one policy (harness.compare)."""

    mode: Literal["runs", "interleaved"]
    baseline_run: str | None
    verdict: Verdict
    metrics: tuple[MetricComparison, ...] = ()
    baseline_model_sha256: str | None = None
    artifact_changed: bool = False
    notes: tuple[str, ...] = ()
    interleaved: InterleavedEvidence | None = None


class ResultRecord(_Frozen):
    """One finished device test (see docs/results-schema.md)."""

    schema_version: Literal[2] = SCHEMA_VERSION
    run_id: str
    run: RunRef
    test: str
    test_id: str
    kind: Kind
    status: Status
    error: str | None = None
    duration_s: float | None = None
    finished_at: str
    device: str
    device_kind: str
    virtual: bool
    device_fingerprint: DeviceFingerprint | None = None
    model: str
    model_sha256: str | None = None
    model_source: str | None = None
    model_path: str | None = None
    format: str
    runtime: str
    precision: str
    threads: int | None = None
    runner: Literal["agent", "native"] | None = None
    runtime_module: str | None = None
    runtime_version: str | None = None
    latency_ms: LatencySummary | None = None
    latency_samples_ms: tuple[float, ...] | None = None
    start_offsets_ms: tuple[float, ...] | None = None
    memory: MemoryUsage | None = None
    energy: EnergyReport | None = None
    throttle: ThrottleVerdict | None = None
    thermal_trace: ThermalTrace | None = None
    cooldown: Cooldown | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    load_ms: float | None = None
    first_inference_ms: float | None = None
    iterations: int | None = None
    stopped_by: str | None = None
    rounds: int = 1
    agent_phases_ms: dict[str, float] | None = None
    protocol: LatencyProtocol | None = None
    cpus: CpuPlacement | None = None
    modes: ModesCheck | None = None
    speed_reference: SpeedReference | None = None
    trace_file: str | None = None
    sustained: SustainedCurve | None = None
    accuracy: AccuracyRecord | None = None
    deploy: DeployRecord | None = None
    budgets: tuple[BudgetCheck, ...] = ()
    comparison: ComparisonRecord | None = None

    def identity(self) -> ResultIdentity:
        return ResultIdentity(
            self.test_id, self.device, self.model, self.runtime, self.precision, self.threads, self.kind
        )

    @property
    def variant_label(self) -> str:
        return f"{self.runtime}/{self.precision}"

    @property
    def peak_rss_mb(self) -> float | None:
        return self.memory.peak_rss_mb if self.memory is not None else None

    @property
    def median_ms(self) -> float | None:
        return self.latency_ms.median if self.latency_ms is not None else None

    @property
    def verdict(self) -> Verdict | None:
        return self.comparison.verdict if self.comparison is not None else None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data (non-finite numbers become null, as JSON has none)."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data

    @classmethod
    def from_json(cls, data: Any) -> ResultRecord:
        """Validate a stored record, upgrading schema 1 records on the way."""
        if isinstance(data, dict) and data.get("schema_version") == 1:
            data = upgrade_v1(data)
        return cls.model_validate(data)


# Raw series: kept beside the record in the database (table ``samples``), not in its row.
RAW_FIELDS = ("latency_samples_ms", "start_offsets_ms", "thermal_trace")


def test_id_of(nodeid: str, device: str) -> str:
    """The node id without its device: ``t.py::test[pixel8-m-litert-fp32]`` -> ``t.py::test[m-litert-fp32]``.

    The device is the first part of the ``edge`` parameter's id (``DEVICE-VARIANT``), which may sit
    among other parameters' ids joined by ``-``; the first bracket holds it."""
    match = re.search(r"\[([^\]]*)\]", nodeid)
    if match is None:
        return nodeid
    inside = match.group(1)
    if inside.startswith(f"{device}-"):
        stripped = inside[len(device) + 1 :]
    elif f"-{device}-" in inside:
        stripped = inside.replace(f"-{device}-", "-", 1)
    else:
        return nodeid
    return nodeid[: match.start(1)] + stripped + nodeid[match.end(1) :]


def _kind_of_v1(record: dict[str, Any]) -> str:
    if record.get("sustained"):
        return "sustained"
    if record.get("accuracy"):
        return "accuracy"
    if "::interleaved[" in str(record.get("test", "")) or (record.get("rounds") or 1) > 1:
        return "interleaved"
    return "latency"


def upgrade_v1(record: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record (EdgeLab 0.1) in the shape of schema 2, so older runs stay baselines."""
    old = dict(record)
    thermal = old.pop("thermal", None) or {}
    memory_keys = ("peak_rss_mb", "load_peak_rss_mb", "baseline_rss_mb", "pss_mb", "pss_source")
    memory = {key: old.pop(key, None) for key in memory_keys}
    old.pop("comparison", None)  # verdicts are made again under today's policy
    for dropped in ("sample_index",):
        old.pop(dropped, None)
    verdict = thermal.get("verdict")
    if verdict is not None:
        verdict = dict(verdict)
        verdict.setdefault("drifted", any("latency drift" in r for r in verdict.get("reasons") or []))
    trace = thermal.get("trace")
    if trace is not None:
        trace = dict(trace)
        trace["samples"] = [
            {**sample, "temps_c": sample.get("temps_c", []), "cur_khz": sample.get("cur_khz", [])}
            for sample in trace.get("samples", [])
        ]
        trace["status"] = [[s["offset_s"], s["value"]] for s in trace.get("status", [])]
    upgraded = {
        **old,
        "schema_version": SCHEMA_VERSION,
        "test_id": test_id_of(str(old.get("test", "")), str(old.get("device", ""))),
        "kind": _kind_of_v1(record),
        "memory": {
            "baseline_mb": memory["baseline_rss_mb"],
            "load_peak_mb": memory["load_peak_rss_mb"],
            "peak_rss_mb": memory["peak_rss_mb"],
            "pss_mb": memory["pss_mb"],
            "pss_source": memory["pss_source"],
        }
        if memory["peak_rss_mb"] is not None or memory["load_peak_rss_mb"] is not None
        else None,
        "throttle": verdict,
        "thermal_trace": trace,
    }
    return upgraded
