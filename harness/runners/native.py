"""Measures on devices without Python with the runtimes' own tools (LiteRT's benchmark_model,
ONNX Runtime's onnxruntime_perf_test) and the phone's own tracing, into the agent's BenchmarkResult.

Per-iteration latency comes from the phone's Perfetto trace (the interpreter's ``Invoke``
sections, ``debug.tflite.trace=1``) or the tool's per-run result file; thermal state, power and
energy from the same trace (the sysfs sampler where Perfetto is off); PSS from ``dumpsys
meminfo`` of the tool's pid. Limits: benchmark_model on a device without Perfetto gives no
per-inference samples; onnxruntime_perf_test writes no model outputs, so .onnx accuracy needs
the agent. What was not measured is None with the reason in ``notes``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import posixpath
import shutil
import signal
import statistics
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from harness.config import AnyDevice
from harness.deploy import Artifact, Deployer, DeployReport
from harness.download import cache_dir
from harness.errors import AgentError, ConfigError, NotMeasurable, ParseError, TransportError
from harness.measurement import BenchmarkResult, MemoryUsage, RuntimeInfo
from harness.native_tools import ResolvedTool, System, parse_abi_probe, resolve
from harness.probes import perfetto
from harness.probes.cpus import CPU_REPORT_SCRIPT, format_cpu_list, taskset_prefix
from harness.probes.environment import warnings as environment_warnings
from harness.probes.parsers.benchmark_tools import (
    parse_ort_perf_test,
    parse_ort_result_file,
    parse_tflite_benchmark,
)
from harness.probes.sysfs_sampler import parse_sysfs_samples
from harness.probes.thermal import ThermalTrace
from harness.runners import native_results as results
from harness.runners.base import CpuInfo, DeviceProbe, OsInfo, RunRequest, phase
from harness.runners.cooldown import wait_until_cool
from harness.runners.native_results import Timing
from harness.runners.native_script import ScriptArgs, ScriptOutput, Tracing, parse_script_output, run_script
from harness.runners.tensor_files import (
    Signature,
    TensorFileError,
    load_batch,
    onnx_signature,
    sample_major_bytes,
    save_outputs,
    split_outputs,
    tflite_signature,
    write_tensor_proto,
)
from harness.stats import summarize_latency
from harness.transport.base import CommandResult, Transport
from harness.transport.shell import persistent_shell

T = TypeVar("T")
NATIVE_TOOL_FOR_FORMAT = {"tflite": "benchmark_model", "onnx": "onnxruntime_perf_test"}
RUNTIME_FOR_TOOL = {"benchmark_model": "litert", "onnxruntime_perf_test": "onnxruntime"}
TRACE_MAX_BYTES = 32 << 20  # the recording stops growing here (max_file_size_bytes)
SCRIPT_NAME = "edgelab-native-run.sh"
# where the persistent shell keeps each command's stderr; a labgrid place's kind is known only once
# acquired, so it keeps one command per shell
_SHELL_TMPDIR = {"adb": "/data/local/tmp", "ssh": "/tmp", "local": "/tmp"}
PROBE_TIMEOUT_S = 60.0
CALIBRATION_MARGIN = (
    1.1  # min_iters must outlast min_s by this much, at the calibrated pace, to be what binds
)
PER_SAMPLE_PROCESS_S = 10.0  # accuracy: a bound on one tool process (start, model load, two inferences)

_PROBE_SCRIPT = r"""
echo "uname $(uname -s) $(uname -r) $(uname -m)"
abi=$(getprop ro.product.cpu.abi 2>/dev/null)
if [ -n "$abi" ]; then echo "abi android $abi"; else echo "abi linux $(uname -m)"; fi
echo "model $(getprop ro.product.model 2>/dev/null)"
echo "sdk $(getprop ro.build.version.sdk 2>/dev/null)"
echo "release $(getprop ro.build.version.release 2>/dev/null)"
echo "traced $(getprop persist.traced.enable 2>/dev/null)"
command -v perfetto >/dev/null 2>&1 && echo "has perfetto"
command -v dumpsys >/dev/null 2>&1 && echo "has dumpsys"
n=0; for c in /sys/devices/system/cpu/cpu[0-9]*; do [ -d "$c" ] && n=$((n + 1)); done; echo "cores $n"
while read -r key value unit; do
  [ "$key" = MemTotal: ] && echo "memtotal $value" && break
done < /proc/meminfo
for s in /sys/class/power_supply/*; do
  [ -r "$s/current_now" ] && [ -r "$s/voltage_now" ] && echo "has battery" && break
done
true
"""


@dataclass(frozen=True)
class NativeDevice:
    """What a device without Python offers the native runner, from one shell command."""

    probe: DeviceProbe
    system: System
    abi: str
    sdk: int | None
    tracing: Tracing
    tracing_note: str | None  # why the phone's own tracing is not used
    dumpsys: bool
    battery: bool


def parse_native_probe(text: str, device: str = "") -> NativeDevice:
    """The probe script's output: uname, ABI, getprop, which tools exist."""
    values: dict[str, str] = {}
    has: set[str] = set()
    for line in text.splitlines():
        key, _, rest = line.strip().partition(" ")
        if key == "has":
            has.add(rest.strip())
        elif key:
            values.setdefault(key, rest.strip())
    if "abi" not in values:
        raise ParseError("native-probe", f"device '{device}': no ABI line in {text.strip()[-300:]!r}")
    system, abi = parse_abi_probe(values["abi"], device=device)
    uname = values.get("uname", "").split()
    sdk_text = values.get("sdk", "")
    sdk = int(sdk_text) if sdk_text.isdigit() else None
    android = {
        "model": values.get("model") or None,
        "sdk": sdk_text or None,
        "release": values.get("release") or None,
    }
    tracing: Tracing = "sysfs"
    note: str | None
    if system != "android":
        note = "not an Android device: thermal state and battery power from the sysfs sampler"
    elif "perfetto" not in has:
        note = (
            "no perfetto on this phone (Android < 9): thermal state and battery power from the sysfs sampler"
        )
    elif sdk is not None and sdk < 30 and values.get("traced") != "1":
        note = (
            "perfetto is off on Android 9-10 until `adb shell setprop persist.traced.enable 1`: thermal "
            "state and battery power from the sysfs sampler"
        )
    else:
        tracing, note = "perfetto", None
    cores = values.get("cores", "")
    memtotal = values.get("memtotal", "")
    energy = ("odpm", "battery") if tracing == "perfetto" else (("battery",) if "battery" in has else ())
    probe = DeviceProbe(
        os=OsInfo(
            system=uname[0] if uname else None,
            release=uname[1] if len(uname) > 1 else None,
            machine=uname[2] if len(uname) > 2 else None,
            android=android if system == "android" else None,
        ),
        cpu=CpuInfo(cores=int(cores) if cores.isdigit() and int(cores) > 0 else None),
        memory_kb={"MemTotal": int(memtotal)} if memtotal.isdigit() else {},
        energy_sources=energy,
    )
    return NativeDevice(probe, system, abi, sdk, tracing, note, "dumpsys" in has, "battery" in has)


@dataclass(frozen=True)
class Plan:
    """The files and arguments of one measurement, worked out on the host."""

    tool_argv: tuple[str, ...]  # after the tool's own path
    artifacts: tuple[Artifact, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (device path, path in the run folder)
    inputs: tuple[tuple[str, int, str], ...] = ()  # per-sample mode: (all samples, bytes each, tool's file)
    samples: int = 0  # > 0: one tool process per sample (accuracy)
    notes: tuple[str, ...] = ()
    outputs: Signature | None = None  # per-sample mode: the tensors --output_filepath holds


class RawFiles:
    """Where a run's raw files go on the host: beside results.json when the session says where
    (``RunRequest.raw_to``: ``<raw_to>.perfetto-trace``, ``<raw_to>.<what>.txt``), else a temporary
    folder that is removed after a successful run and named in any error."""

    def __init__(self, raw_to: Path | None) -> None:
        self.raw_to = raw_to
        self._temporary: Path | None = None

    @property
    def stem(self) -> Path:
        if self.raw_to is not None:
            self.raw_to.parent.mkdir(parents=True, exist_ok=True)
            return self.raw_to
        if self._temporary is None:
            self._temporary = Path(tempfile.mkdtemp(prefix="edgelab-native-"))
        return self._temporary / "run"

    def path(self, suffix: str) -> Path:
        stem = self.stem
        return stem.with_name(stem.name + suffix)

    def keep(self, what: str, content: str | bytes) -> Path:
        path = self.path(f".{what}.txt" if isinstance(content, str) else f".{what}")
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return path

    def discard_temporary(self) -> None:
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None


class NativeRunner:
    """Measures with the runtimes' own tools on devices without Python (stock phones): the tool
    and the model pushed like any artifact, one device script per run around the tool and the
    phone's tracing, everything parsed on the host into the agent's result."""

    kind: Literal["agent", "native"] = "native"

    def __init__(self, config: AnyDevice, transport: Transport, deployer: Deployer) -> None:
        self.config = config
        self.transport: Transport = transport
        self.deployer = deployer
        shell_tmp = _SHELL_TMPDIR.get(config.kind)
        if config.persistent_channel and shell_tmp:  # one sh for the session: one round trip a command
            self.transport = persistent_shell(transport, tmpdir=shell_tmp)
            deployer.transport = self.transport
        self.setup = DeployReport()
        self.device = parse_native_probe(
            self._shell(["sh", "-c", _PROBE_SCRIPT], timeout=PROBE_TIMEOUT_S).stdout, config.name
        )
        self.probe = self.device.probe
        self._script = _script_artifact()
        self._tools: dict[str, tuple[ResolvedTool, Artifact]] = {}
        self._executable: set[str] = set()
        self._signatures: dict[str, Signature] = {}
        # (model sha256, threads) -> seconds per run of onnxruntime_perf_test, from its calibration
        self._run_times: dict[tuple[str, int], float] = {}

    # -- the one way commands and files reach the device (a persistent shell can replace it) ----

    def _shell(
        self, argv: Sequence[str], *, timeout: float, stdin: bytes | None = None, check: bool = False
    ) -> CommandResult:
        return self.transport.run(list(argv), timeout=timeout, stdin=stdin, check=check)

    def _pull(self, remote: str, local: Path) -> int:
        local.parent.mkdir(parents=True, exist_ok=True)
        return self.transport.pull(remote, local)

    def _wrapped(self, argv: Sequence[str]) -> tuple[str, ...]:
        """The tool's command behind ``taskset MASK`` when devices.yaml pins the device to ``cpus``
        (util-linux and toybox both take the hex mask), through a POSIX sh that reports the cores
        it may use (CPU_REPORT_SCRIPT, on stderr) and then execs the tool: the pid stays the
        tool's, for its Invoke sections and dumpsys meminfo."""
        return (*taskset_prefix(self.config.cpus), "sh", "-c", CPU_REPORT_SCRIPT, "edgelab-native", *argv)

    # -- tools and models ----------------------------------------------------------------------

    def _tool(self, name: str) -> tuple[ResolvedTool, Artifact]:
        """The tool for this device's ABI: devices.yaml's native_tools, else LiteRT's pinned build."""
        if name not in self._tools:
            resolved = resolve(
                name,
                self.device.abi,
                self.config.native_tools,
                system=self.device.system,
                device=self.config.name,
            )
            self._tools[name] = (resolved, Artifact.from_file(resolved.path, name))
        return self._tools[name]

    @staticmethod
    def _runtime(resolved: ResolvedTool) -> RuntimeInfo:
        version = "unknown"
        if resolved.origin == "litert":  # <base>/<version>/<platform>/<tool>
            version = resolved.source.rstrip("/").split("/")[-3]
        return RuntimeInfo(RUNTIME_FOR_TOOL[resolved.tool], resolved.tool, version)

    def _signature(self, model: Artifact, model_format: str) -> Signature:
        if model.sha256 not in self._signatures:
            try:
                reader = tflite_signature if model_format == "tflite" else onnx_signature
                self._signatures[model.sha256] = reader(model.local)
            except (ValueError, RuntimeError) as exc:
                raise ConfigError(f"model {model.local}: the host runtime cannot read it: {exc}") from None
        return self._signatures[model.sha256]

    # -- a run ---------------------------------------------------------------------------------

    def outputs_unsupported(self, model_format: str) -> str | None:
        if model_format == "tflite":
            return None  # benchmark_model --output_filepath, one process per sample
        return (
            f"device '{self.config.name}': accuracy of an .{model_format} model needs its outputs, and "
            "ONNX Runtime's onnxruntime_perf_test writes none; evaluate it on a device with the Python "
            "agent (runner: agent), or as a .tflite model"
        )

    def run(self, request: RunRequest) -> tuple[BenchmarkResult, DeployReport]:
        name = NATIVE_TOOL_FOR_FORMAT.get(request.model_format)
        if name is None:
            raise ConfigError(
                f"device '{self.config.name}': runner native measures .tflite and .onnx models, not "
                f"{request.model_format}"
            )
        unsupported = self.outputs_unsupported(request.model_format) if request.outputs_to else None
        if unsupported is not None:
            raise NotMeasurable(unsupported)
        resolved, tool = self._tool(name)
        token = uuid.uuid4().hex[:12]
        run_dir = posixpath.join(self.deployer.workdir, "native-runs", token)
        try:
            plan = self._plan(request, run_dir)
        except TensorFileError as exc:
            raise ConfigError(f"device '{self.config.name}': {request.model_name}: {exc}") from None
        with phase("deploy"):
            deploy = self.deployer.ensure([self._script, tool, request.model, *plan.artifacts])
            remote_tool = self.deployer.remote_path(tool)
            if remote_tool not in self._executable:
                self._shell(["chmod", "755", remote_tool], timeout=60, check=True)
                self._executable.add(remote_tool)
        cooldown = None
        if request.cooldown_below_c is not None:
            with phase("cooldown"):
                cooldown = wait_until_cool(
                    self.transport, request.cooldown_below_c, request.protocol.cooldown_max_s
                )
        raw = RawFiles(request.raw_to)
        if name == "onnxruntime_perf_test":
            with phase("calibrate"):
                mode, note = self._ort_mode(request, remote_tool, plan, run_dir, raw)
            plan = dataclasses.replace(plan, tool_argv=(*mode, *plan.tool_argv), notes=(*plan.notes, note))
        try:
            with phase("run"):
                result = self._measure(
                    request,
                    resolved=resolved,
                    tool=remote_tool,
                    plan=plan,
                    run_dir=run_dir,
                    token=token,
                    raw=raw,
                )
        finally:
            self._cleanup(run_dir, token)
        raw.discard_temporary()
        return dataclasses.replace(result, cooldown=cooldown), deploy

    def _plan(self, request: RunRequest, run_dir: str) -> Plan:
        model = self.deployer.remote_path(request.model)
        if request.model_format == "tflite":
            return self._tflite_plan(request, model, run_dir)
        return self._ort_plan(request, model, run_dir)

    def _tflite_plan(self, request: RunRequest, model: str, run_dir: str) -> Plan:
        protocol = request.protocol
        accuracy = request.outputs_to is not None
        argv = [f"--graph={model}", f"--num_threads={request.threads}"]
        if accuracy:
            argv += [
                "--warmup_runs=1",
                "--warmup_min_secs=0",
                "--num_runs=1",
                "--min_secs=0",
                f"--max_secs={protocol.max_s:g}",
                "--report_peak_memory_footprint=true",
                f"--output_filepath={run_dir}/out.bin",
            ]
        else:
            argv += [
                f"--warmup_runs={protocol.warmup_iters}",
                f"--warmup_min_secs={protocol.warmup_s:g}",
                f"--num_runs={protocol.min_iters}",
                f"--min_secs={protocol.min_s:g}",
                f"--max_secs={protocol.max_s:g}",
                "--report_peak_memory_footprint=true",
            ]
            if protocol.rate_hz > 0:
                argv.append(f"--run_delay={1.0 / protocol.rate_hz:g}")
        if request.inputs is None:
            if accuracy:
                raise TensorFileError("accuracy needs an inputs file")
            return Plan(
                tuple(argv), notes=("inputs: random values made by benchmark_model (no inputs file)",)
            )
        signature = self._signature(request.model, "tflite")
        batch, count = load_batch(request.inputs.local, signature.inputs)
        given = [spec for spec in signature.inputs if spec.name in batch]
        missing = [spec.name for spec in signature.inputs if spec.name not in batch]
        if accuracy and missing:
            raise TensorFileError(f"accuracy needs every input; the inputs file lacks {missing}")
        for spec in given:
            if "," in spec.name:
                raise TensorFileError(f"input '{spec.name}': benchmark_model takes no input name with ','")
        folder = _derived_dir(request.inputs.sha256, request.model.sha256, "all" if accuracy else "first")
        artifacts: list[Artifact] = []
        files: list[str] = []
        inputs: list[tuple[str, int, str]] = []
        for index, spec in enumerate(given):
            host = folder / f"input{index}.bin"
            if not host.exists():
                _write_atomic(
                    host, sample_major_bytes(batch[spec.name] if accuracy else batch[spec.name][:1])
                )
            artifact = Artifact.from_file(host, f"input{index}.bin")
            artifacts.append(artifact)
            current = self.deployer.remote_path(artifact)
            if accuracy:  # the script cuts sample i out of the whole file before each run
                inputs.append((current, spec.nbytes, f"{run_dir}/in{index}.bin"))
                current = f"{run_dir}/in{index}.bin"
            files.append(f"{spec.name.replace(':', '::')}:{current}")  # LiteRT escapes ':' as '::'
        if given:
            argv += [
                "--input_layer=" + ",".join(spec.name for spec in given),
                "--input_layer_shape=" + ":".join(",".join(str(d) for d in spec.shape) for spec in given),
                "--input_layer_value_files=" + ",".join(files),
            ]
        notes = []
        if missing:
            notes.append(
                f"inputs: {', '.join(missing)} not in the inputs file; benchmark_model fills them at random"
            )
        if not accuracy and count > 1:
            notes.append(
                f"inputs: sample 0 of {count} fed to every run (benchmark_model takes one input set)"
            )
        return Plan(
            tuple(argv),
            tuple(artifacts),
            inputs=tuple(inputs),
            samples=count if accuracy else 0,
            notes=tuple(notes),
            outputs=signature if accuracy else None,
        )

    def _ort_plan(self, request: RunRequest, model: str, run_dir: str) -> Plan:
        threads = ("-x", str(request.threads))
        tail = ("-s", f"{run_dir}/model/model.onnx", f"{run_dir}/result.csv")
        links: list[tuple[str, str]] = [(model, "model/model.onnx")]
        notes = ["warm-up: onnxruntime_perf_test runs one warm-up inference before its timed runs"]
        if request.protocol.rate_hz > 0:
            notes.append("rate_hz: onnxruntime_perf_test cannot pace its runs; they ran back to back")
        generated = "inputs: generated by onnxruntime_perf_test (-I; free dimensions are 1)"
        if request.inputs is None:
            return Plan((*threads, "-I", *tail), links=tuple(links), notes=(*notes, generated))
        signature = self._signature(request.model, "onnx")
        batch, count = load_batch(request.inputs.local, signature.inputs)
        missing = [spec.name for spec in signature.inputs if spec.name not in batch]
        if missing:
            notes.append(f"{generated}: the inputs file lacks {missing}")
            return Plan((*threads, "-I", *tail), links=tuple(links), notes=tuple(notes))
        folder = _derived_dir(request.inputs.sha256, request.model.sha256, "pb")
        artifacts = []
        for index, spec in enumerate(signature.inputs):
            host = folder / f"input_{index}.pb"
            if not host.exists():
                write_tensor_proto(batch[spec.name][0], spec.name, host)
            artifact = Artifact.from_file(host, f"input_{index}.pb")
            artifacts.append(artifact)
            links.append((self.deployer.remote_path(artifact), f"model/test_data_set_0/input_{index}.pb"))
        if count > 1:
            notes.append(
                f"inputs: sample 0 of {count} fed to every run (onnxruntime_perf_test takes one data set)"
            )
        return Plan((*threads, *tail), tuple(artifacts), tuple(links), notes=tuple(notes))

    def _ort_mode(
        self, request: RunRequest, tool: str, plan: Plan, run_dir: str, raw: RawFiles
    ) -> tuple[tuple[str, ...], str]:
        """onnxruntime_perf_test stops after a count (``-m times -r N``) or once its runs add up to
        whole seconds (``-m duration -t S``), not at both minimums as the agent does. A short
        calibration run (warmup_iters runs, also a warm-up of the device; remembered per model)
        says which minimum binds, and that one is given to the tool."""
        protocol = request.protocol
        if protocol.min_s <= 0:
            return (
                "-m",
                "times",
                "-r",
                str(protocol.min_iters),
            ), "runs: min_iters (the protocol has no min_s)"
        key = (request.model.sha256, request.threads)
        if key not in self._run_times:
            count = max(1, min(protocol.warmup_iters, 50))
            token = uuid.uuid4().hex[:12]
            directory = f"{run_dir}-calibrate"
            argv = tuple(a.replace(run_dir + "/", directory + "/") for a in plan.tool_argv)
            args = ScriptArgs(
                token,
                directory,
                "once",
                0.0,
                "none",
                None,
                0.25,
                False,
                False,
                self._wrapped((tool, "-m", "times", "-r", str(count), *argv)),
                links=plan.links,
            )
            try:
                output = self._run_script(args, protocol.budget_s(), b"")
                if output.exit_code != 0:
                    raise self._tool_failed("onnxruntime_perf_test", output, raw)
                times = self._parse(
                    raw, lambda: parse_ort_result_file(output.section("result.csv") or ""), output
                )
            finally:
                self._cleanup(directory, token)
            warm = times.seconds[len(times.seconds) // 2 :]  # the first runs are the warm-up
            self._run_times[key] = statistics.median(warm)
        per_run = self._run_times[key]
        seen = f"its calibration runs took {per_run * 1e3:.3g} ms each (median of the later half)"
        if protocol.min_iters * per_run >= protocol.min_s * CALIBRATION_MARGIN:
            runs = min(protocol.min_iters, max(1, math.floor(protocol.max_s / per_run)))
            return (
                "-m",
                "times",
                "-r",
                str(runs),
            ), f"runs: {runs} ({seen}, so min_iters takes longer than min_s)"
        seconds = max(1, math.ceil(protocol.min_s))
        return ("-m", "duration", "-t", str(seconds)), (
            f"runs: until they add up to {seconds} s ({seen}, so min_s binds; the tool takes whole seconds)"
        )

    def trace_config(self, request: RunRequest, duration_s: float) -> str:
        """The TraceConfig sent to the phone's perfetto; a subclass may ask for something else."""
        period = request.protocol.sample_period_s
        poll_ms = perfetto.DEFAULT_POLL_MS if period <= 0 else max(100, round(period * 1000))
        return perfetto.trace_config(duration_s, poll_ms=poll_ms, max_file_bytes=TRACE_MAX_BYTES)

    def _measure(
        self,
        request: RunRequest,
        *,
        resolved: ResolvedTool,
        tool: str,
        plan: Plan,
        run_dir: str,
        token: str,
        raw: RawFiles,
    ) -> BenchmarkResult:
        protocol = request.protocol
        source, energy_note = self._energy_source(request.energy)
        idle_s = protocol.idle_s if source is not None else 0.0
        timeout = protocol.budget_s() + idle_s + 60.0 + plan.samples * PER_SAMPLE_PROCESS_S
        tracing = self.device.tracing
        trace_remote = (
            f"{perfetto.DEVICE_TRACE_DIR}/edgelab-{token}.perfetto-trace" if tracing == "perfetto" else None
        )
        config = self.trace_config(request, timeout + 60.0) if tracing == "perfetto" else ""
        args = ScriptArgs(
            token,
            run_dir,
            "samples" if plan.samples else "once",
            idle_s,
            tracing,
            trace_remote,
            protocol.sample_period_s if protocol.sample_period_s > 0 else 0.25,
            self.device.dumpsys and not plan.samples,
            resolved.tool == "benchmark_model",
            self._wrapped((tool, *plan.tool_argv)),
            samples=plan.samples,
            links=plan.links,
            inputs=plan.inputs,
        )
        output = self._run_script(args, timeout, config.encode())
        if output.failed is not None:
            kept = raw.keep("script", results.describe(output, config))
            if output.failed.startswith("perfetto"):
                said = (output.section("perfetto-stderr") or output.section("perfetto-stdout") or "").strip()
                raise AgentError(
                    f"device '{self.config.name}': perfetto refused the trace config (exit "
                    f"{output.failed.split()[-1]}): {said[-600:] or '(no output)'}; the config and "
                    f"perfetto's output are kept in {kept}"
                )
            raise AgentError(
                f"device '{self.config.name}': the run script stopped ({output.failed}); see {kept}"
            )
        if not output.done or output.exit_code is None:
            kept = raw.keep("script", results.describe(output, config))
            raise AgentError(
                f"device '{self.config.name}': the run script did not finish; what it printed is kept "
                f"in {kept}"
            )
        if output.exit_code != 0:
            raise self._tool_failed(resolved.tool, output, raw)
        trace: perfetto.PerfettoTrace | None = None
        trace_path: Path | None = None
        if trace_remote is not None:
            trace_path = raw.path(".perfetto-trace")
            with phase("pull trace"):
                self._pull(trace_remote, trace_path)
            try:
                trace = perfetto.read_trace(trace_path)
            except ParseError as exc:
                raise AgentError(
                    f"device '{self.config.name}': {exc}; the trace is kept in {trace_path}"
                ) from None
        if plan.samples:
            timing, memory, load_ms, first_ms, notes = self._per_sample(request, plan, output, run_dir, raw)
        else:
            timing, memory, load_ms, first_ms, notes = self._once(
                resolved.tool, output, trace, raw, protocol.min_s
            )
        thermal, rails, battery, thermal_notes = self._thermal(output, trace, timing, raw)
        verdict, verdict_notes = results.verdict(thermal, timing, output)
        energy = None
        if source is not None:
            energy, energy_note = results.energy_report(source, rails, battery, timing, output)
        pss, pss_note = (
            (None, "pss: not measured (one short process per sample)")
            if plan.samples
            else results.pss_mb(output, self.device.dumpsys)
        )
        busy = output.idle_busy_pct() if idle_s > 0 else None
        all_notes = [
            *plan.notes,
            *timing.notes,
            *notes,
            *thermal_notes,
            *verdict_notes,
            *([f"tracing: {self.device.tracing_note}"] if self.device.tracing_note else []),
            *([energy_note] if energy_note else []),
            *([pss_note] if pss_note else []),
        ]
        return BenchmarkResult(
            device=self.config.name,
            model=request.model_name,
            format=request.model_format,
            runtime=self._runtime(resolved),
            precision=request.precision,
            threads=request.threads,
            latency_ms=timing.summary,
            memory=dataclasses.replace(
                memory, pss_mb=pss, pss_source="dumpsys meminfo" if pss is not None else None
            ),
            load_ms=load_ms,
            first_inference_ms=first_ms,
            iterations=timing.summary.samples,
            stopped_by=results.stopped_by(timing, protocol),
            protocol=protocol,
            latency_samples_ns=timing.samples_ns,
            start_offsets_ns=timing.offsets_ns,
            outputs_file=str(request.outputs_to) if request.outputs_to is not None else None,
            thermal=thermal,
            throttle=verdict,
            energy=energy,
            warnings=tuple(
                environment_warnings(
                    results.environment(output, self.config.virtual), busy, virtual=self.config.virtual
                )
            ),
            notes=tuple(dict.fromkeys(all_notes)),
            trace_file=str(trace_path) if trace_path is not None and request.raw_to is not None else None,
            placement=results.cpu_placement(output, request.threads, self.config.cpus),
            modes=results.modes(timing),
        )

    def _once(
        self,
        tool: str,
        output: ScriptOutput,
        trace: perfetto.PerfettoTrace | None,
        raw: RawFiles,
        min_s: float,
    ) -> tuple[Timing, MemoryUsage, float, float, tuple[str, ...]]:
        """One tool process: the tool's report, and per-iteration timing from the trace (LiteRT)
        or the result file (ONNX Runtime)."""
        text = results.tool_output(output)
        end = output.marks.get("tool-end")
        if tool == "benchmark_model":
            parsed = self._parse(raw, lambda: parse_tflite_benchmark(text), output)
            if parsed.steady is None or parsed.steady.count < 1:
                raise self._parse_failed("tflite-benchmark: no steady-state 'count=...' line", output, raw)
            report = self._parse(raw, lambda: results.tflite_report(parsed), output)
            timing = results.invoke_timing(trace, output.pid, parsed) if trace is not None else None
            if timing is None:
                reason = (
                    results.missing_invokes_note(trace, output.pid, parsed)
                    if trace is not None
                    else "latency samples: not measured (benchmark_model prints a summary; per-inference "
                    "timing needs the phone's Perfetto); the summary is the tool's own"
                )
                timing = results.summary_timing(parsed, report, end, reason)
                return timing, report.memory, report.load_ms, report.first_inference_ms, report.notes
            notes = tuple(n for n in report.notes if not n.startswith(("median:", "p90/p99:")))
            return timing, report.memory, report.load_ms, report.first_inference_ms, notes
        ort = self._parse(raw, lambda: parse_ort_perf_test(text), output)
        report = self._parse(raw, lambda: results.ort_report(ort), output)
        times = self._parse(raw, lambda: parse_ort_result_file(output.section("result.csv") or ""), output)
        timing = results.ort_timing(times, ort, end, min_s)
        notes = tuple(n for n in report.notes if not n.startswith("std:"))
        return timing, report.memory, report.load_ms, report.first_inference_ms, notes

    def _per_sample(
        self, request: RunRequest, plan: Plan, output: ScriptOutput, run_dir: str, raw: RawFiles
    ) -> tuple[Timing, MemoryUsage, float, float, tuple[str, ...]]:
        """One benchmark_model process per sample: each one's timed inference, and its outputs in
        the agent's .npz layout at ``outputs_to``."""
        assert plan.outputs is not None and request.outputs_to is not None
        parts = results.samples_output(output)
        if len(parts) != plan.samples:
            raise self._parse_failed(
                f"tool-outputs: {len(parts)} sample outputs for {plan.samples} samples", output, raw
            )
        samples: list[int] = []
        peaks: list[float | None] = []
        loads: list[float] = []
        firsts: list[float] = []
        for part in parts:
            parsed = self._parse(raw, lambda part=part: parse_tflite_benchmark(part), output)  # type: ignore[misc]
            steady = parsed.steady
            value = None if steady is None else (steady.curr_us or steady.avg_us or steady.min_us)
            if value is None or value <= 0:
                raise self._parse_failed(
                    "tflite-benchmark: a sample's run printed no inference time", output, raw
                )
            samples.append(round(value * 1e3))
            peaks.append(parsed.peak_memory_monitored_mb)
            loads.append((parsed.init_us or 0.0) / 1e3)
            firsts.append((parsed.first_inference_us or 0.0) / 1e3)
        with phase("pull outputs"), tempfile.TemporaryDirectory(prefix="edgelab-outputs-") as folder:
            local = Path(folder) / "outputs.bin"
            self._pull(f"{run_dir}/outputs.bin", local)
            data = local.read_bytes()
        try:
            arrays = split_outputs(data, plan.outputs.outputs, plan.samples)
        except (ParseError, ValueError) as exc:
            kept = raw.keep("outputs.bin", data)
            raise AgentError(
                f"device '{self.config.name}': {exc}; the raw outputs are kept in {kept}"
            ) from None
        save_outputs(arrays, request.outputs_to)
        start, end = output.marks.get("sample-0"), output.marks.get("tool-end")
        timing = Timing(
            tuple(samples),
            results.sample_offsets(output, len(samples)),
            summarize_latency(samples),
            (start, end) if start is not None and end is not None and end > start else None,
            (
                "latency samples: one benchmark_model process per sample (its inputs through "
                "--input_layer_value_files, one warm-up and one timed inference, outputs through "
                "--output_filepath); each sample is that timed inference",
                "start offsets: when each sample's process started (/proc/uptime, 10 ms steps)",
            ),
        )
        memory = MemoryUsage(baseline_mb=None, load_peak_mb=None, peak_rss_mb=results.max_or_none(peaks))
        return timing, memory, statistics.median(loads), statistics.median(firsts), ()

    def _thermal(
        self, output: ScriptOutput, trace: perfetto.PerfettoTrace | None, timing: Timing, raw: RawFiles
    ) -> tuple[
        ThermalTrace | None, perfetto.EnergySamples | None, perfetto.EnergySamples | None, tuple[str, ...]
    ]:
        """The thermal trace (offsets from the timed phase's start) and the power series, from the
        Perfetto trace or the sysfs sampler's lines."""
        origin = timing.timed[0] if timing.timed is not None else output.marks.get("tool-start", 0)
        thermal = rails = battery = None
        if trace is not None:
            thermal, rails, battery = trace.thermal_trace(origin), trace.rails, trace.battery
        elif self.device.tracing == "sysfs" and (output.section("sysfs.txt") or "").strip():
            text = output.section("sysfs.txt") or ""
            sampled = self._parse(raw, lambda: parse_sysfs_samples(text), output)
            thermal, battery = sampled.thermal_trace(origin), sampled.battery
        if thermal is not None and not thermal.zones and not thermal.policies:
            thermal = None
        status = results.status_samples(output, origin)
        if thermal is not None and status:
            thermal = dataclasses.replace(thermal, status_kind="android", status=status)
        if thermal is None:
            return (
                None,
                rails,
                battery,
                ("thermal: not measured (the device shows no thermal zone or cpufreq policy)",),
            )
        return thermal, rails, battery, ()

    def _energy_source(self, configured: str | None) -> tuple[str | None, str | None]:
        """``--energy``, else devices.yaml: none, auto, or a source the phone's recording has."""
        chosen = configured or self.config.energy
        available = self.probe.energy_sources
        if chosen in (None, "", "none"):
            return None, "energy: not measured (energy: none)"
        if chosen == "auto":
            if not available:
                return None, "energy: not measured (the device shows the shell no power rail or battery)"
            return "auto", None
        if chosen == "external":
            raise ConfigError(
                f"device '{self.config.name}': energy: external is not aligned with the native runner's "
                "recording; set energy: auto (the phone's power rails or battery) or none"
            )
        if chosen not in available:
            raise ConfigError(
                f"device '{self.config.name}': energy source '{chosen}' is not on the device for runner "
                f"native (it has: {', '.join(available) or 'none'}); set energy: auto or none"
            )
        return chosen, None

    # -- the device script, errors, cleanup ----------------------------------------------------

    def _run_script(self, args: ScriptArgs, timeout: float, config: bytes) -> ScriptOutput:
        result = self._shell(
            args.argv(self.deployer.remote_path(self._script)), timeout=timeout, stdin=config
        )
        try:
            return parse_script_output(result.stdout, args.token)
        except ParseError as exc:
            raise AgentError(
                f"device '{self.config.name}': {exc} (exit {result.exit_code}; stderr "
                f"{result.stderr.strip()[-400:]!r})"
            ) from None

    def _cleanup(self, run_dir: str, token: str) -> None:
        """Best effort: after a lost connection the error that matters is the run's, not this."""
        trace = f"{perfetto.DEVICE_TRACE_DIR}/edgelab-{token}.perfetto-trace"
        with contextlib.suppress(TransportError):
            self._shell(["rm", "-rf", run_dir, trace], timeout=60)

    def _tool_failed(self, tool: str, output: ScriptOutput, raw: RawFiles) -> AgentError:
        code = output.exit_code or 0
        text = results.tool_output(output)
        kept = raw.keep(tool, results.describe(output))
        how = f"exited {code}"
        if code > 128 and code - 128 in {s.value for s in signal.Signals}:
            how = f"crashed ({signal.Signals(code - 128).name}, exit {code})"
        elif code == 97:
            how = "could not be given its sample (cutting it out of the inputs file failed, exit 97)"
        elif code == 98:
            how = "wrote no --output_filepath file"
        if self.config.cpus and "taskset" in (output.section("tool.err") or ""):
            cpus = format_cpu_list(self.config.cpus)
            how += f" (taskset could not pin it to cpus {cpus}: check cpus in devices.yaml)"
        tail = " | ".join(line.strip() for line in text.strip().splitlines()[-4:] if line.strip())
        return AgentError(
            f"device '{self.config.name}': {tool} {how}: {tail or '(no output)'}; its output is kept "
            f"in {kept}"
        )

    def _parse(self, raw: RawFiles, parse: Callable[[], T], output: ScriptOutput) -> T:
        """A device output through its parser; a ParseError keeps the raw output and names it."""
        try:
            return parse()
        except ParseError as exc:
            kept = raw.keep(exc.kind, results.describe(output))
            raise AgentError(
                f"device '{self.config.name}': {exc}; the raw output is kept in {kept}"
            ) from None

    def _parse_failed(self, message: str, output: ScriptOutput, raw: RawFiles) -> AgentError:
        kept = raw.keep("tool", results.describe(output))
        return AgentError(f"device '{self.config.name}': {message}; the raw output is kept in {kept}")

    def close(self) -> None:
        """Nothing stays running on the device between runs."""


def _script_artifact() -> Artifact:
    """The run script as a host file named by its content, pushed like any artifact."""
    text = run_script().encode()
    digest = hashlib.sha256(text).hexdigest()
    path = cache_dir() / "native" / digest[:16] / SCRIPT_NAME
    if not path.exists():
        _write_atomic(path, text)
    return Artifact.from_file(path, SCRIPT_NAME)


def _derived_dir(inputs_sha256: str, model_sha256: str, kind: str) -> Path:
    return cache_dir() / "native" / "inputs" / f"{inputs_sha256[:16]}-{model_sha256[:16]}-{kind}"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    temporary.write_bytes(data)
    temporary.replace(path)
