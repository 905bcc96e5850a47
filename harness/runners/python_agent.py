"""Host side of the on-device Python agent: build its command line, run it, validate its JSON.

The agent's output is a device boundary: anything that is not its result document becomes an
AgentError that quotes what the device printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.config import DEFAULT_THREADS, AnyDevice
from harness.deploy import Artifact, Deployer, DeployReport
from harness.errors import AgentError, ConfigError, ParseError
from harness.measurement import (
    KIB_PER_MB,
    BenchmarkResult,
    Cooldown,
    LatencyProtocol,
    MemoryUsage,
    RuntimeInfo,
)
from harness.probes.cpus import CpuPlacement, format_cpu_list, placement
from harness.probes.energy import EnergyReport, ExternalMeter, meter_rows, pick_source, tegrastats_rows
from harness.probes.energy import compute as compute_energy
from harness.probes.environment import thermal_status
from harness.probes.environment import warnings as environment_warnings
from harness.probes.parsers.android import parse_dumpsys_meminfo
from harness.probes.thermal import ThermalTrace, judge
from harness.runners.agent_server import AgentServer, ServerGone, clean_stale_servers
from harness.runners.base import DeviceProbe, RunRequest, phase
from harness.runners.cooldown import AGENT_COOLDOWN_POLL_S
from harness.stats import detect_modes, summarize_latency
from harness.transport.base import CommandResult, Transport
from harness.transport.channel import Channel, ChannelTransport, PersistentChannel, run_over

AGENT_FILE = Path(__file__).resolve().parent.parent / "agent" / "edgelab_agent.py"


class ArtifactDamaged(AgentError):
    """A model or input file on the device no longer matches its sha256 (checked by the agent)."""


AGENT_SCHEMA_VERSION = 1
PROBE_TIMEOUT_S = 120.0


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AgentRuntime(_Lenient):
    name: str
    module: str
    version: str


class AgentPhase(_Lenient):
    iterations: int = Field(ge=0)
    seconds: float = Field(ge=0)


class AgentTimed(AgentPhase):
    stopped_by: str


class AgentMemory(_Lenient):
    vmhwm_before_load: int | None = None
    vmhwm_after_load: int | None = None
    vmhwm_after_run: int | None = None
    vmrss_after_run: int | None = None


class AgentCooldown(_Lenient):
    """The wait the agent did before loading the model (``--cooldown-below-c``)."""

    below_c: float
    start_c: float | None
    end_c: float | None
    waited_s: float = Field(ge=0)
    reached: bool


class AgentCpus(_Lenient):
    """Where the run was allowed to execute (``cpus`` in the run document)."""

    requested: list[int] | None = None
    pinned_by: str | None = None
    allowed: list[int] | None = None
    allowed_before: list[int] | None = None
    allowed_error: str | None = None
    kinds: dict[int, tuple[int | None, int | None]] = Field(default_factory=dict)
    threads: dict[str, int] = Field(default_factory=dict)  # cpu list -> threads allowed there


class AgentRunDocument(_Lenient):
    """The agent's ``run`` result, schema_version 1."""

    schema_version: Literal[1]
    kind: Literal["run"]
    runtime: AgentRuntime
    threads: int = Field(ge=1)
    cpus: AgentCpus | None = None
    load_ms: float = Field(ge=0)
    first_inference_ms: float = Field(ge=0)
    warmup: AgentPhase
    timed: AgentTimed
    latencies_ns: list[int] = Field(min_length=1)
    start_offsets_ns: list[int]
    memory_kb: AgentMemory
    outputs_file: str | None = None
    clock: dict[str, float] = Field(default_factory=dict)
    thermal: dict[str, Any] | None = None
    idle: dict[str, Any] | None = None
    cooldown: AgentCooldown | None = None
    phases_ms: dict[str, float] | None = None
    environment: dict[str, Any] | None = None
    tegrastats: list[list[Any]] | None = None
    pss_kb: int | None = None  # as a process of its own counts it (see pss_kernel_kb)
    pss_kernel_kb: int | None = None  # the kernel's figure: lower in a run forked from the agent
    dumpsys_meminfo: str | None = None


def _mb(kib: int | None) -> float | None:
    return None if kib is None else round(kib / KIB_PER_MB, 3)


def _quote_output(result: CommandResult) -> str:
    return f"stdout: {result.stdout.strip()[-800:]!r}; stderr: {result.stderr.strip()[-1500:]!r}"


def parse_agent_output(device: str, result: CommandResult, expected_kind: str) -> dict[str, Any]:
    """Find the agent's JSON document and turn an agent-reported failure into an AgentError."""
    text = result.stdout.strip()
    document: object = None
    if text:
        try:
            document = json.loads(text.splitlines()[-1] if not text.startswith("{") else text)
        except json.JSONDecodeError:
            document = None
    if not isinstance(document, dict):
        raise AgentError(
            f"device '{device}': the agent exited {result.exit_code} without a JSON result "
            f"(is '{result.argv[0]}' a working Python 3 with numpy?); {_quote_output(result)}"
        )
    if document.get("kind") == "error":
        error = document.get("error") or {}
        if error.get("type") == "ChecksumMismatch":
            raise ArtifactDamaged(f"device '{device}': {error.get('message')}")
        raise AgentError(
            f"device '{device}': agent failed in phase '{document.get('phase')}': "
            f"{error.get('type')}: {error.get('message')}"
        )
    if document.get("schema_version") != AGENT_SCHEMA_VERSION or document.get("kind") != expected_kind:
        raise AgentError(
            f"device '{device}': agent printed schema_version={document.get('schema_version')!r} "
            f"kind={document.get('kind')!r}, expected {AGENT_SCHEMA_VERSION} and {expected_kind!r}: "
            "the agent on the device is from another EdgeLab version; clear the device workdir"
        )
    if result.exit_code != 0:
        raise AgentError(f"device '{device}': agent exited {result.exit_code}; {_quote_output(result)}")
    return document


def build_run_argv(
    python: str,
    agent_path: str,
    model_path: str,
    runtime: str,
    protocol: LatencyProtocol,
    *,
    threads: int = DEFAULT_THREADS,
    cpus: Sequence[int] | None = None,
    delegate: str | None = None,
    inputs_path: str | None = None,
    outputs_path: str | None = None,
    energy: str | None = None,
    verify: Sequence[tuple[str, str]] = (),
    cooldown_below_c: float | None = None,
) -> list[str]:
    """The agent's ``run`` command. With ``cooldown_below_c`` the agent first waits on the device
    (up to ``protocol.cooldown_max_s``) for the hottest zone to fall below it: no round trip per
    poll, and none at all when the device is already cool."""
    argv = [
        python,
        agent_path,
        "run",
        "--model",
        model_path,
        "--runtime",
        runtime,
        "--threads",
        str(threads),
        "--warmup-iters",
        str(protocol.warmup_iters),
        "--warmup-s",
        repr(protocol.warmup_s),
        "--min-iters",
        str(protocol.min_iters),
        "--min-s",
        repr(protocol.min_s),
        "--max-s",
        repr(protocol.max_s),
        "--sample-period-s",
        repr(protocol.sample_period_s),
        "--max-iters",
        str(protocol.max_iters),
        "--rate-hz",
        repr(protocol.rate_hz),
        "--environment",
    ]
    if cpus:
        argv += ["--cpus", ",".join(str(cpu) for cpu in cpus)]
    if energy:
        argv += ["--energy", energy, "--idle-s", repr(protocol.idle_s)]
    if cooldown_below_c is not None:
        argv += [
            "--cooldown-below-c",
            repr(cooldown_below_c),
            "--cooldown-max-s",
            repr(protocol.cooldown_max_s),
            "--cooldown-poll-s",
            repr(AGENT_COOLDOWN_POLL_S),
        ]
    if delegate:
        argv += ["--delegate", delegate]
    if inputs_path:
        argv += ["--inputs", inputs_path]
    if outputs_path:
        argv += ["--outputs", outputs_path]
    for path, digest in verify:
        argv += ["--sha256", f"{digest}:{path}"]
    return argv


def run_agent(
    transport: Transport,
    argv: list[str],
    *,
    timeout_s: float,
    model: str,
    model_format: str,
    precision: str,
    protocol: LatencyProtocol,
    virtual: bool = False,
    meter: ExternalMeter | None = None,
    server: AgentServer | None = None,
    on_server_gone: Callable[[str], None] | None = None,
    cold_reason: str | None = None,
    channel: PersistentChannel | None = None,
) -> BenchmarkResult:
    """Run the agent once (with an external power meter alongside, if given) and turn its
    document into a BenchmarkResult. Over a persistent ``channel`` the run is a fork of the
    session's agent for the runtime; a channel given up leaves the run to the per-command path:
    with a warm ``server`` a fork of it, and a server that has gone away is reported through
    ``on_server_gone`` and the run starts cold instead."""
    note: str | None = None
    if meter is not None:
        meter.start()
    try:
        result = None
        if channel is not None:
            result = run_over(channel, "agent", argv[2:], timeout=timeout_s, shown=argv)
            if result is not None:
                note = (
                    f"{FORKED_BY_CHANNEL}: Python, numpy and {channel.label} were imported "
                    "before the run, so load_ms does not include importing them"
                )
            elif channel.given_up is not None:
                cold_reason = cold_reason or f"persistent channel given up: {channel.given_up}"
        if result is None and server is not None:
            try:
                result = server.call(argv, timeout=timeout_s)
                note = (
                    f"{FORKED_BY_SERVER}: Python, numpy and {server.runtime} were imported "
                    "before the run, so load_ms does not include importing them"
                )
            except ServerGone as gone:
                cold_reason = str(gone)
                if on_server_gone is not None:
                    on_server_gone(cold_reason)
            if result is not None and channel is not None and channel.given_up is not None:
                note = f"{note}; per-command path: the persistent channel was given up: {channel.given_up}"
        if result is None:
            result = transport.run(argv, timeout=timeout_s)
            if cold_reason is not None:
                note = f"fresh interpreter: {cold_reason}"
    finally:
        meter_lines = meter.stop() if meter is not None else None
    document = parse_agent_output(transport.device, result, "run")
    try:
        run = AgentRunDocument.model_validate(document)
    except ValidationError as exc:
        raise AgentError(
            f"device '{transport.device}': agent result failed validation: {exc.errors()[0]['loc']}: "
            f"{exc.errors()[0]['msg']}"
        ) from None
    if any(sample <= 0 for sample in run.latencies_ns):
        raise AgentError(f"device '{transport.device}': agent reported non-positive latencies")
    built = build_result(
        transport.device,
        run,
        model=model,
        model_format=model_format,
        precision=precision,
        protocol=protocol,
        virtual=virtual,
        meter_lines=meter_lines,
    )
    return dataclasses.replace(built, notes=(*built.notes, note)) if note else built


def _trace(device: str, run: AgentRunDocument) -> ThermalTrace | None:
    if run.thermal is None:
        return None
    try:
        return ThermalTrace.from_agent(run.thermal, int(run.clock["perf_counter_start_ns"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise AgentError(f"device '{device}': malformed thermal trace from the agent: {exc}") from None


def _energy(run: AgentRunDocument, meter_lines: list[tuple[int, str]] | None) -> EnergyReport | None:
    """Energy from the agent's sampler rows, its tegrastats lines, or the host's meter lines."""
    if "perf_counter_start_ns" not in run.clock or "perf_counter_end_ns" not in run.clock:
        return None  # an agent without the clock section: nothing to align energy with
    timed = (int(run.clock["perf_counter_start_ns"]), int(run.clock["perf_counter_end_ns"]))
    if timed[1] <= timed[0]:
        return None
    idle = (
        (int(run.idle["start_ns"]), int(run.idle["end_ns"])) if run.idle and "start_ns" in run.idle else None
    )
    env = run.environment or {}
    charging = ((env.get("battery") or {}).get("status") or "").lower() in {"charging", "full"}
    samples: list[Any]
    if meter_lines is not None:
        # host wall clock -> the agent's clock, through the run's unix start time
        offset = timed[0] - int(run.clock["unix_time_start_s"] * 1e9)
        samples = meter_rows([(t + offset, line) for t, line in meter_lines])
        source, kind, max_range = "external", "power", None
    elif run.tegrastats is not None:
        samples, source, kind, max_range = tegrastats_rows(run.tegrastats), "tegrastats", "power", None
    elif run.thermal is not None and run.thermal.get("energy"):
        described = run.thermal["energy"]
        samples = run.thermal.get("samples", [])
        source, kind, max_range = described["source"], described["kind"], described.get("max_range_uj")
    else:
        return None
    return compute_energy(
        source=source,
        kind=kind,
        samples=samples,
        timed=timed,
        idle=idle,
        iterations=run.timed.iterations,
        max_range_uj=max_range,
        charging=charging,
    )


def _pss(run: AgentRunDocument) -> tuple[float | None, str | None, str | None]:
    """PSS in MiB, where it came from, and a note when it is not given. A run forked from the warm
    agent shares pages with it; the agent counts them as a fresh process would (``pss_kb``), and
    `dumpsys meminfo`, which splits them as the kernel does, gets the same difference added."""
    if run.pss_kb is None and run.pss_kernel_kb is not None:
        return (
            None,
            None,
            f"pss: not measured (the kernel's {_mb(run.pss_kernel_kb)} MiB splits the pages this run "
            "shares with the warm agent it was forked from, and the agent could not count them as a "
            "fresh process would: this kernel's smaps_rollup has no Pss_Anon or Pss_File)",
        )
    shared_kb = 0
    if run.pss_kb is not None and run.pss_kernel_kb is not None:
        shared_kb = run.pss_kb - run.pss_kernel_kb
    if run.dumpsys_meminfo:
        try:
            total = parse_dumpsys_meminfo(run.dumpsys_meminfo).total_pss_kb
            return _mb(None if total is None else total + shared_kb), "dumpsys meminfo", None
        except ParseError:
            pass
    if run.pss_kb is not None:
        return _mb(run.pss_kb), "smaps_rollup", None
    return None, None, None


def _thermal_status_reason(run: AgentRunDocument) -> str | None:
    env = run.environment or {}
    before, after = (
        thermal_status(env.get("dumpsys_thermalservice")),
        thermal_status(env.get("dumpsys_thermalservice_after")),
    )
    if after is not None and after >= 1 and (before is None or after > before):
        return f"thermal status: {before if before is not None else '?'} -> {after} (Android, 0 = none)"
    return None


def build_result(
    device: str,
    run: AgentRunDocument,
    *,
    model: str,
    model_format: str,
    precision: str,
    protocol: LatencyProtocol,
    virtual: bool = False,
    meter_lines: list[tuple[int, str]] | None = None,
) -> BenchmarkResult:
    memory = run.memory_kb
    trace = _trace(device, run)
    verdict = judge(trace, run.latencies_ns, run.start_offsets_ns)
    status_reason = _thermal_status_reason(run) if trace is None or not trace.status else None
    if status_reason is not None:
        verdict = dataclasses.replace(verdict, throttled=True, reasons=(*verdict.reasons, status_reason))
    pss_mb, pss_source, pss_note = _pss(run)
    idle_busy = run.idle.get("cpu_busy_pct") if run.idle else None
    cores = _placement(run)
    warnings = list(environment_warnings(run.environment, idle_busy, virtual=virtual))
    if run.cpus is not None and run.cpus.allowed_before not in (None, run.cpus.allowed):
        warnings.append(
            f"CPUS-CHANGED: the run was allowed on cpus {format_cpu_list(run.cpus.allowed_before or [])} "
            f"at its start and {format_cpu_list(run.cpus.allowed or [])} at its end (a cpuset moved it)"
        )
    if run.cpus is not None and run.cpus.allowed:
        process = format_cpu_list(run.cpus.allowed)
        narrower = {cpus: count for cpus, count in run.cpus.threads.items() if cpus != process}
        if narrower:
            listed = ", ".join(f"{count} on cpus {cpus}" for cpus, count in sorted(narrower.items()))
            warnings.append(
                f"THREADS-PINNED: the runtime pinned threads of the run ({listed}; the process may use "
                f"{process}): its speed then depends on where the OS put the unpinned ones"
            )
    return BenchmarkResult(
        device=device,
        model=model,
        format=model_format,
        runtime=RuntimeInfo(run.runtime.name, run.runtime.module, run.runtime.version),
        precision=precision,
        threads=run.threads,
        latency_ms=summarize_latency(run.latencies_ns),
        memory=MemoryUsage(
            baseline_mb=_mb(memory.vmhwm_before_load),
            load_peak_mb=_mb(memory.vmhwm_after_load),
            peak_rss_mb=_mb(memory.vmhwm_after_run),
            pss_mb=pss_mb,
            pss_source=pss_source,
        ),
        load_ms=run.load_ms,
        first_inference_ms=run.first_inference_ms,
        iterations=run.timed.iterations,
        stopped_by=run.timed.stopped_by,
        protocol=protocol,
        latency_samples_ns=tuple(run.latencies_ns),
        start_offsets_ns=tuple(run.start_offsets_ns),
        outputs_file=run.outputs_file,
        thermal=trace,
        throttle=verdict,
        energy=_energy(run, meter_lines),
        warnings=tuple(warnings),
        cooldown=Cooldown(**run.cooldown.model_dump()) if run.cooldown is not None else None,
        agent_phases_ms=run.phases_ms,
        placement=cores,
        modes=detect_modes(run.latencies_ns),
        notes=(pss_note,) if pss_note else (),
    )


def _placement(run: AgentRunDocument) -> CpuPlacement:
    """The thread count and cores of the run, with the kind of each allowed core."""
    cpus = run.cpus
    if cpus is None:
        return placement(
            run.threads,
            requested=None,
            pinned_by=None,
            allowed=None,
            per_cpu={},
            allowed_reason="the agent did not report its cpus",
        )
    return placement(
        run.threads,
        requested=cpus.requested,
        pinned_by=cpus.pinned_by,
        allowed=cpus.allowed,
        per_cpu=cpus.kinds,
        allowed_reason=cpus.allowed_error or "the agent could not read its affinity",
    )


def probe(
    transport: Transport, python: str, agent_path: str, channel: PersistentChannel | None = None
) -> DeviceProbe:
    """What the device has (OS, CPU, Python, runtimes), straight from the agent, validated; a
    fork of the persistent agent where one is open (no interpreter start)."""
    argv = [python, agent_path, "probe"]
    result = run_over(channel, "agent", argv[2:], timeout=PROBE_TIMEOUT_S, shown=argv) if channel else None
    if result is None:
        result = transport.run(argv, timeout=PROBE_TIMEOUT_S)
    document = parse_agent_output(transport.device, result, "probe")
    try:
        return DeviceProbe.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AgentError(
            f"device '{transport.device}': agent probe failed validation: "
            f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        ) from None


# How a result's notes begin for a run forked from the persistent agent or the warm agent.
FORKED_BY_CHANNEL = "forked from the persistent agent"
FORKED_BY_SERVER = "forked from the warm agent"


def agent_channel(
    transport: Transport, python: str, agent_path: str, runtime: str | None
) -> PersistentChannel:
    """The persistent agent over ``transport``, opened on first use: the one for commands
    (``runtime`` None), or the one that forks each run of ``runtime``."""
    argv = [python, agent_path, "channel", *(["--runtime", runtime] if runtime is not None else [])]
    label = runtime or "commands"
    return PersistentChannel(transport.device, label, lambda: Channel.open(transport, argv, label=label))


class AgentRunner:
    """Measures with the Python agent: deployed once per session, one persistent agent for
    commands and one per runtime that forks each run, each over a stream that stays open
    (``persistent_channel: false``: one command per request, with the FIFO warm server;
    ``warm_agent: false`` starts a fresh interpreter per run instead)."""

    kind: Literal["agent", "native"] = "agent"

    def __init__(
        self,
        config: AnyDevice,
        transport: Transport,
        deployer: Deployer,
        notify: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.config = config
        self.transport: Transport = transport
        self.deployer = deployer
        self.notify = notify
        agent = Artifact.from_file(AGENT_FILE)
        self.setup = deployer.ensure([agent])
        self.agent_path = deployer.remote_path(agent)
        self._channels: dict[str, PersistentChannel] = {}
        self._control: PersistentChannel | None = None
        if config.persistent_channel:
            self._control = self._agent_channel(None)
            self.transport = ChannelTransport(transport, self._control)
            deployer.transport = self.transport
        self.probe = probe(self.transport, config.python, self.agent_path, self._control)
        if config.warm_agent:
            stale = clean_stale_servers(self.transport, deployer.workdir)
            if stale:
                notify(
                    f"device '{config.name}': removed {len(stale)} warm-agent folder(s) of killed sessions"
                )
        self._servers: dict[str, AgentServer | None] = {}
        self._cold_reasons: dict[str, str] = {}

    def _agent_channel(self, runtime: str | None) -> PersistentChannel:
        base = self.transport.base if isinstance(self.transport, ChannelTransport) else self.transport
        return agent_channel(base, self.config.python, self.agent_path, runtime)

    def channel_pid(self, runtime: str | None) -> int | None:
        """The process id of the persistent agent for ``runtime`` (None: commands; None back
        when none is open)."""
        channel = self._control if runtime is None else self._channels.get(runtime)
        return channel.pid if channel is not None else None

    def _run_channel(self, runtime: str) -> PersistentChannel | None:
        """The persistent agent that forks runs of ``runtime``, opened on first use."""
        if not (self.config.persistent_channel and self.config.warm_agent):
            return None
        if runtime not in self._channels:
            self._channels[runtime] = self._agent_channel(runtime)
        return self._channels[runtime]

    def _channel_notes(self) -> list[str]:
        found: list[str] = []
        for channel in (self._control, *self._channels.values()):
            if channel is not None:
                found += channel.take_notes()
        return found

    def server_pid(self, runtime: str) -> int | None:
        """The process id of the warm agent for ``runtime`` on the device (None: none running)."""
        server = self._servers.get(runtime)
        return server.pid if server is not None else None

    def _server(self, runtime: str) -> AgentServer | None:
        """The warm agent for ``runtime``, started on first use; None where it is off or could not
        start (the reason goes into the result's notes)."""
        channel = self._channels.get(runtime)
        if not self.config.warm_agent or (channel is not None and channel.given_up is None):
            return None
        if runtime not in self._servers:
            try:
                self._servers[runtime] = AgentServer.start(
                    self.transport, self.config.python, self.agent_path, self.deployer.workdir, runtime
                )
            except AgentError as exc:
                self._servers[runtime] = None
                self._cold_reasons[runtime] = str(exc)
        return self._servers[runtime]

    def _server_gone(self, runtime: str, reason: str) -> None:
        """The warm agent went away (idle exit, killed): this run went cold; the next one starts
        a new server (one that cannot start leaves the device cold for the run)."""
        gone = self._servers.pop(runtime, None)
        if gone is not None:
            with contextlib.suppress(Exception):
                gone.stop()
        self._cold_reasons[runtime] = reason

    def _energy_source(self, configured: str | None) -> tuple[str | None, ExternalMeter | None]:
        """The energy source: ``--energy``, else devices.yaml, else auto (the best available)."""
        configured = configured or self.config.energy
        available = list(self.probe.energy_sources)
        if configured == "external":
            if not self.config.energy_meter:
                raise ConfigError(
                    f"device '{self.config.name}': energy: external needs energy_meter (a host command "
                    "that prints watts per line) in devices.yaml"
                )
            return "external", ExternalMeter(self.config.energy_meter)
        source = pick_source(configured, available)
        if source is not None and source not in available:
            raise ConfigError(
                f"device '{self.config.name}': energy source '{source}' is not on the device "
                f"(it has: {', '.join(available) or 'none'}); set energy: auto or none"
            )
        return source, None

    def outputs_unsupported(self, model_format: str) -> str | None:
        return None  # the agent saves every runtime's outputs

    def run(self, request: RunRequest) -> tuple[BenchmarkResult, DeployReport]:
        artifacts = [request.model] + ([request.inputs] if request.inputs is not None else [])
        with phase("deploy"):
            # the agent checks every file's sha256 at every run, so what this session has already
            # checked or pushed needs no round trip before the run
            deploy = self.deployer.ensure(artifacts, trust_verified=True)
        remote_outputs = None
        if request.outputs_to is not None:
            remote_outputs = posixpath.join(
                self.deployer.workdir, "runs", f"{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
            )
        source, meter = self._energy_source(request.energy)
        argv = build_run_argv(
            self.config.python,
            self.agent_path,
            self.deployer.remote_path(request.model),
            request.runtime,
            request.protocol,
            threads=request.threads,
            cpus=self.config.cpus,
            inputs_path=self.deployer.remote_path(request.inputs) if request.inputs is not None else None,
            outputs_path=remote_outputs,
            energy=source if source != "external" else None,
            verify=[(self.deployer.remote_path(a), a.sha256) for a in artifacts],
            cooldown_below_c=request.cooldown_below_c,  # the agent waits on the device, before loading
        )
        timeout_s = request.protocol.budget_s(cooldown=request.cooldown_below_c is not None)
        with phase("run"):
            try:
                result = self._run(request, argv, meter, timeout_s)
            except ArtifactDamaged as damaged:
                # changed on the device since this session checked it: check all, push again, rerun
                self.notify(f"{damaged}; checking the device's cache and pushing again")
                self.deployer.forget(artifacts)
                with phase("deploy"):
                    deploy = self.deployer.ensure(artifacts)
                result = self._run(request, argv, meter, timeout_s)
        if remote_outputs is not None and request.outputs_to is not None:
            with phase("pull outputs"):
                self.transport.pull(remote_outputs, request.outputs_to)
                self.transport.run(["rm", "-f", remote_outputs], timeout=60)
        notes = self._channel_notes()
        if notes:
            result = dataclasses.replace(result, notes=(*result.notes, *notes))
        return result, deploy

    def _run(
        self, request: RunRequest, argv: list[str], meter: ExternalMeter | None, timeout_s: float
    ) -> BenchmarkResult:
        channel = self._run_channel(request.runtime)
        return run_agent(
            self.transport,
            argv,
            channel=channel,
            server=self._server(request.runtime) if channel is None or channel.given_up else None,
            on_server_gone=lambda reason: self._server_gone(request.runtime, reason),
            cold_reason=self._cold_reasons.get(request.runtime),
            timeout_s=timeout_s,
            model=request.model_name,
            model_format=request.model_format,
            precision=request.precision,
            protocol=request.protocol,
            virtual=self.config.virtual,
            meter=meter,
        )

    def close(self) -> None:
        for server in self._servers.values():
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        self._servers.clear()
        for channel in (*self._channels.values(), self._control):
            if channel is not None:
                with contextlib.suppress(Exception):
                    channel.close()
        self._channels.clear()
