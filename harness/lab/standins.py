"""Stand-ins for LiteRT's ``benchmark_model`` and ONNX Runtime's ``onnxruntime_perf_test`` on the
stock virtual phone: their flags and output formats, around real inference on the host runtimes.

Run by the lab's device service in the phone's cgroup (so its CPU quota and thermal model
apply): ``python -m harness.lab.standins TOOL --state DIR --cwd DIR -- ARGS``. Every inference
is timed on its own; with ``debug.tflite.trace=1`` each one is reported to the service as the
interpreter's atrace sections. Not emulated: delegates other than XNNPACK, op profiling tables.
"""

from __future__ import annotations

import argparse
import getopt
import math
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.lab.adbd import android_root
from harness.lab.stock import PROPS_FILE

EVENTS_FD_ENV = "EDGELAB_STANDIN_EVENTS_FD"


class ToolExit(Exception):
    """The tool ends with this exit code (its message already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def cxx(value: float) -> str:
    """A double as C++ ostream prints it by default (6 significant digits)."""
    text = f"{value:.6g}"
    return text


class Device:
    """Device paths of the phone as host paths, with its writable folders enforced."""

    def __init__(self, state: Path, cwd: str) -> None:
        self.root = android_root(state, stock=True)
        self.cwd = cwd or "/"

    def absolute(self, path: str) -> str:
        return path if path.startswith("/") else os.path.normpath(os.path.join(self.cwd, path))

    def read(self, path: str) -> Path:
        return self.root.resolve(self.absolute(path))

    def write(self, path: str) -> Path | None:
        device_path = self.absolute(path)
        if not self.root.is_writable(device_path):
            return None
        target = self.root.resolve(device_path)
        return target if target.parent.is_dir() else None

    def prop(self, name: str) -> str:
        for source in (self.root.host_path(PROPS_FILE), self.root.state_dir / "system/etc/edgelab.prop"):
            try:
                for line in source.read_text().splitlines():
                    if line.startswith(name + "="):
                        return line.split("=", 1)[1]
            except OSError:
                continue
        return ""


class Sections:
    """ATrace_beginSection/endSection, as the lab's tracing service receives them."""

    def __init__(self, enabled: bool) -> None:
        fd = os.environ.get(EVENTS_FD_ENV)
        self.stream = os.fdopen(int(fd), "w", buffering=1) if enabled and fd else None

    def emit(self, begin_ns: int, end_ns: int, name: str) -> None:
        if self.stream is not None:
            self.stream.write(f"{begin_ns} {end_ns} {name}\n")


def peak_rss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class MemoryMonitor:
    """benchmark_model's periodic footprint check (a thread, as in the tool)."""

    def __init__(self, interval_ms: int) -> None:
        self.interval_s = max(1, interval_ms) / 1000
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_kb = max(self.peak_kb, peak_rss_kb())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, peak_rss_kb())
        return self.peak_kb / 1024


# -- benchmark_model -------------------------------------------------------------------------------

BM_FLAGS: dict[str, tuple[type, Any]] = {
    "num_runs": (int, 50),
    "min_secs": (float, 1.0),
    "max_secs": (float, 150.0),
    "run_delay": (float, -1.0),
    "run_frequency": (float, -1.0),
    "num_threads": (int, -1),
    "use_caching": (bool, False),
    "benchmark_name": (str, ""),
    "output_prefix": (str, ""),
    "warmup_runs": (int, 1),
    "warmup_min_secs": (float, 0.5),
    "verbose": (bool, False),
    "dry_run": (bool, False),
    "report_peak_memory_footprint": (bool, False),
    "memory_footprint_check_interval_ms": (int, 50),
    "gpu_invoke_loop_times": (int, 1),
    "graph": (str, ""),
    "signature_to_run_for": (str, ""),
    "list_signatures": (bool, False),
    "input_layer": (str, ""),
    "input_layer_shape": (str, ""),
    "input_layer_value_range": (str, ""),
    "input_layer_value_files": (str, ""),
    "allow_fp16": (bool, False),
    "require_full_delegation": (bool, False),
    "enable_op_profiling": (bool, False),
    "op_profiling_output_mode": (str, "stdout"),
    "op_profiling_output_file": (str, ""),
    "max_profiling_buffer_entries": (int, 1024),
    "allow_dynamic_profiling_buffer_increase": (bool, False),
    "profiling_output_csv_file": (str, ""),
    "export_model_runtime_info": (bool, False),
    "model_runtime_info_output_file": (str, ""),
    "print_preinvoke_state": (bool, False),
    "print_postinvoke_state": (bool, False),
    "release_dynamic_tensors": (bool, False),
    "optimize_memory_for_large_tensors": (int, 0),
    "disable_delegate_clustering": (bool, False),
    "enable_builtin_cast_constant_cache": (bool, False),
    "output_filepath": (str, ""),
    "output_proto_filepath": (str, ""),
    "result_file_path": (str, ""),
    "tensor_name_display_length": (int, 25),
    "tensor_type_display_length": (int, 15),
    "alloc_type_display_length": (int, 18),
    # delegate providers
    "use_xnnpack": (bool, True),
    "xnnpack_force_fp16": (bool, False),
    "use_gpu": (bool, False),
    "use_nnapi": (bool, False),
    "use_hexagon": (bool, False),
    "external_delegate_path": (str, ""),
    "help": (bool, False),
}
BM_LOGGED = (
    ("num_runs", "Min num runs"),
    ("min_secs", "Min runs duration (seconds)"),
    ("max_secs", "Max runs duration (seconds)"),
    ("run_delay", "Inter-run delay (seconds)"),
    ("run_frequency", "Number of prorated runs per second"),
    ("num_threads", "Num threads"),
    ("use_caching", "Use caching"),
    ("benchmark_name", "Benchmark name"),
    ("output_prefix", "Output prefix"),
    ("warmup_runs", "Min warmup runs"),
    ("warmup_min_secs", "Min warmup runs duration (seconds)"),
    ("dry_run", "Run w/o invoking kernels"),
    ("report_peak_memory_footprint", "Report the peak memory footprint"),
    ("memory_footprint_check_interval_ms", "Memory footprint check interval (ms)"),
    ("graph", "Graph"),
    ("signature_to_run_for", "Signature to run"),
    ("input_layer", "Input layers"),
    ("input_layer_shape", "Input shapes"),
    ("input_layer_value_range", "Input value ranges"),
    ("input_layer_value_files", "Input value files"),
    ("allow_fp16", "Allow fp16"),
    ("require_full_delegation", "Require full delegation"),
    ("enable_op_profiling", "Enable op profiling"),
    ("output_filepath", "File path to export outputs layer to"),
    ("result_file_path", "File path to save the benchmark result in binary proto format"),
    ("use_xnnpack", "Use xnnpack"),
    ("xnnpack_force_fp16", "xnnpack_force_fp16"),
)
ALWAYS_LOGGED = ("graph", "signature_to_run_for")


def _flag_value(kind: type, text: str) -> Any:
    if kind is bool:
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValueError(text)
    return kind(text)


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return cxx(value)
    return str(value)


class BenchmarkModel:
    """LiteRT's benchmark_model: Flags::Parse, LogParams, Init, Run(warm-up), Run(regular)."""

    def __init__(self, device: Device, argv: Sequence[str], out: Callable[[str], None]) -> None:
        self.device = device
        self.argv = list(argv)
        self.out = out
        self.params = {name: default for name, (_kind, default) in BM_FLAGS.items()}
        self.set: set[str] = set()

    def info(self, text: str) -> None:
        self.out(f"INFO: {text}\n")

    @staticmethod
    def error(text: str) -> None:
        sys.stderr.write(f"ERROR: {text}\n")
        sys.stderr.flush()

    def fatal(self, text: str) -> ToolExit:
        sys.stderr.write(f"FATAL: {text}\n")
        sys.stderr.flush()
        return ToolExit(134)  # std::abort()

    def parse_flags(self) -> None:
        unconsumed = []
        for arg in self.argv:
            name, equals, text = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
            if not equals or name not in BM_FLAGS:
                unconsumed.append(arg)
                continue
            try:
                self.params[name] = _flag_value(BM_FLAGS[name][0], text)
            except ValueError:
                self.error(f"Failed to parse flag '--{name}' with value '{text}'")
                self.error("Benchmarking failed.")
                raise ToolExit(1) from None
            self.set.add(name)
        if self.params["help"]:
            self.error("usage: benchmark_model --graph=FILE [flags] (the virtual lab's stand-in)")
            raise ToolExit(1)
        if unconsumed:
            self.out(f"WARN: Unconsumed cmdline flags: {' '.join(unconsumed)}\n")

    def log_params(self) -> None:
        verbose = self.params["verbose"]
        self.info(f"Log parameter values verbosely: [{int(verbose)}]")
        for name, label in BM_LOGGED:
            if verbose or name in self.set or name in ALWAYS_LOGGED:
                self.info(f"{label}: [{_param_text(self.params[name])}]")

    def run(self) -> int:
        self.info("STARTING!")
        self.parse_flags()
        self.log_params()
        for name, what in (("use_gpu", "GPU"), ("use_nnapi", "NNAPI"), ("use_hexagon", "Hexagon")):
            if self.params[name]:
                self.error(f"{what} delegate: not available on the virtual phone (host CPU only)")
                self.error("Benchmarking failed.")
                return 1
        graph = self.params["graph"]
        if not graph:
            self.error("Please specify the name of your TF Lite input file with --graph")
            self.error("Benchmarking failed.")
            return 1
        monitor = None
        if self.params["report_peak_memory_footprint"]:
            monitor = MemoryMonitor(self.params["memory_footprint_check_interval_ms"])
            monitor.start()
        model = self.device.read(graph)
        start_rss = peak_rss_kb()
        init_start = time.monotonic_ns()
        interpreter = self.init(model, graph)
        init_us = (time.monotonic_ns() - init_start) // 1000
        init_rss = peak_rss_kb()
        try:
            size_mb = model.stat().st_size / 1e6
            self.info(f"The input model file size (MB): {cxx(size_mb)}")
        except OSError:
            size_mb = 0.0
            self.out("WARN: Failed to get the input model file size.\n")
        self.info(f"Initialized session in {cxx(init_us / 1e3)}ms.")
        self.prepare_inputs(interpreter)
        if self.params["dry_run"]:
            self.params.update(warmup_runs=0, warmup_min_secs=-1.0, num_runs=0, min_secs=-1.0)
        sections = Sections(self.device.prop("debug.tflite.trace") == "1")  # read at interpreter creation
        warmup = self.loop(
            interpreter,
            self.params["warmup_runs"],
            self.params["warmup_min_secs"],
            self.params["max_secs"],
            sections,
        )
        regular = self.loop(
            interpreter, self.params["num_runs"], self.params["min_secs"], self.params["max_secs"], sections
        )
        overall_rss = peak_rss_kb()
        peak_mb = monitor.stop() if monitor is not None else None
        self.info(
            f"Inference timings in us: Init: {init_us}, First inference: {warmup[0] if warmup else 0}, "
            f"Warmup (avg): {_avg_text(warmup)}, Inference (avg): {_avg_text(regular)}"
        )
        self.info(
            "Note: as the benchmark tool itself affects memory footprint, the following is only "
            "APPROXIMATE to "
            "the actual memory footprint of the model at runtime. Take the information at your discretion."
        )
        self.info(
            "Memory footprint delta from the start of the tool (MB): "
            f"init={cxx((init_rss - start_rss) / 1024.0)} overall={cxx((overall_rss - start_rss) / 1024.0)}"
        )
        if peak_mb is not None:
            self.info(f"Overall peak memory footprint (MB) via periodic monitoring: {cxx(peak_mb)}")
            rss_mb, shared_mb = _statm_mb()
            self.info("Memory status at the end of exeution:")
            self.info(f"- VmRSS              : {rss_mb} MB")
            self.info(f"+ RssAnnon           : {rss_mb - shared_mb} MB")
            self.info(f"+ RssFile + RssShmem : {shared_mb} MB")
        self.save_outputs(interpreter)
        self.save_result(
            init_us=init_us,
            warmup=warmup,
            regular=regular,
            start_rss=start_rss,
            init_rss=init_rss,
            overall_rss=overall_rss,
            peak_mb=peak_mb,
            size_mb=size_mb,
        )
        return 0

    def init(self, model: Path, graph: str) -> Any:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if not model.is_file():
            self.error(f"Failed to initialize model loader with path {graph}")
            self.error(f"Failed to load model {graph}")
            self.error("Benchmarking failed.")
            raise ToolExit(1)
        threads = self.params["num_threads"]
        resolver = (
            OpResolverType.AUTO
            if self.params["use_xnnpack"]
            else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        try:
            interpreter = Interpreter(
                model_path=str(model),
                num_threads=threads if threads > 0 else None,
                experimental_op_resolver_type=resolver,
            )
        except (ValueError, RuntimeError) as exc:
            self.error(f"Failed to load model {graph}: {exc}")
            self.error("Benchmarking failed.")
            raise ToolExit(1) from None
        self.info(f"Loaded model {graph}")
        self.resize_inputs(interpreter)
        interpreter.allocate_tensors()
        return interpreter

    def _layers(self) -> list[str]:
        return [name for name in self.params["input_layer"].split(",") if name]

    def resize_inputs(self, interpreter: Any) -> None:
        names = self._layers()
        shapes = [s for s in self.params["input_layer_shape"].split(":") if s]
        if not names and not shapes:
            return
        if len(names) != len(shapes):
            self.error(
                "There must be the same number of items in --input_layer as in --input_layer_shape. "
                f"Got {len(names)} and {len(shapes)}"
            )
            raise ToolExit(1)
        by_name = {detail["name"]: detail for detail in interpreter.get_input_details()}
        for name, shape in zip(names, shapes, strict=True):
            detail = by_name.get(name)
            if detail is None:
                raise self.fatal(f"Cannot find the corresponding input_layer name({name}) in the model.")
            interpreter.resize_tensor_input(detail["index"], [int(v) for v in shape.split(",")])

    def prepare_inputs(self, interpreter: Any) -> None:
        files = _value_files(self.params["input_layer_value_files"])
        rng = np.random.default_rng()
        for detail in interpreter.get_input_details():
            name, dtype, shape = detail["name"], np.dtype(detail["dtype"]), tuple(detail["shape"])
            if name in files:
                path = self.device.read(files[name])
                try:
                    raw = path.read_bytes()
                except OSError:
                    raise self.fatal(f"Failed to read the input_layer_value_file:{files[name]}") from None
                expected = int(np.prod(shape)) * dtype.itemsize
                if len(raw) != expected:
                    raise self.fatal(
                        f"The size of {files[name]} is {len(raw)} bytes while the input tensor {name} "
                        f"expects {expected} bytes."
                    )
                self.info(f"Read {len(raw)} bytes from {files[name]}")
                data = np.frombuffer(raw, dtype=dtype).reshape(shape)
            elif np.issubdtype(dtype, np.floating):
                data = rng.uniform(-0.5, 0.5, size=shape).astype(dtype)
            elif np.issubdtype(dtype, np.integer):
                info = np.iinfo(dtype)
                data = rng.integers(
                    max(info.min, -128), min(info.max, 127), size=shape, endpoint=True
                ).astype(dtype)
            else:
                data = np.zeros(shape, dtype=dtype)
            interpreter.set_tensor(detail["index"], data)

    def loop(
        self, interpreter: Any, min_runs: int, min_secs: float, max_secs: float, sections: Sections
    ) -> list[int]:
        """BenchmarkModel::Run: at least min_runs and min_secs, no run started after max_secs."""
        self.info(
            f"Running benchmark for at least {min_runs} iterations and at least {cxx(min_secs)} seconds but "
            f"terminate if exceeding {cxx(max_secs)} seconds."
        )
        durations: list[int] = []
        now_us = time.monotonic_ns() // 1000
        min_finish = now_us + int(min_secs * 1e6)
        max_finish = now_us + int(max_secs * 1e6)
        delay = self.params["run_delay"]
        frequency = self.params["run_frequency"]
        gap = 1.0 / frequency if frequency > 0 else 0.0
        next_finish = now_us * 1e-6 + gap
        run = 0
        while (run < min_runs or now_us < min_finish) and now_us <= max_finish:
            begin = now_ns()
            if not self.params["dry_run"]:
                interpreter.invoke()
            end = now_ns()
            sections.emit(begin, end, "invoke@-1/0")
            sections.emit(begin, end, "Invoke@0/0")
            durations.append((end - begin) // 1000)
            if frequency > 0:
                delay = next_finish - time.monotonic_ns() * 1e-9
                next_finish += gap
            if delay > 0:
                time.sleep(delay)
            now_us = time.monotonic_ns() // 1000
            run += 1
        self.info(_stat_line(durations) + "\n")
        return durations

    def save_outputs(self, interpreter: Any) -> None:
        path = self.params["output_filepath"]
        if not path:
            return
        target = self.device.write(path)
        if target is None:
            return  # std::ofstream fails silently, as in the tool
        with target.open("wb") as handle:
            for detail in interpreter.get_output_details():
                handle.write(np.ascontiguousarray(interpreter.get_tensor(detail["index"])).tobytes())

    def save_result(
        self,
        *,
        init_us: int,
        warmup: list[int],
        regular: list[int],
        start_rss: int,
        init_rss: int,
        overall_rss: int,
        peak_mb: float | None,
        size_mb: float,
    ) -> None:
        path = self.params["result_file_path"]
        if not path:
            return
        result = benchmark_result_class()()
        latency = result.latency_metrics
        latency.init_ms = init_us / 1000.0
        if warmup:
            latency.first_inference_ms = warmup[0] / 1000.0
            latency.average_warm_up_ms = sum(warmup) / len(warmup) / 1000.0
        if regular:
            ordered = sorted(regular)
            latency.min_ms, latency.max_ms = ordered[0] / 1000.0, ordered[-1] / 1000.0
            latency.avg_ms = sum(regular) / len(regular) / 1000.0
            latency.stddev_ms = _std(regular) / 1000.0
            latency.median_ms = _percentile(regular, 50) / 1000.0
            latency.p5_ms = _percentile(regular, 5) / 1000.0
            latency.p95_ms = _percentile(regular, 95) / 1000.0
        memory = result.memory_metrics
        memory.init_footprint_kb = init_rss - start_rss
        memory.overall_footprint_kb = overall_rss - start_rss
        if peak_mb is not None and peak_mb > 0:
            memory.peak_mem_mb = peak_mb
        result.misc_metrics.model_size_mb = size_mb
        result.misc_metrics.num_runs = len(regular)
        result.misc_metrics.num_warmup_runs = len(warmup)
        target = self.device.write(path)
        if target is None:
            self.error(f"Failed to save benchmark result to: {path}")
            return
        self.info(f"Saving benchmark result to: {path}")
        target.write_bytes(result.SerializeToString())
        self.info(f"Saved benchmark result to: {path}")


def benchmark_result_class() -> Any:
    """tflite.tools.benchmark.BenchmarkResult, from its schema (LiteRT's benchmark_result.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(name="benchmark_result.proto", package="tflite.tools.benchmark")
    file.syntax = "proto2"
    types = descriptor_pb2.FieldDescriptorProto
    schemas = {
        "LatencyMetrics": [
            (name, number, types.TYPE_FLOAT)
            for number, name in enumerate(
                [
                    "avg_ms",
                    "min_ms",
                    "max_ms",
                    "stddev_ms",
                    "median_ms",
                    "p5_ms",
                    "p95_ms",
                    "init_ms",
                    "first_inference_ms",
                    "average_warm_up_ms",
                ],
                start=1,
            )
        ],
        "MemoryMetrics": [
            ("init_footprint_kb", 1, types.TYPE_INT64),
            ("overall_footprint_kb", 2, types.TYPE_INT64),
            ("peak_mem_mb", 3, types.TYPE_FLOAT),
        ],
        "MiscMetrics": [
            ("model_size_mb", 1, types.TYPE_FLOAT),
            ("num_runs", 2, types.TYPE_INT32),
            ("num_warmup_runs", 3, types.TYPE_INT32),
            ("model_throughput_in_mb_per_sec", 4, types.TYPE_FLOAT),
        ],
    }
    for message, fields in schemas.items():
        described = file.message_type.add(name=message)
        for name, number, kind in fields:
            described.field.add(name=name, number=number, type=kind, label=types.LABEL_OPTIONAL)
    top = file.message_type.add(name="BenchmarkResult")
    top.field.add(name="name", number=1, type=types.TYPE_STRING, label=types.LABEL_OPTIONAL)
    for number, (name, message) in enumerate(
        [
            ("latency_metrics", "LatencyMetrics"),
            ("memory_metrics", "MemoryMetrics"),
            ("misc_metrics", "MiscMetrics"),
        ],
        start=2,
    ):
        top.field.add(
            name=name,
            number=number,
            type=types.TYPE_MESSAGE,
            type_name=f".tflite.tools.benchmark.{message}",
            label=types.LABEL_OPTIONAL,
        )
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tflite.tools.benchmark.BenchmarkResult")
    )


def _value_files(spec: str) -> dict[str, str]:
    """``name:path,name2:path2`` with ``\\:`` escaping a colon in a name."""
    files = {}
    for item in (part for part in spec.split(",") if part):
        marker = item.replace("\\:", "\0")
        name, _, path = marker.partition(":")
        files[name.replace("\0", ":")] = path.replace("\0", ":")
    return files


def _statm_mb() -> tuple[int, int]:
    pages = [int(v) for v in Path("/proc/self/statm").read_text().split()[:3]]
    page = os.sysconf("SC_PAGE_SIZE")
    return pages[1] * page >> 20, pages[2] * page >> 20


def _percentile(values: Sequence[int], percent: int) -> int:
    """StatWithPercentiles: the nth_element at size * percent / 100."""
    ordered = sorted(values)
    return ordered[len(ordered) * percent // 100]


def _std(values: Sequence[int]) -> int:
    """Stat::std_deviation(): population, truncated to the value type (int64 us)."""
    if not values or min(values) == max(values):
        return 0
    mean = sum(values) / len(values)
    variance = sum(v * v for v in values) / len(values) - mean * mean
    return int(math.sqrt(max(variance, 0.0)))


def _avg_text(values: Sequence[int]) -> str:
    return cxx(sum(values) / len(values)) if values else "nan"


def _stat_line(values: Sequence[int]) -> str:
    """StatWithPercentiles::OutputToStream."""
    if not values:
        line = "count=0"
    elif min(values) == max(values):
        line = f"count={len(values)} curr={values[-1]}" + ("(all same)" if len(values) > 1 else "")
    else:
        line = (
            f"count={len(values)} first={values[0]} curr={values[-1]} min={min(values)} max={max(values)} "
            f"avg={cxx(sum(values) / len(values))} std={_std(values)}"
        )
    if not values:
        return line + " p5=nan median=nan p95=nan"
    return (
        line + f" p5={_percentile(values, 5)} median={_percentile(values, 50)} p95={_percentile(values, 95)}"
    )


# -- onnxruntime_perf_test -------------------------------------------------------------------------

ORT_OPTIONS = "k:b:m:e:r:t:p:x:y:c:d:o:u:i:f:F:S:T:C:AMPIDZvhsqzn"


class PerfTest:
    """onnxruntime_perf_test: getopt, session creation, one warm-up run, then times or duration."""

    def __init__(self, device: Device, argv: Sequence[str], out: Callable[[str], None]) -> None:
        self.device = device
        self.argv = list(argv)
        self.out = out

    def usage(self) -> ToolExit:
        self.out(
            "perf_test [options...] model_path [result_file]\n"
            "(the virtual lab's stand-in; see docs/virtual-lab.md)\n"
        )
        return ToolExit(255)  # main returns -1

    def run(self) -> int:  # noqa: PLR0915 (the tool's main, in the tool's order)
        try:
            options, positional = getopt.getopt(self.argv, ORT_OPTIONS)
        except getopt.GetoptError as exc:
            sys.stderr.write(f"onnxruntime_perf_test: {exc.msg}\n")
            raise self.usage() from None
        settings: dict[str, str] = {}
        for flag, value in options:
            settings[flag] = value
        if "-h" in settings or not 1 <= len(positional) <= 2:
            raise self.usage()
        mode = settings.get("-m", "")
        if mode not in ("", "times", "duration"):
            raise self.usage()
        provider = settings.get("-e", "cpu")
        if provider not in ("cpu", "xnnpack"):
            sys.stderr.write(
                f"onnxruntime_perf_test: execution provider '{provider}' is not on the virtual phone\n"
            )
            raise self.usage()
        try:
            repeated = int(settings.get("-r", "1000"))
            duration_s = int(settings.get("-t", "600"))
            intra = int(settings.get("-x", "0"))
            inter = int(settings.get("-y", "0"))
        except ValueError:
            raise self.usage() from None
        if repeated <= 0 or intra < 0 or inter < 0:
            raise self.usage()
        if "-t" in settings and "-r" not in settings and mode != "times":
            mode = "duration"
        mode = mode or "times"
        model_device = positional[0]
        result_file = positional[1] if len(positional) == 2 else ""
        import onnxruntime as ort

        options_ = ort.SessionOptions()
        if intra:
            options_.intra_op_num_threads = intra
            self.out(f"Setting intra_op_num_threads to {intra}\n")
        if inter:
            options_.inter_op_num_threads = inter
            self.out(f"Setting inter_op_num_threads to {inter}\n")
        if "-Z" in settings:
            options_.add_session_config_entry("session.force_spinning_stop", "1")
            self.out("Disabling intra-op thread spinning between runs\n")
        if "-D" in settings:
            options_.add_session_config_entry("session.intra_op.allow_spinning", "0")
        level = settings.get("-o")
        if level is not None:
            options_.graph_optimization_level = {
                "0": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                "1": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                "2": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            }.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        profile = settings.get("-p")
        if profile:
            target = self.device.write(profile)
            if target is not None:
                options_.enable_profiling = True
                options_.profile_file_prefix = str(target)
        if "-M" in settings:
            options_.enable_mem_pattern = False
        if "-A" in settings:
            options_.enable_cpu_mem_arena = False
        model = self.device.read(model_device)
        created = time.monotonic_ns()
        try:
            session = ort.InferenceSession(str(model), options_, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types
            sys.stderr.write(f"{exc}\n")
            return 255
        session_s = (time.monotonic_ns() - created) / 1e9
        feeds = self.inputs(session, model_device, model, "-I" in settings, settings.get("-S"))
        if feeds is None:
            return 255
        first_begin = time.monotonic_ns()
        session.run(None, feeds)
        first_ms = (time.monotonic_ns() - first_begin) // 1_000_000
        cpu_before = os.times()
        run_begin = time.monotonic_ns()
        costs: list[float] = []
        if mode == "times":
            for _ in range(repeated):
                begin = now_ns()
                session.run(None, feeds)
                costs.append((now_ns() - begin) / 1e9)
        else:
            deadline = time.monotonic_ns() + duration_s * 1_000_000_000
            while time.monotonic_ns() < deadline:
                begin = now_ns()
                session.run(None, feeds)
                costs.append((now_ns() - begin) / 1e9)
        wall_s = (time.monotonic_ns() - run_begin) / 1e9
        cpu_after = os.times()
        cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
        cpu_pct = int(cpu_s / wall_s / (os.cpu_count() or 1) * 100) if wall_s > 0 else 0
        peak = peak_rss_kb() * 1024
        total = sum(costs)
        self.out(
            f"Session creation time cost: {cxx(session_s)} s\n"
            f"First inference time cost: {first_ms} ms\n"
            f"Total inference time cost: {cxx(total)} s\n"
            f"Total inference requests: {len(costs)}\n"
            f"Average inference time cost total: {total / len(costs) * 1000:.6f} ms\n"
            f"Total inference run time: {cxx(wall_s)} s\n"
            f"Number of inferences per second: {cxx(len(costs) / wall_s)} \n"
            f"Avg CPU usage: {cpu_pct} %\n"
            f"Peak working set size: {peak} bytes\n"
        )
        if profile and options_.enable_profiling:
            session.end_profiling()
        self.dump(result_file, "-s" in settings, costs, peak=peak, cpu=cpu_pct, model=model_device)
        return 0

    def inputs(
        self, session: Any, model_device: str, model: Path, generate: bool, seed: str | None
    ) -> dict[str, Any] | None:
        if generate:
            rng = np.random.default_rng(
                int(seed) if seed and seed.lstrip("-").isdigit() and int(seed) >= 0 else None
            )
            feeds = {}
            for item in session.get_inputs():
                shape = [d if isinstance(d, int) and d > 0 else 1 for d in item.shape]  # free dims are 1
                dtype = _ORT_TYPES.get(item.type, np.float32)
                if np.issubdtype(dtype, np.floating):
                    feeds[item.name] = rng.uniform(-1, 1, size=shape).astype(dtype)
                else:
                    feeds[item.name] = rng.integers(0, 10, size=shape).astype(dtype)
            return feeds
        test_set = model.parent / "test_data_set_0"
        case = model.parent.name
        if not test_set.is_dir():
            self.out(f"there is no test data for model {case}\n")
            return None
        try:
            from onnx import TensorProto, numpy_helper
        except ImportError:
            sys.stderr.write(
                "the virtual lab reads test_data_set_*/input_*.pb with the onnx package; install it\n"
            )
            return None
        feeds = {}
        for index, item in enumerate(session.get_inputs()):
            path = test_set / f"input_{index}.pb"
            if not path.exists():
                self.out(f"there is no test input data for input {item.name} and model {case}\n")
                return None
            tensor = TensorProto()
            tensor.ParseFromString(path.read_bytes())
            feeds[item.name] = numpy_helper.to_array(tensor)
        return feeds

    def dump(
        self, path: str, statistics: bool, costs: list[float], *, peak: int, cpu: int, model: str
    ) -> None:
        """PerformanceResult::DumpToFile: one line per run into the result file, or the summary."""
        have_file = bool(path)
        target = self.device.write(path) if have_file else None
        if have_file and target is None:
            sys.stderr.write(f"failed to open result file '{path}'. will dump stats to output.\n")
            have_file, statistics = False, True
        name = os.path.basename(os.path.dirname(self.device.absolute(model)))
        if name.startswith("test_"):
            name = name[5:]
        lines: list[str] = []
        if have_file and target is not None:
            lines = [f"{name},{cxx(cost)},{peak},{cpu},{index}\n" for index, cost in enumerate(costs)]
        else:
            self.out(f"Avg CPU usage:{cpu}\nPeak working set size:{peak}\nRuns:{len(costs)}\n")
            statistics = True
        summary = ""
        if costs and (statistics or not have_file):
            ordered = sorted(costs)
            total = len(ordered)
            pick = {
                label: ordered[int(total * q)]
                for label, q in (("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99), ("P999", 0.999))
            }
            summary = f"Min Latency: {cxx(ordered[0])} s\nMax Latency: {cxx(ordered[-1])} s\n" + "".join(
                f"{label} Latency: {cxx(value)} s\n" for label, value in pick.items()
            )
        if target is not None and have_file:
            with target.open("a") as handle:
                handle.writelines(lines)
                if statistics and summary:
                    handle.write("\n" + summary)
        if summary:
            self.out(summary)


_ORT_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def main(argv: list[str] | None = None) -> int:
    """``TOOL --state DIR --cwd DIR -- ARGS...``: everything after ``--`` is the tool's own argv."""
    raw = list(sys.argv[1:] if argv is None else argv)
    split = raw.index("--") if "--" in raw else len(raw)
    parser = argparse.ArgumentParser(prog="python -m harness.lab.standins", description=__doc__)
    parser.add_argument("tool", choices=("benchmark_model", "onnxruntime_perf_test"))
    parser.add_argument("--state", required=True)
    parser.add_argument("--cwd", default="/")
    arguments = parser.parse_args(raw[:split])
    tool_argv = raw[split + 1 :]
    device = Device(Path(arguments.state), arguments.cwd)

    def out(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        if arguments.tool == "benchmark_model":
            return BenchmarkModel(device, tool_argv, out).run()
        return PerfTest(device, tool_argv, out).run()
    except ToolExit as exit_:
        return exit_.code


if __name__ == "__main__":
    raise SystemExit(main())
