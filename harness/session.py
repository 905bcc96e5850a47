"""The one orchestrator: selected device + model variant -> measurement -> results file.

Both faces (the pytest plugin and the CLI) call this; neither grows logic of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import platform
import posixpath
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import harness
from harness import cachefile, health
from harness.accuracy import AccuracyReport, host_reference, score
from harness.compare import BaselineSource, compare_records
from harness.config import AdbDevice, Fleet, LocalDevice, SshDevice
from harness.datasets.tasks import DEFAULT_SEVERITIES, EvalSet, evalset_key, task_for
from harness.deploy import Artifact, Deployer, DeployReport, resolve_workdir
from harness.errors import (
    AgentError,
    ConfigError,
    ConnectionLost,
    DeviceUnhealthy,
    EdgeLabError,
    ModelError,
    TransportError,
)
from harness.lease import DeviceLease, LeaseTimeout
from harness.measurement import BenchmarkResult, LatencyProtocol
from harness.models import zoo
from harness.models.variants import Variant
from harness.probes.energy import ExternalMeter, pick_source
from harness.probes.thermal import wait_until_cool
from harness.runners import native, python_agent
from harness.runners.agent_server import AgentServer
from harness.secrets import redact, redact_argv, redact_fields
from harness.stats import NOISE_FLOOR
from harness.store.db import ResultsStore
from harness.store.results_json import ResultsFile, new_run_id
from harness.transport import Transport, open_transport

DeviceConfig = LocalDevice | SshDevice | AdbDevice


@dataclass
class DeviceSession:
    """A connected device with its workdir resolved and the agent in place."""

    config: DeviceConfig
    transport: Transport
    workdir: str
    deployer: Deployer
    agent_path: str
    agent_deploy: DeployReport
    probe: dict[str, Any] = field(default_factory=dict)
    servers: dict[str, AgentServer | None] = field(default_factory=dict)
    cold_reasons: dict[str, str] = field(default_factory=dict)

    def agent_server(self, runtime: str) -> AgentServer | None:
        """The warm agent for ``runtime``, started on first use; None where it is off or could not
        start (the reason is in ``cold_reasons``)."""
        if not self.config.warm_agent:
            return None
        if runtime not in self.servers:
            try:
                self.servers[runtime] = AgentServer.start(
                    self.transport, self.config.python, self.agent_path, self.workdir, runtime
                )
            except AgentError as exc:
                self.servers[runtime] = None
                self.cold_reasons[runtime] = str(exc)
        return self.servers[runtime]

    def server_gone(self, runtime: str, reason: str) -> None:
        """The warm agent went away (idle exit, killed): this run went cold; the next one starts
        a new server (one that cannot start leaves the device cold for the run)."""
        gone = self.servers.pop(runtime, None)
        if gone is not None:
            with contextlib.suppress(Exception):
                gone.stop()
        self.cold_reasons[runtime] = reason

    def close(self) -> None:
        for server in self.servers.values():
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        self.servers.clear()
        self.transport.close()

    def fingerprint(self) -> dict[str, Any]:
        """Enough to tell two devices (or two OS builds of one device) apart in the history."""
        os_info = self.probe.get("os") or {}
        cpu = self.probe.get("cpu") or {}
        return {
            "kind": self.config.kind,
            "virtual": self.config.virtual,
            "system": os_info.get("system"),
            "release": os_info.get("release"),
            "machine": os_info.get("machine"),
            "android": os_info.get("android"),
            "cpu_model": cpu.get("model"),
            "cpu_cores": cpu.get("cores"),
            "python": (self.probe.get("python") or {}).get("version"),
            "numpy": self.probe.get("numpy"),
            "labels": redact_fields(self.config.labels),
        }


def native_probe(transport: Transport) -> dict[str, Any]:
    """What a device without Python says about itself (uname, getprop when it is Android)."""
    uname = transport.run(["uname", "-s", "-r", "-m"], timeout=30).stdout.split()
    model = transport.run(
        ["sh", "-c", "getprop ro.product.model 2>/dev/null; true"], timeout=30
    ).stdout.strip()
    return {
        "os": {
            "system": uname[0] if uname else None,
            "release": uname[1] if len(uname) > 1 else None,
            "machine": uname[2] if len(uname) > 2 else None,
            "android": {"model": model} if model else None,
        },
        "runner": "native",
        "energy_sources": [],
    }


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() or None if completed.returncode == 0 else None


def run_metadata(run_id: str, devices: list[str], argv: list[str] | None = None) -> dict[str, Any]:
    """Who ran what, where and on which code: stored once per run and copied into each record."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "id": run_id,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_branch": _branch(),
        "git_dirty": bool(dirty),
        "harness_version": harness.__version__,
        "host": platform.node(),
        "host_python": platform.python_version(),
        "ci_job_id": os.environ.get("GITHUB_RUN_ID") or os.environ.get("CI_JOB_ID"),
        "ci": bool(os.environ.get("CI")),
        "devices": devices,
        "command": redact_argv(argv if argv is not None else sys.argv),
    }


@contextlib.contextmanager
def _phase(name: str) -> Iterator[None]:
    """Say which phase a lost connection interrupted: 'device 'x': phase run: ...'."""
    try:
        yield
    except (ConnectionLost, TransportError) as exc:
        if type(exc) not in (ConnectionLost, TransportError) or "phase " in str(exc):
            raise  # timeouts and command failures carry their own context
        prefix = f"device '{exc.device}': "
        detail = str(exc)[len(prefix) :] if str(exc).startswith(prefix) else str(exc)
        raise type(exc)(exc.device, f"phase {name}: {detail}") from exc


def _branch() -> str | None:
    """The branch, also in CI's detached checkouts (GitHub: GITHUB_HEAD_REF on PRs, else REF_NAME)."""
    name = _git("rev-parse", "--abbrev-ref", "HEAD")
    if name in (None, "HEAD"):
        return os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME") or name
    return name


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120] or "unnamed"


class Lab:
    """Connections, deployments and results of one run, shared by every test in it."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        reports_dir: Path,
        run_id: str | None = None,
        selected: list[str] | None = None,
        results_db: str | None = None,
    ) -> None:
        self.fleet = fleet
        self.results_db = results_db  # None: no database, results.json only
        self.reports_dir = reports_dir
        self.run_id = run_id or new_run_id()
        self.selected = selected if selected is not None else fleet.names()
        self._devices: dict[str, DeviceSession] = {}
        self._failures: dict[str, EdgeLabError] = {}
        self._results: ResultsFile | None = None
        self._metadata: dict[str, Any] | None = None
        self._store: ResultsStore | None = None
        self._evalsets: dict[str, EvalSet] = {}
        self._run_written = False
        self._leases: dict[str, DeviceLease] = {}
        self.lease_timeout_s: float | None = None  # None: no leases (library use); the plugin sets it
        self.health_checks = False  # the plugin turns them on (library use: off)
        self.retries = 0
        self.notify: Callable[[str], None] = lambda message: print(message, file=sys.stderr)
        self.baseline: BaselineSource | None = None  # set by --baseline
        self.fail_on_regression = False
        self.noise_floor = NOISE_FLOOR

    # -- devices -----------------------------------------------------------------------------

    def device(self, name: str) -> DeviceSession:
        """Connect once per run; a device that failed to connect fails every later use with the
        same message instead of hammering an absent device."""
        if name in self._devices:
            return self._devices[name]
        if name in self._failures:
            raise self._failures[name]
        config = self.fleet[name]
        if self.health_checks:
            state = health.status(name)
            if state.get("quarantined"):
                raise DeviceUnhealthy(
                    f"device '{name}' is quarantined after {state.get('failures')} failed health checks "
                    f"(last: {state.get('last_problem')}); fix it, then `edgelab devices --release {name}`"
                )
        try:
            self._lease(name)
            session = self._connect(config)
        except EdgeLabError as exc:
            self._failures[name] = exc
            if self.health_checks and not isinstance(exc, LeaseTimeout):
                health.record(name, False, str(exc))
            raise
        if self.health_checks:
            verdict = health.check(session.transport, session.workdir)
            state = health.record(name, verdict.ok, "; ".join(verdict.problems))
            if not verdict.ok:
                session.transport.close()
                quarantined = " (now quarantined)" if state.get("quarantined") else ""
                failure = DeviceUnhealthy(
                    f"device '{name}' failed its health check: {'; '.join(verdict.problems)}{quarantined}"
                )
                self._failures[name] = failure
                raise failure
        self._devices[name] = session
        return session

    def forget(self, name: str) -> None:
        """Drop a device's connection (and its remembered failure) so the next use reconnects."""
        session = self._devices.pop(name, None)
        if session is not None:
            with contextlib.suppress(Exception):
                session.close()
        self._failures.pop(name, None)

    def _lease(self, name: str) -> None:
        if self.lease_timeout_s is None or name in self._leases:
            return
        store = self.store_for_reading()
        advisory = store.advisory_lock if store is not None and store.shared else None
        lease = DeviceLease(
            name, run_id=self.run_id, timeout_s=self.lease_timeout_s, advisory=advisory, notify=self.notify
        )
        self._leases[name] = lease.acquire()

    def _connect(self, config: DeviceConfig) -> DeviceSession:
        transport = open_transport(config)
        try:
            workdir = resolve_workdir(transport, config.workdir)
            deployer = Deployer(transport, workdir, config.python)
            stale = deployer.clean_partials()  # left by killed pushes whose writer is gone
            if stale:
                self.notify(f"device '{config.name}': removed {len(stale)} partial file(s) of killed pushes")
            if config.runner == "native":
                return DeviceSession(
                    config, transport, workdir, deployer, "", DeployReport(), native_probe(transport)
                )
            agent = Artifact.from_file(python_agent.AGENT_FILE)
            report = deployer.ensure([agent])
            agent_path = deployer.remote_path(agent)
            info = python_agent.probe(transport, config.python, agent_path)
        except BaseException:
            transport.close()
            raise
        return DeviceSession(config, transport, workdir, deployer, agent_path, report, info)

    def probe(self, name: str) -> dict[str, Any]:
        return self.device(name).probe

    # -- measurement ---------------------------------------------------------------------------

    def benchmark(
        self,
        device_name: str,
        variant: Variant,
        protocol: LatencyProtocol,
        *,
        threads: int | None = None,
        inputs: Path | None = None,
        outputs_to: Path | None = None,
        cooldown_below_c: float | None = None,
        energy: str | None = None,
    ) -> tuple[BenchmarkResult, DeployReport]:
        """Deploy what the variant needs, run the agent, and pull outputs back if asked."""
        device = self.device(device_name)
        built = variant.build()
        input_file = inputs if inputs is not None else self._default_inputs(variant)
        model = Artifact.from_file(built.path, built.path.name)
        if model.sha256 != built.sha256:  # changed on the host since it was checked: never measure it
            raise ModelError(
                f"{variant.id}: {built.path} changed while in use (sha256 {model.sha256}, checked "
                f"{built.sha256}); rerun to rebuild it"
            )
        input_artifact = Artifact.from_file(input_file)
        artifacts = [model, input_artifact]
        with _phase("deploy"):
            # the agent checks both files' sha256 at every run, so what this session has already
            # checked or pushed needs no round trip before the run
            deploy = device.deployer.ensure(artifacts, trust_verified=device.config.runner == "agent")
        deploy.model_sha256 = model.sha256
        remote_outputs = None
        if outputs_to is not None:
            remote_outputs = posixpath.join(
                device.workdir, "runs", self.run_id, _safe_name(outputs_to.name) + ".npz"
            )
        below_c = cooldown_below_c if cooldown_below_c is not None else device.config.cooldown_below_c
        if device.config.runner == "native":
            cooldown = None
            if below_c is not None:
                with _phase("cooldown"):
                    cooldown = wait_until_cool(device.transport, below_c, protocol.cooldown_max_s)
            native_result = self._benchmark_native(device, variant, model, protocol, threads)
            return dataclasses.replace(native_result, cooldown=cooldown), deploy
        source, meter = self._energy_source(device, energy)
        argv = python_agent.build_run_argv(
            device.config.python,
            device.agent_path,
            device.deployer.remote_path(model),
            variant.runtime,
            protocol,
            threads=device.config.threads if threads is None else threads,
            inputs_path=device.deployer.remote_path(input_artifact),
            outputs_path=remote_outputs,
            energy=source if source != "external" else None,
            verify=[(device.deployer.remote_path(a), a.sha256) for a in artifacts],
            cooldown_below_c=below_c,  # the agent waits on the device, before loading the model
        )
        timeout_s = protocol.budget_s(cooldown=below_c is not None)
        with _phase("run"):
            try:
                result = self._run_agent(device, variant, argv, protocol, meter, timeout_s=timeout_s)
            except python_agent.ArtifactDamaged as damaged:
                # changed on the device since this session checked it: check all, push again, rerun
                self.notify(f"{damaged}; checking the device's cache and pushing again")
                device.deployer.forget(artifacts)
                with _phase("deploy"):
                    deploy = device.deployer.ensure(artifacts)
                deploy.model_sha256 = model.sha256
                result = self._run_agent(device, variant, argv, protocol, meter, timeout_s=timeout_s)
        if remote_outputs is not None and outputs_to is not None:
            with _phase("pull outputs"):
                device.transport.pull(remote_outputs, outputs_to)
                device.transport.run(["rm", "-f", remote_outputs], timeout=60)
        return result, deploy

    def _run_agent(
        self,
        device: DeviceSession,
        variant: Variant,
        argv: list[str],
        protocol: LatencyProtocol,
        meter: ExternalMeter | None,
        *,
        timeout_s: float,
    ) -> BenchmarkResult:
        return python_agent.run_agent(
            device.transport,
            argv,
            server=device.agent_server(variant.runtime),
            on_server_gone=lambda reason: device.server_gone(variant.runtime, reason),
            cold_reason=device.cold_reasons.get(variant.runtime),
            timeout_s=timeout_s,
            model=variant.model,
            model_format=variant.format,
            precision=variant.precision,
            protocol=protocol,
            virtual=device.config.virtual,
            meter=meter,
        )

    def evaluate(
        self,
        device_name: str,
        variant: Variant,
        *,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = DEFAULT_SEVERITIES,
        seed: int = 0,
        threads: int | None = None,
    ) -> tuple[BenchmarkResult, AccuracyReport, DeployReport]:
        """Run the variant over its task's real inputs (every slice) on the device, pull the
        outputs back, and score them per slice against the labels and the host fp32 reference."""
        task = task_for(variant.model)
        chosen = tuple(corruptions) if corruptions is not None else task.default_corruptions
        key = evalset_key(variant.model, chosen, severities, seed)
        if key not in self._evalsets:
            self._evalsets[key] = task.build(chosen, severities, seed)
        evalset = self._evalsets[key]
        folder = zoo.cache_dir() / "evalsets"
        inputs = folder / f"{variant.model}-{key}.npz"
        cachefile.ensure(inputs, evalset.save)  # written again when its bytes differ from the record
        reference = host_reference(
            zoo.fetch(variant.spec), evalset, folder / f"{variant.model}-{key}-fp32.npz"
        )
        protocol = LatencyProtocol(
            warmup_iters=1,
            warmup_s=0.0,
            min_iters=evalset.size,
            min_s=0.0,
            max_s=900.0,
            max_iters=evalset.size,
            idle_s=0.0,
        )
        outputs_to = self.reports_dir / self.run_id / "outputs" / _safe_name(f"{device_name}-{variant.id}")
        result, deploy = self.benchmark(
            device_name,
            variant,
            protocol,
            threads=threads,
            inputs=inputs,
            outputs_to=outputs_to,
            energy="none",
        )
        with np.load(outputs_to, allow_pickle=False) as archive:
            outputs = {name: archive[name] for name in archive.files}
        try:
            report = score(task, evalset, outputs, reference, variant.precision)
        except ValueError as exc:
            raise AgentError(
                f"device '{device_name}': {variant.id}: outputs cannot be scored: {exc}"
            ) from None
        return result, report, deploy

    def _benchmark_native(
        self,
        device: DeviceSession,
        variant: Variant,
        model: Artifact,
        protocol: LatencyProtocol,
        threads: int | None,
    ) -> BenchmarkResult:
        """benchmark_model / onnxruntime_perf_test from native_tools, pushed like any artifact."""
        fmt = variant.format
        tool_path = device.config.native_tools.get(fmt) if fmt in ("tflite", "onnx") else None  # type: ignore[call-overload]
        if not tool_path:
            tool = native.NATIVE_TOOL_FOR_FORMAT.get(fmt, "?")
            raise ConfigError(
                f"device '{device.config.name}': runner native has no {fmt} tool; add "
                f"native_tools: {{{fmt}: /path/to/{tool}}} (built for the device) to devices.yaml"
            )
        local = Path(tool_path).expanduser()
        if not local.is_file():
            raise ConfigError(f"device '{device.config.name}': native_tools.{fmt}: {local} does not exist")
        binary = Artifact.from_file(local)
        device.deployer.ensure([binary])
        remote_binary = device.deployer.remote_path(binary)
        device.transport.run(["chmod", "755", remote_binary], timeout=60, check=True)
        count = device.config.threads if threads is None else threads
        build = native.tflite_argv if fmt == "tflite" else native.ort_argv
        argv = build(remote_binary, device.deployer.remote_path(model), protocol, count)
        return native.run_native(
            device.transport,
            argv,
            timeout_s=protocol.budget_s(),
            model=variant.model,
            model_format=fmt,
            precision=variant.precision,
            protocol=protocol,
            threads=count,
        )

    def _energy_source(
        self, device: DeviceSession, override: str | None
    ) -> tuple[str | None, ExternalMeter | None]:
        """The energy source for this device: ``--energy``, else devices.yaml, else auto."""
        configured = override or device.config.energy
        available = device.probe.get("energy_sources") or []
        if configured == "external":
            if not device.config.energy_meter:
                raise ConfigError(
                    f"device '{device.config.name}': energy: external needs energy_meter (a host command "
                    "that prints watts per line) in devices.yaml"
                )
            return "external", ExternalMeter(device.config.energy_meter)
        source = pick_source(configured, available)
        if source is not None and source not in available:
            raise ConfigError(
                f"device '{device.config.name}': energy source '{source}' is not on the device "
                f"(it has: {', '.join(available) or 'none'}); set energy: auto or none"
            )
        return source, None

    def _default_inputs(self, variant: Variant) -> Path:
        """Deterministic synthetic inputs from the zoo's input spec, cached by model hash and
        checked against the sha256 recorded when they were made (made again when they differ)."""
        shapes = hashlib.sha256(repr(variant.spec.inputs).encode()).hexdigest()[:8]
        destination = zoo.cache_dir() / "inputs" / f"{variant.spec.sha256[:16]}-{shapes}-b1-s0.npz"
        cachefile.ensure(destination, lambda path: zoo.make_inputs(variant.spec, path, batch=1, seed=0))
        return destination

    # -- results -------------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = run_metadata(self.run_id, self.selected)
        return self._metadata

    @property
    def results(self) -> ResultsFile:
        """Created on the first record, so a run with no device test leaves no report folder."""
        if self._results is None:
            self._results = ResultsFile(self.reports_dir, self.run_id, self.metadata)
        return self._results

    @property
    def store(self) -> ResultsStore | None:
        """Opened (and the run inserted) on the first record, like results.json."""
        if not self._run_written and self.results_db is not None:
            store = self.store_for_reading()
            assert store is not None
            store.write_run(self.metadata)
            self._run_written = True
        return self._store

    def store_for_reading(self) -> ResultsStore | None:
        """The store without inserting this run (baselines, reports)."""
        if self._store is None and self.results_db is not None:
            self._store = ResultsStore(self.results_db)
        return self._store

    def finish(self) -> None:
        """The run ended normally: mark it complete (a killed run stays incomplete)."""
        if self._results is not None:
            self._results.update_run(
                complete=True, finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            )
        if self._store is not None and self._run_written:
            self._store.finish_run(self.run_id)

    def record(
        self,
        *,
        test: str,
        status: str,
        device: str,
        variant: Variant,
        result: BenchmarkResult | None,
        deploy: DeployReport | None,
        error: str | None = None,
        duration_s: float | None = None,
        sustained: dict[str, Any] | None = None,
        accuracy: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one finished test to results.json now, so a crash later loses nothing."""
        session = self._devices.get(device)
        record: dict[str, Any] = {
            "schema_version": 1,
            "run_id": self.run_id,
            "test": test,
            "status": status,
            "device": device,
            "device_kind": self.fleet[device].kind,
            "virtual": self.fleet[device].virtual,
            "model": variant.model,
            "model_sha256": variant.spec.sha256,
            "format": variant.format,
            "runtime": variant.runtime,
            "precision": variant.precision,
            "latency_ms": None,
            "peak_rss_mb": None,
            "error": redact(error) if error else None,
            "duration_s": duration_s,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "device_fingerprint": session.fingerprint() if session else None,
            "run": {
                key: self.metadata[key]
                for key in ("id", "git_commit", "git_branch", "harness_version", "ci_job_id")
            },
        }
        if result is not None:
            record.update(result.to_record())
        if sustained is not None:
            record["sustained"] = sustained
        if accuracy is not None:
            record["accuracy"] = accuracy
        if deploy is not None:
            record["deploy"] = {
                "bytes_pushed": deploy.bytes_pushed,
                "pushed": deploy.pushed,
                "replaced": deploy.replaced,
                "present": deploy.present,
            }
        if self.baseline is not None and record["status"] == "passed" and result is not None:
            floor = self.fleet[device].noise_floor
            comparison = compare_records(
                record, self.baseline.find(record), floor if floor is not None else self.noise_floor
            )
            record["comparison"] = comparison.as_dict()
            if self.fail_on_regression and comparison.verdict == "regressed":
                evidence = "; ".join(m.evidence for m in comparison.metrics if m.verdict == "regressed")
                record["status"] = "failed"
                record["error"] = f"regression vs {comparison.baseline_run}: {evidence}"
        self.results.append(record)
        if self.store is not None:
            self.store.write_record(record)
        return record

    def close(self) -> None:
        for session in self._devices.values():
            session.close()
        self._devices.clear()
        for lease in self._leases.values():
            lease.release()
        self._leases.clear()
        if self._store is not None:
            self._store.close()
