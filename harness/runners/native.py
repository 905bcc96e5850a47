"""Native runners for devices without Python: TFLite ``benchmark_model`` and
``onnxruntime_perf_test``, pushed like any artifact, run with the request's settings, and their
output parsed into the same BenchmarkResult as the agent's.

These tools print summaries, not per-iteration samples, so what they do not report is filled
in the most conservative way and said so in ``notes`` (e.g. no median from benchmark_model
before LiteRT: the mean stands in).
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from harness.config import AnyDevice
from harness.deploy import Artifact, Deployer, DeployReport
from harness.errors import AgentError, ConfigError, ParseError
from harness.measurement import BenchmarkResult, LatencyProtocol, MemoryUsage, RuntimeInfo
from harness.probes.cpus import (
    CPU_REPORT_SCRIPT,
    CpuPlacement,
    format_cpu_list,
    parse_cpu_report,
    placement,
    strip_cpu_report,
    taskset_prefix,
)
from harness.probes.parsers.benchmark_tools import (
    OrtPerfTest,
    TfliteBenchmark,
    parse_ort_perf_test,
    parse_tflite_benchmark,
)
from harness.runners.base import CpuInfo, DeviceProbe, OsInfo, RunRequest, phase
from harness.runners.cooldown import wait_until_cool
from harness.stats import LatencySummary, ModesCheck
from harness.transport.base import CommandResult, Transport

NATIVE_TOOL_FOR_FORMAT = {"tflite": "benchmark_model", "onnx": "onnxruntime_perf_test"}


def tflite_argv(binary: str, model: str, protocol: LatencyProtocol, threads: int) -> list[str]:
    """benchmark_model's own flags for the same protocol: warm-up runs and seconds, timed runs
    and seconds, a time cap, peak memory sampled by the tool."""
    argv = [
        binary,
        f"--graph={model}",
        f"--warmup_runs={protocol.warmup_iters}",
        f"--warmup_min_secs={protocol.warmup_s:g}",
        f"--num_runs={protocol.min_iters}",
        f"--min_secs={protocol.min_s:g}",
        f"--max_secs={protocol.max_s:g}",
        "--report_peak_memory_footprint=true",
    ]
    argv.append(f"--num_threads={threads}")
    if protocol.rate_hz > 0:
        argv.append(f"--run_delay={1.0 / protocol.rate_hz:g}")
    return argv


def ort_argv(binary: str, model: str, protocol: LatencyProtocol, threads: int) -> list[str]:
    """onnxruntime_perf_test: a fixed number of runs (``-m times -r``), generated inputs (``-I``),
    statistics (``-s``). It has no minimum-seconds mode; the minimum count is what it runs."""
    argv = [binary, "-m", "times", "-r", str(protocol.min_iters), "-I", "-s", "-x", str(threads)]
    return [*argv, model]


def pinned_argv(argv: list[str], cpus: Sequence[int] | None) -> list[str]:
    """``argv`` run by a POSIX sh that first reports its cores (CPU_REPORT_SCRIPT) and then execs
    it, behind ``taskset MASK`` when the device has ``cpus``: util-linux and toybox (stock
    Android) both take the hex mask, and the tool inherits the affinity through exec."""
    return [*taskset_prefix(cpus), "sh", "-c", CPU_REPORT_SCRIPT, "edgelab-native", *argv]


def native_placement(output: str, threads: int, cpus: Sequence[int] | None) -> CpuPlacement:
    """The cores the tool ran on, from the wrapper's report lines in ``output``."""
    pinned_by = "taskset" if cpus else None
    try:
        allowed, per_cpu = parse_cpu_report(output)
    except ValueError as exc:
        return placement(
            threads,
            requested=cpus,
            pinned_by=pinned_by,
            allowed=None,
            per_cpu={},
            allowed_reason=f"unreadable report: {exc}",
        )
    return placement(
        threads,
        requested=cpus,
        pinned_by=pinned_by,
        allowed=allowed,
        per_cpu=per_cpu,
        allowed_reason=None if allowed else "/proc/self/status has no Cpus_allowed_list on this device",
    )


def _finite(*values: float | None) -> float:
    for value in values:
        if value is not None and math.isfinite(value):
            return value
    raise ValueError("no value")


def tflite_result(parsed: TfliteBenchmark) -> tuple[LatencySummary, MemoryUsage, float, float, list[str]]:
    steady = parsed.steady
    if steady is None or steady.avg_us is None:
        raise ParseError("tflite-benchmark", "no steady-state statistics line (count=... avg=...)")
    notes = []
    mean = steady.avg_us / 1e3
    if steady.median_us is None:
        notes.append("median: benchmark_model printed no median; the mean stands in")
    if steady.p95_us is None:
        notes.append("p90/p99: not printed; the maximum stands in (an upper bound)")
    else:
        notes.append("p90/p99: benchmark_model prints p95; p90 is p95 and p99 is the maximum (bounds)")
    top = _finite(steady.max_us, steady.avg_us) / 1e3
    std = (steady.std_us or 0.0) / 1e3
    summary = LatencySummary(
        median=_finite(steady.median_us, steady.avg_us) / 1e3,
        p90=_finite(steady.p95_us, steady.max_us, steady.avg_us) / 1e3,
        p99=top,
        mean=mean,
        std=std,
        cv=std / mean if mean > 0 else 0.0,
        min=_finite(steady.min_us, steady.avg_us) / 1e3,
        max=top,
        samples=steady.count,
    )
    peak = parsed.peak_memory_monitored_mb or (
        parsed.memory_overall_mb if parsed.memory_kind == "peak" else None
    )
    if peak is None and parsed.memory_overall_mb is not None:
        notes.append("memory: only the footprint delta from the tool's start was printed; not a peak RSS")
    memory = MemoryUsage(baseline_mb=None, load_peak_mb=parsed.memory_init_mb, peak_rss_mb=peak)
    return summary, memory, (parsed.init_us or 0.0) / 1e3, (parsed.first_inference_us or 0.0) / 1e3, notes


def ort_result(parsed: OrtPerfTest) -> tuple[LatencySummary, MemoryUsage, float, float, list[str]]:
    mean = parsed.avg_ms
    if mean is None and parsed.p50_ms is None:
        raise ParseError("ort-perf-test", "no average or P50 latency")
    notes = ["std: onnxruntime_perf_test prints none; reported as 0"]
    runs = parsed.runs or parsed.requests or 0
    center = _finite(parsed.p50_ms, mean)
    summary = LatencySummary(
        median=center,
        p90=_finite(parsed.p90_ms, parsed.max_ms, center),
        p99=_finite(parsed.p99_ms, parsed.max_ms, center),
        mean=_finite(mean, center),
        std=0.0,
        cv=0.0,
        min=_finite(parsed.min_ms, center),
        max=_finite(parsed.max_ms, center),
        samples=runs,
    )
    peak_mb = parsed.peak_working_set_bytes / 1024 / 1024 if parsed.peak_working_set_bytes else None
    memory = MemoryUsage(
        baseline_mb=None, load_peak_mb=None, peak_rss_mb=round(peak_mb, 3) if peak_mb else None
    )
    return summary, memory, parsed.session_creation_ms or 0.0, parsed.first_inference_ms or 0.0, notes


def run_native(
    transport: Transport,
    argv: list[str],
    *,
    timeout_s: float,
    model: str,
    model_format: str,
    precision: str,
    protocol: LatencyProtocol,
    threads: int,
    cpus: Sequence[int] | None = None,
) -> BenchmarkResult:
    """Run the tool (pinned to ``cpus``, if any) and map its summary onto a BenchmarkResult (no
    per-iteration samples)."""
    result = transport.run(pinned_argv(argv, cpus), timeout=timeout_s)
    cores = native_placement(result.stderr, threads, cpus)
    result = dataclasses.replace(result, argv=tuple(argv), stderr=strip_cpu_report(result.stderr))
    output = result.stdout + "\n" + result.stderr  # benchmark_model logs to stderr
    if result.exit_code != 0:
        hint = ""
        if cpus and "taskset" in result.stderr:
            hint = f" (taskset could not pin it to cpus {format_cpu_list(cpus)}: check cpus in devices.yaml)"
        tool = shlex.join(argv[:1])
        raise AgentError(
            f"device '{transport.device}': {tool} exited {result.exit_code}{hint}: {_tail(result)}"
        )
    try:
        if model_format == "tflite":
            summary, memory, load_ms, first_ms, notes = tflite_result(parse_tflite_benchmark(output))
            runtime = RuntimeInfo("litert", "benchmark_model", "native")
        else:
            summary, memory, load_ms, first_ms, notes = ort_result(parse_ort_perf_test(output))
            runtime = RuntimeInfo("onnxruntime", "onnxruntime_perf_test", "native")
    except ParseError as exc:
        raise AgentError(f"device '{transport.device}': {exc}; output: {_tail(result)}") from None
    return BenchmarkResult(
        device=transport.device,
        model=model,
        format=model_format,
        runtime=runtime,
        precision=precision,
        threads=threads,
        latency_ms=summary,
        memory=memory,
        load_ms=load_ms,
        first_inference_ms=first_ms,
        iterations=summary.samples,
        stopped_by="native",
        protocol=protocol,
        latency_samples_ns=(),
        start_offsets_ns=(),
        throttle=None,
        notes=(*notes, "thermal: not measured (no trace from the native tool); throttling not judged"),
        placement=cores,
        modes=ModesCheck(None, "no per-iteration samples: the native tool prints a summary"),
    )


def _tail(result: CommandResult, limit: int = 400) -> str:
    text: Any = (result.stderr or result.stdout).strip()
    return str(text)[-limit:] or "(no output)"


def native_probe(transport: Transport) -> DeviceProbe:
    """What a device without Python says about itself (uname, getprop when it is Android)."""
    uname = transport.run(["uname", "-s", "-r", "-m"], timeout=30).stdout.split()
    model = transport.run(
        ["sh", "-c", "getprop ro.product.model 2>/dev/null; true"], timeout=30
    ).stdout.strip()
    cores = transport.run(["sh", "-c", "getconf _NPROCESSORS_ONLN 2>/dev/null; true"], timeout=30).stdout
    return DeviceProbe(
        os=OsInfo(
            system=uname[0] if uname else None,
            release=uname[1] if len(uname) > 1 else None,
            machine=uname[2] if len(uname) > 2 else None,
            android={"model": model} if model else None,
        ),
        cpu=CpuInfo(cores=int(cores) if cores.strip().isdigit() else None),
    )


class NativeRunner:
    """Measures with the runtimes' own tools (``benchmark_model``, ``onnxruntime_perf_test``) for
    devices without Python: the tool is pushed like any artifact and its output parsed."""

    kind: Literal["agent", "native"] = "native"

    def __init__(self, config: AnyDevice, transport: Transport, deployer: Deployer) -> None:
        self.config = config
        self.transport = transport
        self.deployer = deployer
        self.setup = DeployReport()
        self.probe = native_probe(transport)

    def _tool(self, model_format: str) -> Artifact:
        tool_path = self.config.native_tools.get(model_format) if model_format in ("tflite", "onnx") else None
        if not tool_path:
            tool = NATIVE_TOOL_FOR_FORMAT.get(model_format, "?")
            raise ConfigError(
                f"device '{self.config.name}': runner native has no {model_format} tool; add "
                f"native_tools: {{{model_format}: /path/to/{tool}}} (built for the device) to devices.yaml"
            )
        local = Path(tool_path).expanduser()
        if not local.is_file():
            raise ConfigError(
                f"device '{self.config.name}': native_tools.{model_format}: {local} does not exist"
            )
        return Artifact.from_file(local)

    def run(self, request: RunRequest) -> tuple[BenchmarkResult, DeployReport]:
        if request.outputs_to is not None:
            raise AgentError(
                f"device '{self.config.name}': runner native cannot return model outputs yet; "
                "accuracy needs the agent on this device"
            )
        binary = self._tool(request.model_format)
        with phase("deploy"):
            deploy = self.deployer.ensure([binary, request.model])
            remote_binary = self.deployer.remote_path(binary)
            self.transport.run(["chmod", "755", remote_binary], timeout=60, check=True)
        cooldown = None
        if request.cooldown_below_c is not None:
            with phase("cooldown"):
                cooldown = wait_until_cool(
                    self.transport, request.cooldown_below_c, request.protocol.cooldown_max_s
                )
        build = tflite_argv if request.model_format == "tflite" else ort_argv
        argv = build(
            remote_binary, self.deployer.remote_path(request.model), request.protocol, request.threads
        )
        with phase("run"):
            result = run_native(
                self.transport,
                argv,
                timeout_s=request.protocol.budget_s(),
                model=request.model_name,
                model_format=request.model_format,
                precision=request.precision,
                protocol=request.protocol,
                threads=request.threads,
                cpus=self.config.cpus,
            )
        return dataclasses.replace(result, cooldown=cooldown), deploy

    def close(self) -> None:
        """Nothing stays running on the device between runs."""
