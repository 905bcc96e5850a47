"""The one orchestrator: selected device + model variant -> measurement -> result record -> store.

Both faces (the pytest plugin and the CLI) build one frozen RunOptions and call this; neither
grows logic of its own. Setting precedence, retries on a lost device, baselines and verdicts
(harness.compare) and writing each result the moment it finishes all live here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import harness
from harness import budgets as budget_checks
from harness import cachefile, health
from harness.accuracy import AccuracyReport, host_reference, score
from harness.catalog import Catalog
from harness.compare import BaselineSource, VerdictPolicy, compare_interleaved, compare_runs
from harness.config import AnyDevice, Fleet
from harness.datasets.npzfile import open_arrays
from harness.datasets.tasks import DEFAULT_SEVERITIES, EvalSet
from harness.deploy import Artifact, Deployer, DeployReport, resolve_workdir
from harness.errors import (
    AgentError,
    CommandFailed,
    CommandTimeout,
    ConfigError,
    ConnectionLost,
    DeviceBusy,
    DeviceUnhealthy,
    EdgeLabError,
    ModelError,
    NotMeasurable,
    TransportError,
)
from harness.interleave import merge, round_protocol, schedule
from harness.lease import DeviceLease
from harness.measurement import BenchmarkResult, LatencyProtocol
from harness.models import artifacts, zoo
from harness.models.variants import Variant
from harness.probes.reference import SpeedReference, SpeedReferenceError, measure_reference
from harness.probes.thermal import SustainedCurve
from harness.record import (
    AccuracyRecord,
    DeployRecord,
    DeviceFingerprint,
    InterleavedEvidence,
    Kind,
    LabgridPlaceRecord,
    ResultIdentity,
    ResultRecord,
    RunInfo,
    RunReferences,
    Status,
    test_id_of,
)
from harness.runners.base import DeviceProbe, Runner, RunRequest
from harness.runners.native import NativeRunner
from harness.runners.python_agent import AgentRunner
from harness.secrets import redact, redact_argv, redact_fields
from harness.stats import Comparison, compare_rounds
from harness.store.db import ResultsStore, StoreError
from harness.store.reconcile import mark_unstored
from harness.store.results_json import ResultsFile, check_run_id, new_run_id
from harness.transport import Transport, device_workdir, labgrid_place, open_transport

T = TypeVar("T")
DEFAULT_PROTOCOL = LatencyProtocol()
INTERLEAVE_ROUNDS = 8


@dataclass(frozen=True)
class RunOptions:
    """Everything that configures a run, resolved once by a face (pytest options, CLI flags, a
    library caller) and never changed after: the same defaults everywhere."""

    reports_dir: Path = Path("reports")
    run_id: str = field(default_factory=new_run_id)
    devices: tuple[str, ...] = ()  # the selection; empty: every device of the fleet
    results_db: str | None = None  # None: results.json only
    threads: int | None = None  # --threads: every device (else devices.yaml, else the default)
    protocol: Mapping[str, float] = field(default_factory=dict)  # --min-iters ... as given
    cooldown_below_c: float | None = None
    energy: str | None = None
    sustained_s: float = 40.0
    lease_timeout_s: float | None = 600.0  # None: no leases
    health_checks: bool = True
    retries: int = 0
    baseline: str | None = None
    fail_on_regression: bool = False
    interleave_baseline: bool = False
    interleave_rounds: int = INTERLEAVE_ROUNDS
    speed_reference: bool = True  # time the device speed reference at each device's start and end
    noise_floor: float | None = None  # --noise-floor: every device (else devices.yaml, else 3%)
    keep_outputs: bool = False  # --keep-outputs: keep evaluate()'s raw outputs after scoring
    command: tuple[str, ...] = ()
    rootdir: Path | None = None  # where model paths start (None: the working directory)
    models_file: Path | None = None  # the project's models.yaml (None: none)

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        LatencyProtocol(**self.merged_protocol({}))  # validate the combination before any test
        if self.fail_on_regression and not self.baseline:
            raise ConfigError(
                "--fail-on-regression needs --baseline (a run id, branch:NAME or a results.json)"
            )
        if self.interleave_baseline and not self.baseline:
            raise ConfigError(
                "--interleave-baseline needs --baseline (a run id, branch:NAME or a results.json)"
            )
        if self.interleave_rounds < 3:
            raise ConfigError(f"--interleave-rounds {self.interleave_rounds}: at least 3 rounds are needed")
        if self.retries < 0:
            raise ConfigError(f"--retries {self.retries}: must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(
                f"--threads {self.threads}: must be >= 1 (an explicit count; 0, the runtime's own default, "
                "is not accepted)"
            )

    def merged_protocol(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Each protocol setting from ``given`` (a test's call), else the options, else the default."""
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(LatencyProtocol):
            value = given.get(spec.name)
            if value is None:
                value = self.protocol.get(spec.name)
            if value is None:
                value = getattr(DEFAULT_PROTOCOL, spec.name)
            values[spec.name] = int(value) if spec.type in ("int", int) else float(value)
        return values


@dataclass
class DeviceSession:
    """A connected device: its transport, its workdir and the runner that measures on it."""

    config: AnyDevice
    transport: Transport
    workdir: str
    deployer: Deployer
    runner: Runner
    reference: SpeedReference | None = None  # the device's speed at the start of the run
    reference_note: str | None = None  # why there is none

    @property
    def probe(self) -> DeviceProbe:
        return self.runner.probe

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.runner.close()
        self.transport.close()

    def fingerprint(self) -> DeviceFingerprint:
        """Enough to tell two devices (or two OS builds of one device) apart in the history; the
        labels are free-form text from devices.yaml, so secrets in them are masked."""
        probe = self.probe
        place = labgrid_place(self.transport)
        return DeviceFingerprint(
            kind=self.config.kind,
            virtual=self.config.virtual,
            system=probe.os.system,
            release=probe.os.release,
            machine=probe.os.machine,
            android=probe.os.android,
            cpu_model=probe.cpu.model,
            cpu_cores=probe.cpu.cores,
            python=probe.python.version if probe.python else None,
            numpy=probe.numpy,
            labels=redact_fields(self.config.labels),
            labgrid=LabgridPlaceRecord(**dataclasses.asdict(place)) if place is not None else None,
        )


@dataclass(frozen=True)
class PairedBaseline:
    """The baseline's artifact measured in this session in ABBA rounds with the candidate."""

    baseline: ResultRecord
    comparison: Comparison
    evidence: InterleavedEvidence


@dataclass(frozen=True)
class Measured:
    """One measurement as the session made it: what the runner returned and where it came from."""

    result: BenchmarkResult
    deploy: DeployReport
    model: Artifact
    runner: Literal["agent", "native"] = "agent"
    paired: PairedBaseline | None = None
    notes: tuple[str, ...] = ()


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() or None if completed.returncode == 0 else None


def _branch() -> str | None:
    """The branch, also in CI's detached checkouts (GitHub: GITHUB_HEAD_REF on PRs, else REF_NAME)."""
    name = _git("rev-parse", "--abbrev-ref", "HEAD")
    if name in (None, "HEAD"):
        return os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME") or name
    return name


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_info(
    options: RunOptions, devices: Sequence[str], policy: VerdictPolicy, started_at: str | None = None
) -> RunInfo:
    """Who ran what, where and on which code: stored once per run and copied into each record."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return RunInfo(
        id=options.run_id,
        started_at=started_at or utc_now(),
        git_commit=_git("rev-parse", "HEAD"),
        git_branch=_branch(),
        git_dirty=bool(dirty),
        harness_version=harness.__version__,
        host=platform.node(),
        host_python=platform.python_version(),
        ci=bool(os.environ.get("CI")),
        ci_job_id=os.environ.get("GITHUB_RUN_ID") or os.environ.get("CI_JOB_ID"),
        devices=tuple(devices),
        command=tuple(redact_argv(list(options.command or sys.argv))),
        policy=policy.to_json(),
    )


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120] or "unnamed"


class Lab:
    """Connections, measurements and results of one run, shared by every test in it."""

    def __init__(self, fleet: Fleet, options: RunOptions | None = None) -> None:
        self.fleet = fleet
        self.options = options or RunOptions()
        self.selected = list(self.options.devices) or fleet.names()
        self.policy = VerdictPolicy.build(
            {name: fleet[name].noise_floor for name in fleet.names()}, self.options.noise_floor
        )
        self.notify: Callable[[str], None] = lambda message: print(message, file=sys.stderr)
        self.started_at = utc_now()  # the session's start, not its first record's
        self._latest_pointed = False
        self._devices: dict[str, DeviceSession] = {}
        self._failures: dict[str, EdgeLabError] = {}
        self._results: ResultsFile | None = None
        self._info: RunInfo | None = None
        self._store: ResultsStore | None = None
        self._run_written = False
        self._store_failed: str | None = None
        self._evalsets: dict[str, EvalSet] = {}
        self.catalog = Catalog(self.options.rootdir, self.options.models_file)
        self._leases: dict[str, DeviceLease] = {}
        self._retries: dict[str, list[str]] = {}  # per device, until the measurement that needed them
        self._raw_names: dict[str, int] = {}
        if self.options.results_db is not None:
            self._store = ResultsStore(self.options.results_db)  # a bad URL fails before any test
        self.baseline = (
            BaselineSource(self.options.baseline, self._store, current_run=self.run_id)
            if self.options.baseline
            else None
        )

    @property
    def run_id(self) -> str:
        return self.options.run_id

    @property
    def reports_dir(self) -> Path:
        return self.options.reports_dir

    # -- devices -----------------------------------------------------------------------------

    def device(self, name: str) -> DeviceSession:
        """Connect once per run; a device that failed to connect fails every later use with the
        same message instead of hammering an absent device."""
        if name in self._devices:
            return self._devices[name]
        if name in self._failures:
            raise self._failures[name]
        config = self.fleet[name]
        checks = self.options.health_checks
        if checks:
            state = health.status(name)
            if state.get("quarantined"):
                raise DeviceUnhealthy(
                    f"device '{name}' is quarantined after {state.get('failures')} failed health checks "
                    f"(last: {state.get('last_problem')}); fix it, then `edgelab devices --release {name}`"
                )
        try:
            self._lease(name)
            session = self._connect_with_retries(config)
        except EdgeLabError as exc:
            self._failures[name] = exc
            if checks and not isinstance(exc, DeviceBusy | StoreError | ConfigError):
                health.record(name, False, str(exc))  # only the device's own failures count
            raise
        if checks:
            verdict = health.check(session.transport, session.workdir)
            state = health.record(name, verdict.ok, "; ".join(verdict.problems))
            if not verdict.ok:
                session.close()
                quarantined = " (now quarantined)" if state.get("quarantined") else ""
                failure = DeviceUnhealthy(
                    f"device '{name}' failed its health check: {'; '.join(verdict.problems)}{quarantined}"
                )
                self._failures[name] = failure
                raise failure
        if self.options.speed_reference:
            session.reference, session.reference_note = _reference(session.transport)
        self._devices[name] = session
        return session

    def forget(self, name: str) -> None:
        """Drop a device's connection (and its remembered failure) so the next use reconnects."""
        session = self._devices.pop(name, None)
        if session is not None:
            session.close()
        self._failures.pop(name, None)

    def _lease(self, name: str) -> None:
        if self.options.lease_timeout_s is None or name in self._leases:
            return
        if not self.fleet[name].leased_by_edgelab:
            return  # a labgrid place: labgrid's reservation queue is the lease (harness.transport.labgrid)
        store = self._store
        advisory = store.advisory_lock if store is not None and store.shared else None
        lease = DeviceLease(
            name,
            run_id=self.run_id,
            timeout_s=self.options.lease_timeout_s,
            advisory=advisory,
            notify=self.notify,
        )
        self._leases[name] = lease.acquire()

    def _connect_with_retries(self, config: AnyDevice) -> DeviceSession:
        """``--retries N`` covers the setup too: a device that stops answering while it is being
        connected, deployed to or probed (a link blip, sshd restarted) is connected again; one that
        answers with a failure is not."""
        attempts = self.options.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._connect(config)
            except (CommandFailed, CommandTimeout):
                raise
            except ConnectionLost as lost:
                if attempt == attempts:
                    raise
                note = f"retry {attempt} of {self.options.retries} after: {lost}"
                self._retries.setdefault(config.name, []).append(note)
                self.notify(f"device '{config.name}': {note}")
                time.sleep(min(10.0, 2.0 * attempt))
        raise AssertionError("unreachable")

    def _connect(self, config: AnyDevice) -> DeviceSession:
        transport = open_transport(config, notify=self._tell, wait_s=self.options.lease_timeout_s)
        try:
            workdir = resolve_workdir(transport, device_workdir(config, transport))
            deployer = Deployer(transport, workdir, config.python)
            stale = deployer.clean_partials()  # left by killed pushes whose writer is gone
            if stale:
                self.notify(f"device '{config.name}': removed {len(stale)} partial file(s) of killed pushes")
            runner: Runner = (
                NativeRunner(config, transport, deployer)
                if config.runner == "native"
                else AgentRunner(config, transport, deployer, notify=self._tell)
            )
        except BaseException:
            transport.close()
            raise
        # the runner's transport: commands go over its persistent channel where it keeps one
        return DeviceSession(config, runner.transport, workdir, deployer, runner)

    def _tell(self, message: str) -> None:
        self.notify(message)  # looked up at call time: a caller may replace ``notify``

    def threads_for(self, device: str, given: int | None = None) -> int:
        """The call's threads, else --threads, else the device's threads in devices.yaml."""
        if given is not None:
            return given
        if self.options.threads is not None:
            return self.options.threads
        return self.fleet[device].threads

    # -- measurement ---------------------------------------------------------------------------

    def with_retries(self, device: str, measure: Callable[[], T]) -> T:
        """``--retries N``: when the connection is lost, reconnect and measure again (a measurement
        is idempotent: nothing is written until it has finished)."""
        attempts = self.options.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return measure()
            except (CommandFailed, CommandTimeout):
                raise  # the device answered: retrying would hide a real failure
            except TransportError as lost:
                if attempt == attempts:
                    raise
                note = f"retry {attempt} of {self.options.retries} after: {lost}"
                self._retries.setdefault(device, []).append(note)
                self.notify(f"device '{device}': {note}")
                self.forget(device)
                time.sleep(min(10.0, 2.0 * attempt))
        raise AssertionError("unreachable")

    def benchmark(
        self,
        device: str,
        variant: Variant,
        protocol: LatencyProtocol | None = None,
        *,
        test_id: str | None = None,
        kind: Kind = "latency",
        settings: Mapping[str, Any] | None = None,
        threads: int | None = None,
        inputs: Path | None = None,
        outputs_to: Path | None = None,
        cooldown_below_c: float | None = None,
        energy: str | None = None,
    ) -> Measured:
        """Measure one variant on one device with ``protocol`` (a library caller's), else each setting
        from ``settings`` (a test's call), else the command line, else the default. With
        ``--interleave-baseline`` the baseline's artifact is measured in ABBA rounds beside it."""
        if protocol is None:
            protocol = LatencyProtocol(**self.options.merged_protocol(settings or {}))
        built = variant.build()  # checked against the sha256 it was built with
        model = Artifact.from_file(built.path)
        if model.sha256 != built.sha256:  # changed on the host since it was checked: never measure it
            raise ModelError(
                f"{variant.id}: {built.path} changed while in use (sha256 {model.sha256}, checked "
                f"{built.sha256}); rerun to rebuild it"
            )
        artifacts.keep(model.local, model.sha256)  # so a later run can measure these bytes again
        input_file = inputs if inputs is not None else self.catalog.benchmark_inputs(variant, zoo.cache_dir())
        config = self.fleet[device]
        raw_name = _safe_name(f"{(test_id or variant.id).rsplit('::', 1)[-1]}-{device}-{kind}")
        request = RunRequest(
            model=model,
            inputs=Artifact.from_file(input_file),
            model_name=variant.model,
            model_format=variant.format,
            runtime=variant.runtime,
            precision=variant.precision,
            protocol=protocol,
            threads=self.threads_for(device, threads),
            energy=energy or self.options.energy,
            cooldown_below_c=cooldown_below_c
            if cooldown_below_c is not None
            else (
                self.options.cooldown_below_c
                if self.options.cooldown_below_c is not None
                else config.cooldown_below_c
            ),
            outputs_to=outputs_to,
            raw_to=self._raw_path(raw_name),
        )
        notes: tuple[str, ...] = ()
        if self.options.interleave_baseline and self.baseline is not None and test_id is not None:
            identity = ResultIdentity(
                test_id, device, variant.model, variant.runtime, variant.precision, request.threads, kind
            )
            baseline = self.baseline.find(identity)
            if baseline is not None:
                located, where = self._baseline_artifact(device, baseline)
                if located is not None:
                    return self._interleave(device, request, baseline, located, where)
                notes = (f"interleaved baseline: {where}; compared with the baseline run instead",)
        result, deploy = self._run(device, request)
        kind_of_runner = self.device(device).runner.kind
        return Measured(
            result, deploy, request.model, kind_of_runner, notes=(*notes, *self._retries.pop(device, []))
        )

    def _raw_path(self, name: str) -> Path:
        """``reports/<run>/traces/<name>``: where a runner keeps the raw files of a measurement
        (a Perfetto trace, a failed tool's output), unique within the run."""
        folder = self.reports_dir / self.run_id / "traces"
        count = self._raw_names.get(name, 0) + 1
        self._raw_names[name] = count
        return folder / (name if count == 1 else f"{name}-{count}")

    def _run(self, device: str, request: RunRequest) -> tuple[BenchmarkResult, DeployReport]:
        return self.with_retries(device, lambda: self.device(device).runner.run(request))

    def _baseline_artifact(self, device: str, baseline: ResultRecord) -> tuple[Artifact | None, str]:
        """The bytes the baseline measured: in the host cache, at the path it recorded, or still
        in the device's content-addressed cache. (None, why) when none has them."""
        digest = baseline.model_sha256
        if not digest:
            return None, "the baseline recorded no model sha256"
        kept = artifacts.find(digest)
        if kept is not None:
            return Artifact.from_file(kept), f"host cache {kept}"
        if baseline.model_path and Path(baseline.model_path).is_file():
            recorded = Artifact.from_file(Path(baseline.model_path))
            if recorded.sha256 == digest:
                return recorded, f"recorded path {baseline.model_path}"
        session = self.device(device)
        name = Path(baseline.model_path).name if baseline.model_path else None
        if name:
            remote = Artifact(Path("/nonexistent"), digest, name, 0)
            found = session.deployer.remote_hashes([session.deployer.remote_path(remote)])
            if next(iter(found.values())) == digest:
                return remote, f"device cache {session.deployer.remote_path(remote)}"
        return None, f"the baseline's model (sha256 {digest[:12]}) is in no cache and at no recorded path"

    def _interleave(
        self, device: str, request: RunRequest, baseline: ResultRecord, located: Artifact, where: str
    ) -> Measured:
        """Candidate and baseline artifact in ABBA rounds on this device; the verdict comes from the
        paired rounds (harness.stats.compare_rounds)."""
        rounds = self.options.interleave_rounds
        per_round = dataclasses.replace(request, protocol=round_protocol(request.protocol, rounds))
        sides = {"candidate": per_round, "baseline": dataclasses.replace(per_round, model=located)}
        parts: dict[str, list[BenchmarkResult]] = {"candidate": [], "baseline": []}
        deploys: list[DeployReport] = []
        for number, side in enumerate(schedule(list(sides), rounds), start=1):
            raw_to = (
                request.raw_to.with_name(f"{request.raw_to.name}-{side}-{number}") if request.raw_to else None
            )
            result, deploy = self._run(device, dataclasses.replace(sides[side], raw_to=raw_to))
            parts[side].append(result)
            if side == "candidate":
                deploys.append(deploy)
        candidate = merge(parts["candidate"], request.protocol)
        baseline_merged = merge(parts["baseline"], request.protocol)
        comparison = compare_rounds(
            [[ns / 1e6 for ns in p.latency_samples_ns] for p in parts["baseline"]],
            [[ns / 1e6 for ns in p.latency_samples_ns] for p in parts["candidate"]],
            noise_floor=self.policy.interleaved_floor,
            alpha=self.policy.alpha,
            confidence=self.policy.confidence,
        )
        evidence = InterleavedEvidence(
            rounds=rounds,
            baseline_artifact=where,
            baseline_latency_ms=baseline_merged.latency_ms,
            baseline_modes=baseline_merged.modes,
            baseline_round_medians_ms=tuple(p.latency_ms.median for p in parts["baseline"]),
            candidate_round_medians_ms=tuple(p.latency_ms.median for p in parts["candidate"]),
        )
        return Measured(
            candidate,
            deploys[0],
            request.model,
            self.device(device).runner.kind,
            paired=PairedBaseline(baseline, comparison, evidence),
            notes=tuple(self._retries.pop(device, [])),
        )

    def evaluate(
        self,
        device: str,
        variant: Variant,
        *,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = DEFAULT_SEVERITIES,
        seed: int = 0,
        threads: int | None = None,
    ) -> tuple[Measured, AccuracyReport]:
        """Run the variant over its evaluation data (the zoo task's, or the team's dataset) on the
        device, every slice, pull the outputs back, and score them per slice against the labels and
        the host run of the model's fp32 variant (when it has one)."""
        unsupported = self.device(device).runner.outputs_unsupported(variant.format)
        if unsupported is not None:
            raise NotMeasurable(unsupported)  # before building the data set and its reference
        folder = zoo.cache_dir() / "evalsets"
        task = self.catalog.evaluation(variant, zoo.cache_dir())
        chosen = tuple(corruptions) if corruptions is not None else task.default_corruptions
        key = task.key(chosen, severities, seed)
        if key not in self._evalsets:
            self._evalsets[key] = task.build(chosen, severities, seed)
        evalset = self._evalsets[key]
        inputs = folder / f"{_safe_name(variant.model)}-{key}.npz"
        cachefile.ensure(inputs, evalset.save)  # written again when its bytes differ from the record
        fp32, missing = self.catalog.fp32_variant(variant)
        reference = None
        if fp32 is not None:
            reference = host_reference(
                fp32.materialize(),
                evalset,
                folder / f"{_safe_name(variant.model)}-{key}-fp32.npz",
                "tflite" if fp32.format == "tflite" else "onnx",
            )
        settings = {
            "warmup_iters": 1,
            "warmup_s": 0.0,
            "min_iters": evalset.size,
            "min_s": 0.0,
            "max_s": 900.0,
            "max_iters": evalset.size,
            "idle_s": 0.0,
        }
        outputs_to = self.reports_dir / self.run_id / "outputs" / _safe_name(f"{device}-{variant.id}")
        measured = self.benchmark(
            device,
            variant,
            kind="accuracy",
            settings=settings,
            threads=threads,
            inputs=inputs,
            outputs_to=outputs_to,
            energy="none",
        )
        scratch = outputs_to.with_name(outputs_to.name + ".d")
        outputs = open_arrays(outputs_to, scratch)
        try:
            report = score(task, evalset, outputs, reference, variant.precision, fp32_missing=missing)
        except ValueError as exc:
            # the outputs stay on disk: they are what explains a failure to score
            raise AgentError(f"device '{device}': {variant.id}: outputs cannot be scored: {exc}") from None
        del outputs
        shutil.rmtree(scratch, ignore_errors=True)  # the arrays unpacked to be memory-mapped
        if not self.options.keep_outputs:  # hundreds of MB per run; the scores are what is kept
            outputs_to.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                outputs_to.parent.rmdir()
        return measured, report

    # -- results -------------------------------------------------------------------------------

    @property
    def info(self) -> RunInfo:
        if self._info is None:
            self._info = run_info(self.options, self.selected, self.policy, self.started_at)
        return self._info

    @property
    def results(self) -> ResultsFile:
        """Created on the first record, so a run with no device test leaves no report folder."""
        if self._results is None:
            self._results = ResultsFile.create(self.reports_dir, self.run_id, self.info)
        return self._results

    def _record_end_references(self) -> None:
        """Each connected device's speed reference at the end of the run, beside the one at its
        start, in results.json: how much the device's speed moved while the run measured."""
        if self._results is None or not self.options.speed_reference:
            return
        ends: dict[str, Any] = {}
        for name, session in self._devices.items():
            try:
                end, _ = _reference(session.transport)
            except EdgeLabError:
                end = None  # the device went away; its start reference stays
            ends[name] = RunReferences(start=session.reference, end=end).model_dump(mode="json")
        if ends:
            self._results.merge_run("speed_references", ends)

    def results_written(self) -> bool:
        """Whether any test of this run recorded a result (in this process or an xdist worker)."""
        return ResultsFile(self.reports_dir, self.run_id).path.exists()

    def read_results(self) -> list[ResultRecord]:
        return ResultsFile(self.reports_dir, self.run_id).records()

    @property
    def store(self) -> ResultsStore | None:
        """The results database, for reading (baselines, reports); None with ``--results-db none``."""
        return self._store

    def finish(self) -> None:
        """The run ended normally: mark it complete (a killed run stays incomplete)."""
        if self._results is not None:
            self._results.update_run(
                complete=True, finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            )
        if self._store is not None and self._run_written:
            with contextlib.suppress(StoreError):
                self._store.finish_run(self.run_id)

    def record(
        self,
        *,
        test: str,
        status: Status,
        device: str,
        variant: Variant,
        kind: Kind = "latency",
        measured: Measured | None = None,
        error: str | None = None,
        duration_s: float | None = None,
        sustained: SustainedCurve | None = None,
        accuracy: AccuracyRecord | None = None,
    ) -> ResultRecord:
        """Build the record of one finished test, compare it with its baseline, and write it to
        results.json and the database now, so a crash later loses nothing."""
        session = self._devices.get(device)
        config = self.fleet[device]
        result = measured.result if measured is not None else None
        notes = (*(result.notes if result else ()), *(measured.notes if measured else ()))
        if session is not None and session.reference_note and measured is not None:
            notes = (*notes, session.reference_note)
        record = ResultRecord(
            run_id=self.run_id,
            run=self.info.ref(),
            test=test,
            test_id=test_id_of(test, device),
            kind=kind,
            status=status,
            error=redact(error) if error else None,
            duration_s=duration_s,
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            device=device,
            device_kind=config.kind,
            virtual=config.virtual,
            device_fingerprint=session.fingerprint() if session is not None else None,
            model=variant.model,
            model_sha256=measured.model.sha256 if measured is not None else variant.spec.sha256,
            model_source=variant.spec.origin,
            model_path=str(measured.model.local) if measured is not None else _source_path(variant),
            format=variant.format,
            runtime=variant.runtime,
            precision=variant.precision,
            threads=result.threads if result is not None else self.threads_for(device),
            runner=measured.runner if measured is not None else None,
            runtime_module=result.runtime.module if result else None,
            runtime_version=result.runtime.version if result else None,
            latency_ms=result.latency_ms if result else None,
            latency_samples_ms=_ms(result.latency_samples_ns) if result else None,
            start_offsets_ms=_ms(result.start_offsets_ns) if result else None,
            memory=result.memory if result else None,
            energy=result.energy if result else None,
            throttle=result.throttle if result else None,
            thermal_trace=result.thermal if result else None,
            cooldown=result.cooldown if result else None,
            warnings=result.warnings if result else (),
            notes=notes,
            load_ms=result.load_ms if result else None,
            first_inference_ms=result.first_inference_ms if result else None,
            iterations=result.iterations if result else None,
            stopped_by=result.stopped_by if result else None,
            rounds=result.rounds if result else 1,
            agent_phases_ms=result.agent_phases_ms if result else None,
            protocol=result.protocol if result else None,
            cpus=result.placement if result else None,
            modes=result.modes if result else None,
            speed_reference=session.reference if session is not None else None,
            sustained=sustained,
            accuracy=accuracy,
            deploy=_deploy_record(measured.deploy) if measured is not None else None,
            trace_file=_relative(result.trace_file, self.reports_dir / self.run_id) if result else None,
        )
        record = self._compared(record, measured)
        record = self._budgeted(record, variant, config.tags, measured)
        self.results.append(record)
        if not self._latest_pointed and (record.latency_ms is not None or record.accuracy is not None):
            self.results.point_latest()
            self._latest_pointed = True
        self._store_record(record)
        return record

    def _budgeted(
        self, record: ResultRecord, variant: Variant, tags: tuple[str, ...], measured: Measured | None
    ) -> ResultRecord:
        """The model's budgets for this device checked against what was measured; a miss fails a
        passed test with the evidence."""
        entry = self.catalog.entry(variant)
        limits = entry.budget_for(tags) if entry is not None else {}
        if not limits or measured is None:
            return record
        checks = budget_checks.check(record, limits)
        update: dict[str, Any] = {"budgets": checks}
        missed = budget_checks.misses(checks)
        if missed is not None and record.status == "passed":
            update |= {"status": "failed", "error": f"budget missed: {missed}"}
        return record.model_copy(update=update)

    def _compared(self, record: ResultRecord, measured: Measured | None) -> ResultRecord:
        if self.baseline is None or record.status != "passed" or measured is None:
            return record
        if measured.paired is not None:
            paired = measured.paired
            comparison = compare_interleaved(
                record, paired.baseline, paired.comparison, paired.evidence, self.policy
            )
        else:
            comparison = compare_runs(record, self.baseline.find(record.identity()), self.policy)
        update: dict[str, Any] = {"comparison": comparison}
        if self.options.fail_on_regression and comparison.verdict == "regressed":
            evidence = "; ".join(m.evidence for m in comparison.metrics if m.verdict == "regressed")
            update |= {"status": "failed", "error": f"regression vs {comparison.baseline_run}: {evidence}"}
        return record.model_copy(update=update)

    def _store_record(self, record: ResultRecord) -> None:
        """The database is the history, not the device: when it fails, the record stays in
        results.json (reconciled at the next run) and the run goes on."""
        if self._store is None or self._store_failed is not None:
            if self._store_failed is not None:
                mark_unstored(self.reports_dir, self.run_id)
            return
        try:
            if not self._run_written:
                self._store.write_run(self.info)
                self._run_written = True
            self._store.write_record(record)
        except StoreError as exc:
            self._store_failed = str(exc)
            mark_unstored(self.reports_dir, self.run_id)
            self.notify(
                f"edgelab: {exc}; results stay in {self.results.path} and go into the database at "
                "the next run"
            )

    def close(self) -> None:
        self._record_end_references()
        for session in self._devices.values():
            session.close()
        self._devices.clear()
        for lease in self._leases.values():
            lease.release()
        self._leases.clear()
        if self._store is not None:
            self._store.close()


def _source_path(variant: Variant) -> str | None:
    """The host file of a model that was not measured: the team's file (a zoo model's is in the
    cache only once fetched)."""
    from harness.models.spec import FileSource

    source = variant.spec.source
    return str(source.path) if isinstance(source, FileSource) else None


def _reference(transport: Transport) -> tuple[SpeedReference | None, str | None]:
    """The device's speed reference, or why there is none (a missing clock is no reason to fail
    the device: its comparisons just cannot be checked against it)."""
    try:
        return measure_reference(transport), None
    except SpeedReferenceError as exc:
        return None, f"speed reference: not measured ({exc})"
    except ConnectionLost as exc:  # the first measurement reconnects (--retries); no reason to fail here
        return None, f"speed reference: not measured (the connection was lost: {exc})"


def _ms(samples_ns: tuple[int, ...]) -> tuple[float, ...] | None:
    """Nanosecond samples as milliseconds (None: the runner gave none)."""
    return tuple(round(ns / 1e6, 6) for ns in samples_ns) or None


def _deploy_record(report: DeployReport) -> DeployRecord:
    return DeployRecord(
        bytes_pushed=report.bytes_pushed,
        pushed=tuple(report.pushed),
        replaced=tuple(report.replaced),
        present=tuple(report.present),
    )


def _relative(path: str | None, folder: Path) -> str | None:
    """A kept file named relative to the run's folder (as results.json travels with its folder)."""
    if path is None:
        return None
    kept = Path(path)
    return str(kept.relative_to(folder)) if kept.is_relative_to(folder) else str(kept)
