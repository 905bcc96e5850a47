"""EdgeLab's on-device runner: load a model, time inferences, print one JSON document.

Shipped to devices alone: stdlib + numpy + a runtime, Python >= 3.9 (boards run old
distributions), nothing of the harness. Per iteration it adds two clock reads and two appends.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

SCHEMA_VERSION = 1
EXIT_FAILED = 2

Feed = Callable[[int], None]


class AgentFailure(Exception):
    """A failure with the phase it happened in; becomes the ``kind: error`` document."""

    def __init__(self, phase: str, message: str, error_type: str = "AgentFailure") -> None:
        super().__init__(message)
        self.phase = phase
        self.error_type = error_type


# -- device facts -------------------------------------------------------------------------------


def read_status_kb() -> dict[str, int | None]:
    """VmHWM / VmRSS of this process in kB; None where /proc is absent (macOS)."""
    found: dict[str, int | None] = {"VmHWM": None, "VmRSS": None}
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in found:
                    found[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return found


# A run forked from the warm agent shares pages with it that a fresh process would hold alone: the
# agent's heap at the fork (copy-on-write) and its resident file pages, which the run maps to be
# measured like a fresh process (see resident_file_pages). The kernel's PSS splits each between
# the two. Set in the agent before its first run (forks_runs_from): the kB by which a child's
# PSS of the agent's file pages falls short of a fresh process's, None where it cannot be told.
_SHARED_FILE_KB: list[int | None] = []


def _smaps_rollup_kb() -> dict[str, int]:
    """The kB fields of this process's /proc/self/smaps_rollup (Linux >= 4.14); {} without it."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/smaps_rollup") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                words = rest.split()
                if len(words) == 2 and words[1] == "kB":
                    found[key] = int(words[0])
    except (OSError, ValueError):
        return {}
    return found


def pss_kb() -> tuple[int | None, int | None]:
    """Proportional set size in kB: as a process of its own would count it, and as the kernel
    does. The two differ only in a run forked from the warm agent, where the pages it shares with
    the agent count as a fresh process counts them: anonymous ones whole (``Anonymous`` instead
    of ``Pss_Anon``), the agent's file pages with the shortfall measured when the agent started
    added. The first is None there when smaps_rollup has no ``Pss_Anon``/``Pss_File`` to tell."""
    rollup = _smaps_rollup_kb()
    kernel = rollup.get("Pss")
    if kernel is None or not _SHARED_FILE_KB:
        return kernel, kernel
    shared_file = _SHARED_FILE_KB[0]
    if shared_file is None or "Pss_Anon" not in rollup or "Anonymous" not in rollup:
        return None, kernel
    return kernel - rollup["Pss_Anon"] + rollup["Anonymous"] + shared_file, kernel


def _read_first(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _cpu_model() -> str | None:
    text = _read_first("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    for key in ("model name", "Hardware", "Model", "cpu model", "CPU part"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or None


def _getprop(key: str) -> str | None:
    try:
        completed = subprocess.run(
            ["getprop", key], capture_output=True, text=True, errors="replace", timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = completed.stdout.strip()
    return value or None


_READ_ONLY: dict[str, str | None] = {}  # one getprop per key and process; forked runs inherit it


def _read_only_prop(key: str) -> str | None:
    """A ``ro.*`` property: Android sets each once at boot, so one read per process is enough."""
    if key not in _READ_ONLY:
        _READ_ONLY[key] = _getprop(key)
    return _READ_ONLY[key]


def android_sdk() -> str | None:
    """ro.build.version.sdk: set on Android, None elsewhere."""
    return _read_only_prop("ro.build.version.sdk")


def virtual_device(sysfs: str = "/sys") -> bool:
    """A device of EdgeLab's virtual lab: its sensor state file, or the phone's property."""
    if os.path.exists(sysfs + "/edgelab/state"):
        return True
    return android_sdk() is not None and _read_only_prop("ro.edgelab.virtual") == "1"


def _android() -> dict[str, str | None] | None:
    sdk = android_sdk()
    if sdk is None:
        return None
    return {
        "sdk": sdk,
        "release": _read_only_prop("ro.build.version.release"),
        "model": _read_only_prop("ro.product.model"),
        "manufacturer": _read_only_prop("ro.product.manufacturer"),
        "soc": _read_only_prop("ro.soc.model") or _read_only_prop("ro.board.platform"),
        "fingerprint": _read_only_prop("ro.build.fingerprint"),
        "virtual": _read_only_prop("ro.edgelab.virtual"),
    }


def _meminfo_kb() -> dict[str, int]:
    found: dict[str, int] = {}
    for line in (_read_first("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable") and rest.split():
            found[key] = int(rest.split()[0])
    return found


def _distribution_version(name: str) -> str | None:
    try:
        from importlib import metadata

        return metadata.version(name)
    except Exception:
        return None


# -- runtimes -----------------------------------------------------------------------------------

LITERT_MODULES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow"),
)


def _onnxruntime_info() -> dict[str, Any]:
    try:
        ort = importlib.import_module("onnxruntime")
    except Exception as exc:
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "available": True,
        "module": "onnxruntime",
        "version": str(getattr(ort, "__version__", "unknown")),
        "providers": list(ort.get_available_providers()),
    }


def load_litert() -> tuple[Any, str, str, list[str]]:
    """The first LiteRT interpreter module that imports: (Interpreter class, module, version,
    what failed before it). LiteRT is the maintained one; tflite_runtime 2.14 breaks on numpy 2."""
    tried: list[str] = []
    for module_name, distribution in LITERT_MODULES:
        try:
            module = importlib.import_module(module_name)
            interpreter = module.Interpreter
        except Exception as exc:
            tried.append(f"{module_name}: {type(exc).__name__}: {exc}")
            continue
        root = module_name.split(".")[0]
        version = (
            _distribution_version(distribution)
            or str(getattr(sys.modules.get(root), "__version__", ""))
            or "unknown"
        )
        return interpreter, module_name, version, tried
    raise AgentFailure("runtime", "no LiteRT interpreter could be imported; tried " + "; ".join(tried))


def _litert_info() -> dict[str, Any]:
    try:
        _, module, version, tried = load_litert()
    except AgentFailure as exc:
        return {"available": False, "error": str(exc)}
    return {"available": True, "module": module, "version": version, "fallbacks_tried": tried}


def probe() -> dict[str, Any]:
    numpy_version = None
    try:
        import numpy

        numpy_version = numpy.__version__
    except Exception:
        pass
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "probe",
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "android": _android(),
        },
        "cpu": {
            "model": _cpu_model(),
            "cores": os.cpu_count(),
            "online": _read_first("/sys/devices/system/cpu/online"),
        },
        "numpy": numpy_version,
        "runtimes": {"onnxruntime": _onnxruntime_info(), "litert": _litert_info()},
        "memory_kb": _meminfo_kb(),
        "energy_sources": energy_sources(),
    }


# -- models -------------------------------------------------------------------------------------


def sample_of(batch: Any, index: int) -> Any:
    """Sample ``index`` as a C-contiguous array, 0-d for scalar inputs (numpy would give a
    numpy scalar, which runtimes reject)."""
    import numpy

    return numpy.array(batch[index], order="C")


class Model:
    """One loaded model behind the three calls the timing loop needs."""

    runtime: dict[str, Any]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]

    def prepare(self, batch: dict[str, Any], samples: int) -> Feed:
        """Build, outside the timed loop, a callable that runs sample ``i`` (inputs fed,
        inference run, outputs available)."""
        raise NotImplementedError

    def outputs_of(self, batch: dict[str, Any], sample: int) -> dict[str, Any]:
        raise NotImplementedError

    def restart(self) -> None:
        """Back to the state just after loading, before the outputs pass: a stateful model (a
        streaming one with resource variables) then answers as a fresh copy on the host does."""


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


class OrtModel(Model):
    def __init__(self, path: str, threads: int, provider: str | None) -> None:
        try:
            ort = importlib.import_module("onnxruntime")
        except Exception as exc:
            raise AgentFailure(
                "runtime", f"onnxruntime cannot be imported: {exc}", type(exc).__name__
            ) from None
        options = ort.SessionOptions()
        # An explicit count: with 0, ONNX Runtime sizes its pool by the cores and pins each pool
        # thread to one core while the calling thread floats, so a run's speed depends on where
        # the OS happens to put the caller (docs/devices-yaml.md, "threads and cpus").
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = [provider or "CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        except Exception as exc:
            raise AgentFailure("load", f"onnxruntime cannot load {path}: {exc}", type(exc).__name__) from None
        self.runtime = {
            "name": "onnxruntime",
            "module": "onnxruntime",
            "version": str(ort.__version__),
            "providers": list(self.session.get_providers()),
        }
        self.inputs = [
            {
                "name": i.name,
                "shape": [d if isinstance(d, int) else None for d in i.shape],
                "dtype": _ORT_TYPES.get(i.type, i.type),
            }
            for i in self.session.get_inputs()
        ]
        self.outputs = [{"name": o.name} for o in self.session.get_outputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def prepare(self, batch: dict[str, Any], samples: int) -> Feed:
        feeds = [{name: sample_of(array, i) for name, array in batch.items()} for i in range(samples)]
        run = self.session.run
        names = self.output_names

        def feed(i: int) -> None:
            run(names, feeds[i])

        return feed

    def outputs_of(self, batch: dict[str, Any], sample: int) -> dict[str, Any]:
        values = self.session.run(
            self.output_names, {name: sample_of(array, sample) for name, array in batch.items()}
        )
        return dict(zip(self.output_names, values))


class LiteRtModel(Model):
    def __init__(self, path: str, threads: int, delegate: str | None) -> None:
        self.path = path
        interpreter_class, module_name, version, tried = load_litert()
        kwargs: dict[str, Any] = {"model_path": path, "num_threads": threads}
        if delegate:
            module = importlib.import_module(module_name)
            try:
                kwargs["experimental_delegates"] = [module.load_delegate(delegate)]
            except Exception as exc:
                raise AgentFailure(
                    "load", f"cannot load delegate {delegate}: {exc}", type(exc).__name__
                ) from None
        self.interpreter_class, self.kwargs = interpreter_class, kwargs
        self.module_name = module_name
        self.shapes: dict[int, list[int]] = {}  # inputs resized to the samples' shapes
        self.interpreter = self._load()
        self.runtime = {
            "name": "litert",
            "module": module_name,
            "version": version,
            "delegate": delegate,
            "fallbacks_tried": tried,
        }
        self.input_details = self.interpreter.get_input_details()
        self.output_details = self.interpreter.get_output_details()
        self.inputs = [
            {"name": d["name"], "shape": _signature(d), "dtype": str(d["dtype"].__name__)}
            for d in self.input_details
        ]
        self.outputs = [
            {"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": str(d["dtype"].__name__)}
            for d in self.output_details
        ]

    def _load(self) -> Any:
        try:
            interpreter = self.interpreter_class(**self.kwargs)
            for index, shape in self.shapes.items():
                interpreter.resize_tensor_input(index, shape)
            interpreter.allocate_tensors()
        except Exception as exc:
            raise AgentFailure(
                "load", f"{self.module_name} cannot load {self.path}: {exc}", type(exc).__name__
            ) from None
        return interpreter

    def _fit(self, batch: dict[str, Any]) -> None:
        """Give inputs the samples' shape where the model leaves dims free (checked against the
        signature when the inputs were read)."""
        wanted = {d["index"]: [int(x) for x in batch[d["name"]].shape[1:]] for d in self.input_details}
        if any(wanted[d["index"]] != [int(x) for x in d["shape"]] for d in self.input_details):
            self.shapes = wanted
            self.restart()

    def restart(self) -> None:
        self.interpreter = self._load()
        self.input_details = self.interpreter.get_input_details()
        self.output_details = self.interpreter.get_output_details()

    def prepare(self, batch: dict[str, Any], samples: int) -> Feed:
        self._fit(batch)
        indices = [(d["index"], d["name"]) for d in self.input_details]
        per_sample = [[(index, sample_of(batch[name], i)) for index, name in indices] for i in range(samples)]
        set_tensor = self.interpreter.set_tensor
        invoke = self.interpreter.invoke

        def feed(i: int) -> None:
            for index, value in per_sample[i]:
                set_tensor(index, value)
            invoke()

        return feed

    def outputs_of(self, batch: dict[str, Any], sample: int) -> dict[str, Any]:
        for detail in self.input_details:
            self.interpreter.set_tensor(detail["index"], sample_of(batch[detail["name"]], sample))
        self.interpreter.invoke()
        return {d["name"]: self.interpreter.get_tensor(d["index"]).copy() for d in self.output_details}


def _signature(detail: dict[str, Any]) -> list[Any]:
    """The input's dims as the model declares them: None where it leaves them free."""
    dims = detail.get("shape_signature")
    if dims is None or not len(dims):
        dims = detail["shape"]
    return [int(x) if int(x) >= 0 else None for x in dims]


def load_model(runtime: str, path: str, threads: int, delegate: str | None) -> Model:
    if not os.path.isfile(path):
        raise AgentFailure("load", f"model file not found: {path}", "FileNotFoundError")
    if runtime == "onnxruntime":
        return OrtModel(path, threads, delegate)
    if runtime == "litert":
        return LiteRtModel(path, threads, delegate)
    raise AgentFailure("args", f"unknown runtime {runtime!r} (known: onnxruntime, litert)")


# -- inputs -------------------------------------------------------------------------------------


AFFINE_SCALE, AFFINE_OFFSET = ".__scale__", ".__offset__"


def _apply_affine(given: dict[str, Any]) -> dict[str, Any]:
    """Inputs stored compactly (uint8) with ``NAME.__scale__`` / ``NAME.__offset__`` arrays become
    ``float32 = stored * scale + offset`` here, before any timing (the model's normalisation)."""
    import numpy

    result = {k: v for k, v in given.items() if not k.endswith((AFFINE_SCALE, AFFINE_OFFSET))}
    for name in list(result):
        scale, offset = given.get(name + AFFINE_SCALE), given.get(name + AFFINE_OFFSET)
        if scale is not None or offset is not None:
            values = result[name].astype(numpy.float32)
            if scale is not None:
                values = values * scale.astype(numpy.float32)
            if offset is not None:
                values = values + offset.astype(numpy.float32)
            result[name] = numpy.ascontiguousarray(values, dtype=numpy.float32)
    return result


def load_inputs(model: Model, path: str | None) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
    """The input batch (arrays with a leading sample axis), its size, and where each came from."""
    import numpy

    given: dict[str, Any] = {}
    if path:
        try:
            if path.endswith(".npy"):
                if len(model.inputs) != 1:
                    raise AgentFailure(
                        "inputs", "a .npy input needs a single-input model; use .npz keyed by name"
                    )
                given = {model.inputs[0]["name"]: numpy.load(path, allow_pickle=False)}
            else:
                with numpy.load(path, allow_pickle=False) as archive:
                    given = {key: archive[key] for key in archive.files}
        except AgentFailure:
            raise
        except Exception as exc:
            raise AgentFailure("inputs", f"cannot read inputs {path}: {exc}", type(exc).__name__) from None
    given = _apply_affine(given)
    known = [spec["name"] for spec in model.inputs]
    unknown = [key for key in given if key not in known]
    if unknown:
        raise AgentFailure(
            "inputs", f"inputs file has {unknown}, which the model does not take (inputs: {known})"
        )
    samples = {int(array.shape[0]) for array in given.values() if array.ndim > 0}
    if len(samples) > 1 or any(array.ndim == 0 for array in given.values()):
        raise AgentFailure(
            "inputs",
            "every input array needs the same leading sample axis; got shapes %s"
            % {k: list(v.shape) for k, v in given.items()},
        )
    count = samples.pop() if samples else 1
    if count < 1:
        raise AgentFailure("inputs", "the input batch is empty")
    generator = None  # numpy.random costs ~20 ms to import: only for inputs made up here
    batch: dict[str, Any] = {}
    described: list[dict[str, Any]] = []
    for spec in model.inputs:
        name, dtype = spec["name"], numpy.dtype(spec["dtype"])
        expected = [d if d is not None and d >= 0 else None for d in spec["shape"]]
        if name in given:
            array = given[name]
            sample_shape = list(array.shape[1:])
            mismatch = len(sample_shape) != len(expected) or any(
                want is not None and want != got for want, got in zip(expected, sample_shape)
            )
            if mismatch or array.dtype != dtype:
                raise AgentFailure(
                    "inputs",
                    f"input '{name}': model expects shape {expected} {dtype.name}, "
                    f"file has {sample_shape} {array.dtype.name} per sample",
                )
            batch[name] = array
            described.append({"name": name, "shape": sample_shape, "dtype": dtype.name, "source": "file"})
            continue
        shape = [count] + [d if d is not None else 1 for d in expected]
        if dtype.kind == "f":
            generator = generator or numpy.random.default_rng(0)
            batch[name] = generator.random(shape).astype(dtype)
        else:
            batch[name] = numpy.zeros(shape, dtype=dtype)
        described.append({"name": name, "shape": shape[1:], "dtype": dtype.name, "source": "synthetic"})
    return batch, count, described


# -- energy sources and environment -------------------------------------------------------------

ENERGY_SOURCES = ("odpm", "rapl", "ina3221", "battery", "tegrastats")


def _glob(pattern: str) -> list[str]:
    import glob

    return sorted(glob.glob(pattern))


def _odpm_files(sysfs: str = "/sys") -> list[str]:
    return [p for p in _glob(sysfs + "/bus/iio/devices/iio:device*/energy_value")]


def _rapl_dirs(sysfs: str = "/sys") -> list[str]:
    found = _glob(sysfs + "/class/powercap/intel-rapl:*")
    return [p for p in found if os.path.basename(p).count(":") == 1]  # packages, not their sub-zones


def _ina3221_channel(sysfs: str = "/sys") -> tuple[str, str] | None:
    """(voltage file, current file) of the board input rail (VDD_IN, else channel 1)."""
    for hwmon in _glob(sysfs + "/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"):
        chosen = None
        for label in _glob(hwmon + "/in*_label"):
            channel = os.path.basename(label)[2:].split("_")[0]
            name = (_read_first(label) or "").upper()
            if chosen is None or "VDD_IN" in name or "5V_IN" in name:
                chosen = channel
                if "VDD_IN" in name or "5V_IN" in name:
                    break
        if chosen is not None:
            return hwmon + "/in" + chosen + "_input", hwmon + "/curr" + chosen + "_input"
    return None


def _battery_dir(sysfs: str = "/sys") -> str | None:
    for folder in _glob(sysfs + "/class/power_supply/*"):
        is_battery = (_read_first(folder + "/type") or "").lower() == "battery"
        readable = os.path.exists(folder + "/current_now") and os.path.exists(folder + "/voltage_now")
        if (is_battery or os.path.basename(folder) == "battery") and readable:
            return folder
    return None


def _which(name: str, extra: tuple[str, ...] = ()) -> str | None:
    import shutil

    found = shutil.which(name)
    if found:
        return found
    for folder in extra:
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def energy_sources(sysfs: str = "/sys") -> list[str]:
    """The energy sources this device exposes, best first (counters before power readings)."""
    found = []
    if _odpm_files(sysfs):
        found.append("odpm")
    if any(os.access(d + "/energy_uj", os.R_OK) for d in _rapl_dirs(sysfs)):
        found.append("rapl")
    if _ina3221_channel(sysfs):
        found.append("ina3221")
    if _which("tegrastats", ("/usr/bin",)):
        found.append("tegrastats")
    if _battery_dir(sysfs):
        found.append("battery")
    return found


class EnergyReader:
    """Reads one source; ``read()`` returns a counter in uJ (odpm, rapl) or a power in uW."""

    def __init__(self, source: str, sysfs: str = "/sys") -> None:
        self.source = source
        self.kind = "counter" if source in ("odpm", "rapl") else "power"
        self.max_range_uj: int | None = None
        self.files: list[str] = []
        if source == "odpm":
            self.files = _odpm_files(sysfs)
        elif source == "rapl":
            dirs = _rapl_dirs(sysfs)
            self.files = [d + "/energy_uj" for d in dirs]
            ranges = [_read_int(d + "/max_energy_range_uj") for d in dirs]
            self.max_range_uj = ranges[0] if ranges and ranges[0] else None
        elif source == "ina3221":
            channel = _ina3221_channel(sysfs)
            self.files = list(channel) if channel else []
        elif source == "battery":
            folder = _battery_dir(sysfs)
            self.files = [folder + "/voltage_now", folder + "/current_now"] if folder else []
        if not self.files:
            raise AgentFailure("energy", "energy source '" + source + "' is not present on this device")

    def read(self) -> float | None:
        if self.source == "odpm":
            total = 0
            for path in self.files:
                try:
                    with open(path) as handle:
                        for line in handle:
                            if line.startswith("CH") and "," in line:
                                total += int(line.rsplit(",", 1)[1])
                except (OSError, ValueError):
                    return None
            return float(total)  # uWs == uJ
        if self.source == "rapl":
            values = [_read_int(path) for path in self.files]
            return None if any(v is None for v in values) else float(sum(v for v in values if v is not None))
        first, second = (_read_int(path) for path in self.files)
        if first is None or second is None:
            return None
        if self.source == "ina3221":
            return float(first) * float(second)  # mV x mA = uW
        return abs(float(first) * float(second)) / 1e6  # uV x uA = pW -> uW


class TegrastatsReader:
    """``tegrastats --interval N`` as a child; its lines kept with their arrival time."""

    def __init__(self, period_s: float) -> None:
        binary = _which("tegrastats", ("/usr/bin",))
        if binary is None:
            raise AgentFailure("energy", "tegrastats is not installed on this device")
        interval = str(max(10, int(period_s * 1000)))
        self.process = subprocess.Popen(
            [binary, "--interval", interval], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.lines: list[list[Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append([time.perf_counter_ns(), line.rstrip("\n")])

    def stop(self) -> list[list[Any]]:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.thread.join(timeout=5)
        return self.lines


def _spawn_reading(argv: list[str]) -> tuple[int, int] | None:
    """``argv`` started (PATH searched) with stdin and stderr on /dev/null and stdout on a new
    pipe: (pid, the pipe's read end), None where it cannot start. posix_spawn, not
    subprocess.Popen: in a run forked from the agent, Popen's first call costs 1.4 ms more CPU
    (its Python work copies the parent's pages), 3 ms of a run on the 0.5-core virtual board."""
    read_fd, write_fd = os.pipe()  # both close-on-exec; the child's copy of write_fd becomes 1
    try:
        pid = os.posix_spawnp(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write_fd, 1),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
        )
    except OSError:
        os.close(read_fd)
        return None
    finally:
        os.close(write_fd)
    return pid, read_fd


def _open_pidfd(pid: int) -> int | None:
    """A descriptor that turns readable when the child exits (Linux >= 5.3), else None."""
    if hasattr(os, "pidfd_open"):
        with contextlib.suppress(OSError):
            return int(os.pidfd_open(pid))
    return None


def _exit_code_within(pid: int, pidfd: int | None, wait_s: float, poll_s: float) -> int | None:
    """The child's exit code once it has exited, waiting up to ``wait_s`` for that (on its pidfd;
    without one, a sleep of at most ``poll_s``); None while it still runs."""
    import select

    done, status = os.waitpid(pid, os.WNOHANG)
    if not done and wait_s > 0:
        if pidfd is not None:
            select.select([pidfd], [], [], wait_s)
        else:
            time.sleep(min(wait_s, poll_s))
        done, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else None


def _exit_code_by(pid: int, deadline: float) -> int | None:
    """The exit code of a child, waited for until ``deadline`` (time.monotonic()); past it the
    child is killed and None returned."""
    import signal

    pidfd = _open_pidfd(pid)
    try:
        while True:
            left = deadline - time.monotonic()
            code = _exit_code_within(pid, pidfd, max(0.0, left), 0.0005)
            if code is not None:
                return code
            if left <= 0:
                break
    finally:
        if pidfd is not None:
            os.close(pidfd)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _run_texts(argvs: list[list[str]], timeout: float = 15.0) -> list[str | None]:
    """Several commands started together, each one's stdout (None where it failed, did not
    start, or outlived ``timeout``), in order; a tool's odd bytes are replaced, never a failed
    run."""
    import select

    if not hasattr(os, "posix_spawnp"):  # bionic before Android 9 (API 28), as Termux's Python
        return _run_texts_popen(argvs, timeout)
    deadline = time.monotonic() + timeout
    started = [_spawn_reading(argv) for argv in argvs]
    output = {item[1]: bytearray() for item in started if item is not None}
    reading = list(output)
    while reading:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd in select.select(reading, [], [], left)[0]:
            chunk = os.read(fd, 1 << 16)
            if chunk:
                output[fd] += chunk
            else:
                reading.remove(fd)
    texts: list[str | None] = []
    for item in started:
        if item is None:
            texts.append(None)
            continue
        pid, fd = item
        os.close(fd)
        code = _exit_code_by(pid, deadline if fd not in reading else 0.0)
        texts.append(output[fd].decode("utf-8", errors="replace") if code == 0 else None)
    return texts


def _run_texts_popen(argvs: list[list[str]], timeout: float = 15.0) -> list[str | None]:
    """_run_texts through subprocess.Popen, for a Python without os.posix_spawnp."""
    started: list[subprocess.Popen[str] | None] = []
    for argv in argvs:
        try:
            started.append(
                subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    errors="replace",
                )
            )
        except OSError:
            started.append(None)
    deadline = time.monotonic() + timeout
    texts: list[str | None] = []
    for process in started:
        if process is None:
            texts.append(None)
            continue
        try:
            out, _ = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            if process.poll() is None:  # still running past the deadline (not merely unread)
                process.kill()
                process.communicate()
                texts.append(None)
                continue
            out, _ = process.communicate()
        texts.append(out if process.returncode == 0 else None)
    return texts


def _run_text(argv: list[str], timeout: float = 15.0) -> str | None:
    """One command's stdout; None where it failed."""
    return _run_texts([argv], timeout)[0]


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _own_jiffies() -> int | None:
    """CPU time (user + system, all threads) of this process, in clock ticks."""
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(") ", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def _other_load_pct(
    before: tuple[tuple[int, int] | None, int | None], after: tuple[tuple[int, int] | None, int | None]
) -> float | None:
    """Share of the device's CPU used by other processes between two readings, in percent."""
    (machine_before, own_before), (machine_after, own_after) = before, after
    if not machine_before or not machine_after or own_before is None or own_after is None:
        return None
    total = machine_after[1] - machine_before[1]
    if total <= 0:
        return None
    others = (machine_after[0] - machine_before[0]) - (own_after - own_before)
    return round(max(0.0, 100.0 * float(others) / float(total)), 2)


def _governors(sysfs: str = "/sys") -> dict[str, str | None]:
    """The scaling governor of each cpufreq policy."""
    return {
        os.path.basename(folder): _read_first(folder + "/scaling_governor")
        for folder in _glob(sysfs + "/devices/system/cpu/cpufreq/policy*")
    }


def _environment_files(sysfs: str = "/sys") -> dict[str, Any]:
    """The part of environment() read from files (no command run)."""
    governors = _governors(sysfs)
    battery = _battery_dir(sysfs)
    loadavg = _read_first("/proc/loadavg")
    found: dict[str, Any] = {
        "governors": governors,
        "loadavg_1m": float(loadavg.split()[0]) if loadavg else None,
        "cpu_count": os.cpu_count(),
        "battery": None,
        "android": android_sdk() is not None,
        "virtual": virtual_device(sysfs),
    }
    if battery:
        found["battery"] = {
            "capacity_pct": _read_int(battery + "/capacity"),
            "status": _read_first(battery + "/status"),
        }
    return found


def environment(sysfs: str = "/sys") -> dict[str, Any]:
    """What can make numbers lie, read once before the timed phase (outside it)."""
    found = _environment_files(sysfs)
    if found["android"]:  # two services of system_server, asked at once
        found["dumpsys_power"], found["dumpsys_thermalservice"] = _run_texts(
            [["dumpsys", "power"], ["dumpsys", "thermalservice"]]
        )
    vcgencmd = _which("vcgencmd", ("/usr/bin", "/opt/vc/bin"))
    if vcgencmd:
        found["vcgencmd"] = _run_text([vcgencmd, "get_throttled"])
    return found


def environment_after(found: dict[str, Any]) -> None:
    """The thermal status and Pi throttle flags again, after the timed phase."""
    if found.get("android"):
        found["dumpsys_thermalservice_after"] = _run_text(["dumpsys", "thermalservice"])
    if found.get("vcgencmd") is not None:
        vcgencmd = _which("vcgencmd", ("/usr/bin", "/opt/vc/bin"))
        found["vcgencmd_after"] = _run_text([vcgencmd, "get_throttled"]) if vcgencmd else None


def idle_baseline(idle_s: float) -> dict[str, Any]:
    """Sleep ``idle_s`` (the sampler keeps reading energy): the idle window, and how busy the
    rest of the device was meanwhile (other load makes every number worse)."""
    before = _cpu_times()
    start = time.perf_counter_ns()
    time.sleep(idle_s)
    end = time.perf_counter_ns()
    after = _cpu_times()
    busy_pct = None
    if before and after and after[1] > before[1]:
        busy_pct = round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 2)
    return {"start_ns": start, "end_ns": end, "cpu_busy_pct": busy_pct}


STATUS_PERIOD_S = 1.0


def _status_command() -> tuple[str | None, list[str] | None]:
    """``android`` (dumpsys thermalservice) or ``vcgencmd`` (get_throttled), when present."""
    if android_sdk() is not None and _which("dumpsys", ("/system/bin",)):
        return "android", ["dumpsys", "thermalservice"]
    vcgencmd = _which("vcgencmd", ("/usr/bin", "/opt/vc/bin"))
    if vcgencmd:
        return "vcgencmd", [vcgencmd, "get_throttled"]
    return None, None


def _status_value(kind: str | None, text: str | None) -> int | None:
    """Thermal Status N (Android) or the throttled=0x... bits (Raspberry Pi)."""
    if not text:
        return None
    for raw in text.splitlines():
        line = raw.strip()
        try:
            if kind == "android" and line.startswith("Thermal Status:"):
                return int(line.split(":", 1)[1])
            if kind == "vcgencmd" and line.startswith("throttled="):
                return int(line.split("=", 1)[1], 0)
        except ValueError:
            return None
    return None


# -- thermal sampler ----------------------------------------------------------------------------


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class ThermalSampler:
    """Thermal zones and cpufreq read every ``period_s`` on a daemon thread of this process.

    Same clock as the timed loop (perf_counter_ns), so every latency sample can be matched to
    the thermal state at its time; no extra process and no round trip per sample. Zones whose
    temperature cannot be read at start (disabled sensors) are left out.
    """

    def __init__(self, period_s: float, sysfs: str = "/sys", energy: EnergyReader | None = None) -> None:
        self.period_s = period_s
        self.energy = energy
        zones_dir = os.path.join(sysfs, "class", "thermal")
        self.zones: list[tuple[str, str]] = []
        for entry in sorted(_listdir(zones_dir), key=_natural):
            if not entry.startswith("thermal_zone"):
                continue
            temp = os.path.join(zones_dir, entry, "temp")
            name = _read_first(os.path.join(zones_dir, entry, "type")) or entry
            if _read_int(temp) is not None:
                self.zones.append((name, temp))
        cpufreq = os.path.join(sysfs, "devices", "system", "cpu", "cpufreq")
        self.policies: list[tuple[str, str, str]] = []
        self.cpuinfo_max_khz: list[int | None] = []
        for entry in sorted(_listdir(cpufreq), key=_natural):
            folder = os.path.join(cpufreq, entry)
            if entry.startswith("policy"):
                cur = os.path.join(folder, "scaling_cur_freq")
                self.policies.append((entry, cur, os.path.join(folder, "scaling_max_freq")))
                self.cpuinfo_max_khz.append(_read_int(os.path.join(folder, "cpuinfo_max_freq")))
        self.samples: list[list[Any]] = []
        # Android thermal status / Pi throttle flags need a command: read at most every
        # STATUS_PERIOD_S on this same thread (never on the timed loop's).
        self.status_kind, self.status_argv = _status_command()
        self.status: list[list[Any]] = []
        self._last_status = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgelab-thermal", daemon=True)

    def sample(self) -> None:
        self.samples.append(
            [
                time.perf_counter_ns(),
                [_read_int(path) for _, path in self.zones],
                [_read_int(cur) for _, cur, _ in self.policies],
                [_read_int(cap) for _, _, cap in self.policies],
                self.energy.read() if self.energy is not None else None,
            ]
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()
            if self.status_argv and time.perf_counter_ns() - self._last_status >= STATUS_PERIOD_S * 1e9:
                self.read_status()

    def read_status(self, reading: tuple[int, str | None] | None = None) -> None:
        """Run the status command, or keep ``reading`` (when, its text) that was just taken."""
        if reading is None:  # the time the command starts, then its text
            reading = (
                time.perf_counter_ns(),
                _run_text(self.status_argv, timeout=10.0) if self.status_argv else None,
            )
        self._last_status, text = reading
        value = _status_value(self.status_kind, text)
        if value is not None:
            self.status.append([self._last_status, value])

    def start(self, status: tuple[int, str | None] | None = None) -> ThermalSampler:
        """``status``: a reading of the status command just taken, kept as the first status
        sample instead of running the command again."""
        self.sample()
        if self.status_argv:
            self.read_status(status)
        self._thread.start()
        return self

    def rehearse(self) -> None:
        """One sample, and the thread started and stopped at once; no status command (a spare's
        rehearsal of a run, see rehearse_run)."""
        self.sample()
        self._stop.set()
        self._thread.start()
        self._thread.join()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
        return {
            "period_s": self.period_s,
            "zones": [name for name, _ in self.zones],
            "policies": [name for name, _, _ in self.policies],
            "cpuinfo_max_khz": self.cpuinfo_max_khz,
            "energy": None
            if self.energy is None
            else {
                "source": self.energy.source,
                "kind": self.energy.kind,
                "max_range_uj": self.energy.max_range_uj,
            },
            "samples": self.samples,
            "status_kind": self.status_kind,
            "status": self.status,
        }


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _natural(name: str) -> tuple[str, int]:
    digits = "".join(c for c in name if c.isdigit())
    return (name.rstrip("0123456789"), int(digits) if digits else -1)


# -- cores --------------------------------------------------------------------------------------
#
# Pinning happens here, in the process that runs inference, before the runtime creates its
# threads (they inherit the mask): a fork of the warm server is pinned exactly like a fresh
# process, which a ``taskset`` in front of the client command would not do.


def _allowed_cpus() -> tuple[list[int] | None, str | None]:
    getter = getattr(os, "sched_getaffinity", None)
    if getter is None:
        return None, "this Python has no os.sched_getaffinity (not Linux or Android)"
    try:
        return sorted(getter(0)), None
    except OSError as exc:
        return None, f"sched_getaffinity: {exc.strerror or exc}"


def pin_cpus(requested: list[int] | None) -> str | None:
    """Restrict this process to ``requested`` (None: leave it where it is). Returns how it was
    pinned, for the record."""
    if not requested:
        return None
    setter = getattr(os, "sched_setaffinity", None)
    if setter is None:
        raise AgentFailure("cpus", "this Python has no os.sched_setaffinity; remove cpus for this device")
    try:
        setter(0, requested)
    except (OSError, ValueError) as exc:
        online = _read_first("/sys/devices/system/cpu/online") or "?"
        raise AgentFailure(
            "cpus",
            f"cannot pin to cpus {requested}: {getattr(exc, 'strerror', None) or exc}; "
            f"this device's online cpus are {online}, and the process may already be limited to "
            f"{_allowed_cpus()[0]} (cpuset): fix cpus in devices.yaml",
        ) from None
    return "sched_setaffinity"


def core_kinds(cpus: Sequence[int], sysfs: str = "/sys") -> dict[str, list[int | None]]:
    """cpu -> [cpu_capacity, cpuinfo_max_freq kHz] (None where sysfs has no such file)."""
    found: dict[str, list[int | None]] = {}
    for cpu in cpus:
        folder = f"{sysfs}/devices/system/cpu/cpu{cpu}"
        found[str(cpu)] = [
            _read_int(folder + "/cpu_capacity"),
            _read_int(folder + "/cpufreq/cpuinfo_max_freq"),
        ]
    return found


def parse_cpus_argument(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        cpus = [int(item) for item in text.split(",")]
    except ValueError:
        raise AgentFailure("args", f"--cpus takes comma-separated cpu numbers, got {text!r}") from None
    if any(cpu < 0 for cpu in cpus) or len(set(cpus)) != len(cpus):
        raise AgentFailure("args", f"--cpus needs distinct cpu numbers >= 0, got {text!r}")
    return cpus


def thread_affinities() -> dict[str, int]:
    """cpu list -> how many of this process's threads may run there (a runtime that pins its pool
    shows up as a narrower list); {} where /proc/self/task is unreadable."""
    found: dict[str, int] = {}
    for task in _listdir("/proc/self/task"):
        for line in (_read_first(f"/proc/self/task/{task}/status") or "").splitlines():
            if line.startswith("Cpus_allowed_list:"):
                key = line.split(":", 1)[1].strip()
                found[key] = found.get(key, 0) + 1
    return found


def cpus_record(
    requested: list[int] | None, pinned_by: str | None, allowed_before: list[int] | None
) -> dict[str, Any]:
    """Where the run was allowed to execute, read after the timed phase (a cpuset may have
    changed it meanwhile: then ``allowed_before`` differs)."""
    allowed, problem = _allowed_cpus()
    return {
        "requested": requested,
        "pinned_by": pinned_by,
        "allowed": allowed,
        "allowed_before": allowed_before,
        "allowed_error": problem,
        "kinds": core_kinds(allowed) if allowed else {},
        "threads": thread_affinities(),
    }


# -- timing -------------------------------------------------------------------------------------


def warm_up(feed: Feed, samples: int, min_iters: int, min_s: float) -> tuple[int, float]:
    clock = time.perf_counter
    started = clock()
    deadline = started + min_s
    count = 0
    while count < min_iters or clock() < deadline:
        feed(count % samples)
        count += 1
    return count, clock() - started


def timed_loop(
    feed: Feed,
    samples: int,
    *,
    min_iters: int,
    min_s: float,
    max_s: float,
    max_iters: int,
    rate_hz: float = 0.0,
) -> tuple[list[int], list[int], str]:
    """Start time and duration of every iteration, in ns; stops when both minimums are met.
    With ``rate_hz`` each request starts on a fixed schedule (sleeping until it is due), as a
    camera or microphone would feed it; a request that is late starts at once."""
    clock = time.perf_counter_ns
    interval_ns = int(1e9 / rate_hz) if rate_hz > 0 else 0
    starts: list[int] = []
    durations: list[int] = []
    add_start = starts.append
    add_duration = durations.append
    first = clock()
    min_until = first + int(min_s * 1e9)
    max_until = first + int(max_s * 1e9)
    count = 0
    stopped_by = "min_reached"
    while True:
        if interval_ns:
            due = first + count * interval_ns
            wait = due - clock()
            if wait > 0:
                time.sleep(wait / 1e9)
        begin = clock()
        feed(count % samples)
        end = clock()
        add_start(begin)
        add_duration(end - begin)
        count += 1
        if count >= min_iters and end >= min_until:
            break
        if end >= max_until:
            stopped_by = "max_s"
            break
        if count >= max_iters:
            stopped_by = "max_iters"
            break
    origin = starts[0]
    return [start - origin for start in starts], durations, stopped_by


def save_outputs(model: Model, batch: dict[str, Any], samples: int, path: str) -> None:
    import numpy

    collected: dict[str, list[Any]] = {}
    model.restart()
    for sample in range(samples):
        for name, value in model.outputs_of(batch, sample).items():
            collected.setdefault(name, []).append(numpy.asarray(value))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = path + ".partial.npz"
    stacked = {name: numpy.stack(values) for name, values in collected.items()}
    numpy.savez(temporary, **stacked)  # type: ignore[arg-type]
    os.replace(temporary, path)


def start_probes(
    arguments: argparse.Namespace, env: dict[str, Any] | None = None, env_ns: int = 0
) -> tuple[ThermalSampler | None, TegrastatsReader | None]:
    """The sampler thread (thermal, and the energy source if any) or tegrastats, started; the
    thermal status or throttle flags that ``env`` read at ``env_ns`` are its first status sample."""
    energy = None
    tegrastats = None
    if arguments.energy == "tegrastats":
        tegrastats = TegrastatsReader(arguments.sample_period_s or 0.1)
    elif arguments.energy:
        energy = EnergyReader(arguments.energy)
    period = arguments.sample_period_s
    if energy is not None:  # energy wants readings close to the window's ends
        period = min(period, 0.1) if period > 0 else 0.1
    if period <= 0:
        return None, tegrastats
    sampler = ThermalSampler(period, energy=energy)
    text = None
    if env is not None:
        text = env.get("dumpsys_thermalservice") if sampler.status_kind == "android" else env.get("vcgencmd")
    return sampler.start((env_ns, text) if text is not None else None), tegrastats


def hottest_zone_c(sysfs: str = "/sys") -> float | None:
    """The hottest readable thermal zone, in C (None when there is none). Millidegrees, or whole
    degrees from the few drivers that report those: the host's probes.thermal.to_celsius rule."""
    values = []
    for path in _glob(sysfs + "/class/thermal/thermal_zone*/temp"):
        raw = _read_int(path)
        if raw is not None:
            values.append(raw / 1000.0 if abs(raw) >= 200 else float(raw))
    return max(values) if values else None


def cool_down(below_c: float, max_wait_s: float, poll_s: float, sysfs: str = "/sys") -> dict[str, Any]:
    """Wait, on the device, until the hottest zone is below ``below_c`` or ``max_wait_s`` passes:
    the same record as the host's probes.thermal.wait_until_cool, without a round trip per poll."""
    started = time.monotonic()
    start = current = hottest_zone_c(sysfs)
    while current is not None and current >= below_c:
        left = max_wait_s - (time.monotonic() - started)
        if left <= 0:
            break
        time.sleep(min(poll_s, left))
        current = hottest_zone_c(sysfs)
    return {
        "below_c": below_c,
        "start_c": start,
        "end_c": current,
        "waited_s": round(time.monotonic() - started, 3),
        "reached": current is None or current < below_c,
    }


# path -> (the file's identity and change times, the sha256 it was found to have): filled by the
# persistent agent before each fork, read by its children (see verify_files)
_VERIFIED: dict[str, tuple[tuple[int, ...], str]] = {}
PRIME_MAX_BYTES = 32 << 20  # ~0.35 s of sha256 on a Raspberry Pi 4 (no crypto extensions)


def _file_key(path: str) -> tuple[int, ...] | None:
    """What any write to the file changes: device, inode, size, mtime and ctime (ctime cannot be
    set back from user space)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def verify_files(expected: Sequence[str]) -> None:
    """Each item is "<sha256>:<path>": the file must hash to it, so a file changed on the device
    since it was pushed is never measured. A file this process (or the persistent agent it was
    forked from) already hashed to the same value is not hashed again while its identity, size,
    mtime and ctime are unchanged: a write, a replace or a truncation changes them."""
    import hashlib

    for item in expected:
        want, _, path = item.partition(":")
        key = _file_key(path)
        if key is not None and _VERIFIED.get(path) == (key, want):
            continue
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise AgentFailure("verify", f"{path}: {exc.strerror or exc}", "ChecksumMismatch") from None
        if digest.hexdigest() != want:
            _VERIFIED.pop(path, None)
            raise AgentFailure(
                "verify", f"{path}: sha256 {digest.hexdigest()}, expected {want}", "ChecksumMismatch"
            )
        if key is not None and _file_key(path) == key:  # unchanged while it was read
            _VERIFIED[path] = (key, want)


def prime_verified(argv: Sequence[str]) -> None:
    """In a process that forks runs (the persistent agent, the warm server): hash the run's
    files here, once per change, so that every child inherits the result (a child's own findings
    end with it). Only up to PRIME_MAX_BYTES, as the persistent agent's loop answers the host's
    heartbeat meanwhile: a larger file is hashed by the child at each run, as is one that fails
    (the child reports it as any run does)."""
    items = sha256_arguments(argv)
    paths = [item.partition(":")[2] for item in items]
    if sum(os.path.getsize(path) for path in paths if os.path.isfile(path)) <= PRIME_MAX_BYTES:
        with contextlib.suppress(AgentFailure):
            verify_files(items)


def sha256_arguments(argv: Sequence[str]) -> list[str]:
    """The "<sha256>:<path>" items of a run's ``--sha256`` options."""
    found: list[str] = []
    for index, word in enumerate(argv):
        if word == "--sha256" and index + 1 < len(argv):
            found.append(argv[index + 1])
        elif word.startswith("--sha256="):
            found.append(word.split("=", 1)[1])
    return found


class Phases:
    """Wall time of each step of a run in ms, in order: where a test's time on the device goes."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = round((now - self._last) * 1e3, 3)
        self._last = now


def run(arguments: argparse.Namespace, keep: list[Any] | None = None) -> dict[str, Any]:  # noqa: PLR0915
    """One run, step by step. The loaded model goes into ``keep`` when given: the caller releases
    it after the answer is written (a runtime's teardown takes 20-30 ms for silero's session on
    this host, time the host would otherwise wait for)."""
    phases = Phases()
    requested_cpus = parse_cpus_argument(arguments.cpus)
    pinned_by = pin_cpus(requested_cpus)  # before any thread of the runtime or the sampler exists
    allowed_before, _ = _allowed_cpus()
    verify_files(arguments.sha256)
    phases.done("verify")
    cooldown = (
        cool_down(arguments.cooldown_below_c, arguments.cooldown_max_s, arguments.cooldown_poll_s)
        if arguments.cooldown_below_c is not None
        else None
    )
    phases.done("cooldown")
    before = read_status_kb()
    started = time.perf_counter()
    model = load_model(arguments.runtime, arguments.model, arguments.threads, arguments.delegate)
    load_ms = (time.perf_counter() - started) * 1e3
    if keep is not None:
        keep.append(model)
    after_load = read_status_kb()
    phases.done("load")
    batch, samples, described_inputs = load_inputs(model, arguments.inputs)
    phases.done("inputs")
    try:
        feed = model.prepare(batch, samples)
        first_started = time.perf_counter()
        feed(0)
        first_inference_ms = (time.perf_counter() - first_started) * 1e3
        phases.done("first_inference")
        env = environment() if arguments.environment else None
        env_ns = time.perf_counter_ns()
        phases.done("environment")
        sampler, tegrastats = start_probes(arguments, env, env_ns)
        idle = idle_baseline(arguments.idle_s) if arguments.idle_s > 0 else None  # energy's baseline
        load_before = (_cpu_times(), _own_jiffies())
        phases.done("probes_start")
        try:
            warmup_iters, warmup_s = warm_up(feed, samples, arguments.warmup_iters, arguments.warmup_s)
            phases.done("warmup")
            if idle is None and env is not None:  # how busy the rest of the device was meanwhile
                idle = {"cpu_busy_pct": _other_load_pct(load_before, (_cpu_times(), _own_jiffies()))}
            unix_start = time.time()
            perf_start = time.perf_counter_ns()
            offsets, durations, stopped_by = timed_loop(
                feed,
                samples,
                min_iters=arguments.min_iters,
                min_s=arguments.min_s,
                max_s=arguments.max_s,
                max_iters=arguments.max_iters,
                rate_hz=arguments.rate_hz,
            )
            perf_end = time.perf_counter_ns()
            phases.done("timed")
        finally:
            thermal = sampler.stop() if sampler is not None else None
            tegrastats_lines = tegrastats.stop() if tegrastats is not None else None
        if env is not None:
            environment_after(env)
        phases.done("probes_stop")
    except AgentFailure:
        raise
    except Exception as exc:
        raise AgentFailure("inference", f"{type(exc).__name__}: {exc}", type(exc).__name__) from None
    after_run = read_status_kb()
    pss, pss_kernel = pss_kb()
    # The kernel's PSS (smaps_rollup) is the whole of it for a run on the CPU; `dumpsys meminfo`
    # adds the GPU's memory (memtrack's Graphics and GL rows), so it is asked where a delegate
    # ran (it takes a system_server walk of the same smaps: 20-30 ms on the virtual phone).
    meminfo = (
        _run_text(["dumpsys", "meminfo", str(os.getpid())])
        if env is not None and env.get("android") and arguments.delegate
        else None
    )
    phases.done("memory")
    if arguments.outputs:
        try:
            save_outputs(model, batch, samples, arguments.outputs)
        except Exception as exc:
            raise AgentFailure("outputs", f"cannot save outputs to {arguments.outputs}: {exc}") from None
        phases.done("outputs")
    import numpy

    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "run",
        "runtime": model.runtime,
        "model": {"path": arguments.model, "size_bytes": os.path.getsize(arguments.model)},
        "threads": arguments.threads,
        "cpus": cpus_record(requested_cpus, pinned_by, allowed_before),
        "inputs": described_inputs,
        "outputs": model.outputs,
        "samples_in_batch": samples,
        "load_ms": load_ms,
        "first_inference_ms": first_inference_ms,
        "warmup": {"iterations": warmup_iters, "seconds": warmup_s},
        "timed": {"iterations": len(durations), "seconds": sum(durations) / 1e9, "stopped_by": stopped_by},
        "latencies_ns": durations,
        "start_offsets_ns": offsets,
        "clock": {
            "perf_counter_start_ns": perf_start,
            "perf_counter_end_ns": perf_end,
            "unix_time_start_s": unix_start,
        },
        "idle": idle,
        "cooldown": cooldown,
        "phases_ms": phases.ms,
        "environment": env,
        "tegrastats": tegrastats_lines,
        "pss_kb": pss,
        "pss_kernel_kb": pss_kernel,
        "dumpsys_meminfo": meminfo,
        "thermal": thermal,
        "memory_kb": {
            "vmhwm_before_load": before["VmHWM"],
            "vmhwm_after_load": after_load["VmHWM"],
            "vmhwm_after_run": after_run["VmHWM"],
            "vmrss_after_run": after_run["VmRSS"],
        },
        "outputs_file": arguments.outputs,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pid": os.getpid(),
    }


# -- warm server ------------------------------------------------------------------------------------
#
# Starting Python and importing numpy and a runtime costs 0.2-0.4 s on a phone or a board, on every
# run. ``serve`` pays it once: it imports numpy and one runtime, then forks a child per request that
# runs ``main(argv)`` exactly as a fresh process would. A child's VmHWM starts at what the server
# holds (the interpreter, numpy, the runtime), which a fresh process reaches when it imports them.
#
# Requests come through a FIFO, ``<dir>/control``: one line "<client pid> call-<client pid>" (digits
# only: no path crosses the FIFO, so a directory with a newline or a space cannot split a request),
# naming the reply FIFO ``<dir>/call-<pid>``, with the argument vector in "<reply fifo>.argv"
# (JSON). The child's stdout goes straight into the reply FIFO and its stderr into
# "<reply fifo>.err"; after the child exits the server appends
# "\n<SERVED_EXIT_MARKER><exit code>\n". A client that goes away (the host's timeout killed it)
# takes its child with it.

SERVED_EXIT_MARKER = "EDGELAB-SERVED-EXIT:"
# The last line a run forked by the persistent agent writes to its stderr: its exit code.
EXIT_TRAILER = "\nEDGELAB-RUN-EXIT:"


def resident_file_pages() -> list[int] | None:
    """Addresses of this process's resident pages in file mappings (the code and read-only data
    of Python, numpy and the runtime). fork() does not copy those page-table entries, so a child
    would otherwise count fewer resident pages than a fresh process that imported the same
    modules; the child touches these to be measured like one. None where pagemap is unreadable."""
    import struct

    page = os.sysconf("SC_PAGE_SIZE")
    found: list[int] = []
    try:
        with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) < 6 or "r" not in fields[1]:
                    continue
                path = fields[5].strip()
                if not path.startswith("/") or path.startswith("/dev/"):
                    continue
                start, end = (int(text, 16) for text in fields[0].split("-"))
                count = (end - start) // page
                pagemap.seek(start // page * 8)
                data = pagemap.read(count * 8)
                for index, entry in enumerate(struct.unpack(f"<{len(data) // 8}Q", data)):
                    if entry >> 63:
                        found.append(start + index * page)
    except (OSError, ValueError):
        return None
    return found


def forks_runs_from(resident: list[int] | None) -> list[tuple[int, int]]:
    """In the agent, before its first run: the runs of resident pages its children touch, and
    what a child's PSS of them falls short of a fresh process's (see pss_kb): the agent's own
    Pss_File alone, less with a child that has touched them (each page whole, or 1/k with k-1
    other processes mapping it, alone; 1/(k+1) with the child)."""
    runs = page_runs(resident or [])
    alone = _smaps_rollup_kb().get("Pss_File")
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        try:
            os.close(ready_read)
            os.close(done_write)  # the agent's closing it is the end of the wait below
            _touch(runs)
            os.write(ready_write, b".")
            os.read(done_read, 1)  # mapped until the agent has read its own PSS
        finally:
            os._exit(0)
    os.close(ready_write)
    os.close(done_read)
    try:
        touched = os.read(ready_read, 1) == b"."
        shared = _smaps_rollup_kb().get("Pss_File")
    finally:
        os.close(done_write)
        os.close(ready_read)
        os.waitpid(child, 0)
    known = touched and alone is not None and shared is not None
    _SHARED_FILE_KB[:] = [max(0, (alone or 0) - (shared or 0)) if known else None]
    return runs


def page_runs(addresses: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted page addresses as (start, length) runs of adjacent pages."""
    page = os.sysconf("SC_PAGE_SIZE")
    runs: list[tuple[int, int]] = []
    for address in addresses:
        if runs and runs[-1][0] + runs[-1][1] == address:
            runs[-1] = (runs[-1][0], runs[-1][1] + page)
        else:
            runs.append((address, page))
    return runs


def _touch(runs: Sequence[tuple[int, int]]) -> None:
    """Map these resident pages into this process: one madvise(MADV_POPULATE_READ) per run
    (Linux >= 5.14; the same VmHWM as reading a byte of each page, in a third of the time: 6,773
    pages took 4-5 ms instead of 12-13 on the host), else a byte read per page."""
    import ctypes

    try:
        madvise = _libc().madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except AttributeError:
        madvise = None
    page = os.sysconf("SC_PAGE_SIZE")
    for start, length in runs:
        if madvise is not None and madvise(start, length, 22) == 0:  # MADV_POPULATE_READ
            continue
        for address in range(start, start + length, page):
            ctypes.string_at(address, 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _open_reply(path: str, client: int) -> int | None:
    """Open the reply FIFO for writing once the client reads it; None if the client is gone."""
    import errno
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno not in (errno.ENXIO, errno.EINTR) or not _alive(client):
                return None
            time.sleep(0.0005)
            continue
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd


def _reap(child: int, client: int) -> int:
    """Wait for the child; kill its process group if the client disappears first. Returns the exit
    code a shell would show (128 + signal for a signalled child)."""
    import signal

    pidfd = _open_pidfd(child)
    try:
        while True:
            code = _exit_code_within(child, pidfd, 0.25, 0.002)
            if code is not None:
                return 128 - code if code < 0 else code
            if not _alive(client):
                with contextlib.suppress(OSError):
                    os.killpg(child, signal.SIGKILL)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _read_request(reply: str) -> tuple[list[str] | None, int, str]:
    """(argv, stderr fd, problem) for the request whose reply FIFO is ``reply``."""
    try:
        with open(reply + ".argv") as handle:
            argv = json.load(handle)
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv is not a list of strings")
        err_fd = os.open(reply + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except (OSError, ValueError) as exc:
        return None, -1, f"bad request {reply}: {exc}"
    return argv, err_fd, ""


def _warm_run_steps(sysfs: str = "/sys") -> None:
    """In a process that forks runs: what every run would otherwise do again. The device's
    read-only properties are read (getprop is a process each), and an .npz is read once, which
    imports and compiles what reading a run's inputs needs (~1.5 ms of a forked run's CPU here)."""
    import io

    import numpy

    android_sdk()  # asked by every run; virtual_device() alone may answer without it
    virtual_device(sysfs)
    # the lookups a run's probes make: glob and shutil imported and the name patterns compiled
    # here, not in every forked run (7 ms of a run's wall time on the 0.5-core virtual board)
    _governors(sysfs)
    hottest_zone_c(sysfs)
    energy_sources(sysfs)
    _status_command()
    packed = io.BytesIO()
    # the kinds a run's inputs come as: float32, an integer, uint8 with its scale and offset
    arrays: dict[str, Any] = {
        "warm": numpy.zeros((1, 2), dtype=numpy.float32),
        "count": numpy.zeros((1,), dtype=numpy.int64),
        "image": numpy.zeros((1, 2), dtype=numpy.uint8),
        "image" + AFFINE_SCALE: numpy.ones(1, dtype=numpy.float32),
        "image" + AFFINE_OFFSET: numpy.zeros(1, dtype=numpy.float32),
    }
    numpy.savez(packed, **arrays)
    _REHEARSAL_NPZ[:] = [packed.getvalue()]
    _read_npz(io.BytesIO(_REHEARSAL_NPZ[0]))


# A forked run's first call of each of its steps costs more CPU than the same call in a warm
# process: each object it touches (code, dicts, reference counts) sits on a page it shares with
# the agent, which the kernel copies at the first write. On the 0.5-core virtual board (silero,
# CPU ms, forked run vs warm process): parsing the arguments 1.4-2.0 vs 0.4, reading the inputs
# 2.8-3.7 vs 1.0, the environment 1.3-1.8 vs 0.7, the thermal sampler 1.4-2.1 vs 1.0. A spare
# rehearses these steps while the channel is idle, so the copies are made before a run asks.
_REHEARSAL_NPZ: list[bytes] = []  # an .npz of inputs, packed by _warm_run_steps


def _read_npz(source: Any) -> dict[str, Any]:
    import numpy

    with numpy.load(source, allow_pickle=False) as archive:
        return _apply_affine({key: archive[key] for key in archive.files})


def _rehearsal_argv(runtime: str) -> list[str]:
    """A run's command line with every option the host sends (values of no consequence)."""
    argv = ["run", "--model", "m", "--runtime", runtime, "--threads", "1", "--environment"]
    for option in ("--warmup-iters", "--min-iters", "--max-iters"):
        argv += [option, "1"]
    for option in ("--warmup-s", "--min-s", "--max-s", "--sample-period-s", "--rate-hz", "--idle-s"):
        argv += [option, "0.5"]
    for option in ("--cooldown-below-c", "--cooldown-max-s", "--cooldown-poll-s"):
        argv += [option, "0.5"]
    return [*argv, "--cpus", "0", "--energy", ENERGY_SOURCES[0], "--inputs", "i.npz", "--sha256", "0:m"]


def rehearse_run(runtime: str, request_fd: int, sysfs: str = "/sys") -> list[str]:
    """In a spare, while it waits for its run: the steps of a run that touch the agent's pages
    (arguments, inputs, environment, thermal sampler, answer), on stand-ins, never the run's
    files and no command started. Stops as soon as ``request_fd`` turns readable, so a run never
    waits for it. The steps done, in order."""
    import select

    import numpy

    def arguments() -> None:
        if _PARSER:
            parse_cpus_argument(_PARSER[0].parse_args(_rehearsal_argv(runtime)).cpus)

    def inputs() -> None:
        import io

        if _REHEARSAL_NPZ:
            for array in _read_npz(io.BytesIO(_REHEARSAL_NPZ[0])).values():
                numpy.dtype(array.dtype.name)

    def environment_() -> None:
        _environment_files(sysfs)
        _allowed_cpus()
        read_status_kb()
        _other_load_pct((_cpu_times(), _own_jiffies()), (_cpu_times(), _own_jiffies()))
        hottest_zone_c(sysfs)

    def sampler() -> None:
        ThermalSampler(1.0, sysfs).rehearse()

    def answer() -> None:
        json.dumps({"schema_version": SCHEMA_VERSION, "latencies_ns": [1, 2], "phases_ms": {"load": 0.5}})

    done: list[str] = []
    for name, step in (
        ("arguments", arguments),
        ("inputs", inputs),
        ("environment", environment_),
        ("sampler", sampler),
        ("answer", answer),
    ):
        if select.select([request_fd], [], [], 0)[0]:
            break
        step()
        done.append(name)
    return done


def _exit_code_of(run: Callable[[], int]) -> int:
    """In a forked child: ``run()``'s code as a process's exit would give it (1 for a crash,
    its traceback on stderr)."""
    try:
        return run()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1


def _serve_one(line: str, directory: str, control_fd: int, resident: Sequence[tuple[int, int]]) -> None:
    client_text, _, reply_name = line.strip().partition(" ")
    if not client_text.isdigit() or reply_name != "call-" + client_text:
        return  # not a request this protocol can produce: nothing to answer, no path to trust
    client = int(client_text)
    reply = os.path.join(directory, reply_name)
    argv, err_fd, problem = _read_request(reply)
    reply_fd = _open_reply(reply, client)
    if reply_fd is None:
        if err_fd >= 0:
            os.close(err_fd)
        return
    if argv is None:
        os.write(reply_fd, f"{problem}\n{SERVED_EXIT_MARKER}{EXIT_FAILED}\n".encode())
        os.close(reply_fd)
        return
    prime_verified(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # the run, as a fresh process would do it

        def served() -> int:
            os.setsid()
            os.close(control_fd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(reply_fd, 1)
            os.dup2(err_fd, 2)
            _touch(resident)
            return main(argv, kept)

        kept: list[Any] = []  # released by _exit: the model's teardown would delay the reap
        code = _exit_code_of(served)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(err_fd)
    code = _reap(child, client)
    with contextlib.suppress(OSError):  # the client may be gone
        os.write(reply_fd, f"\n{SERVED_EXIT_MARKER}{code}\n".encode())
    os.close(reply_fd)
    with contextlib.suppress(OSError):
        os.unlink(reply + ".argv")


def serve(directory: str, runtime: str | None, idle_exit_s: float) -> int:
    """Serve runs until the host's session ends (this process is orphaned or hung up), or until
    ``idle_exit_s`` pass without a request."""
    import select

    os.makedirs(directory, exist_ok=True)
    control = os.path.join(directory, "control")
    # What every run imports anyway, so a fresh process holds it too by the end of its run: glob
    # (sysfs), hashlib (verify), zipfile (an .npz of inputs: 7 ms with bz2/lzma), numpy.
    import glob  # noqa: F401
    import hashlib  # noqa: F401
    import zipfile  # noqa: F401

    import numpy  # noqa: F401

    _warm_run_steps()

    if runtime == "onnxruntime":
        _onnxruntime_info()
    elif runtime == "litert":
        with contextlib.suppress(AgentFailure):  # the run reports it, as a fresh process would
            load_litert()
    if os.path.exists(control):
        os.unlink(control)
    os.mkfifo(control, 0o600)
    control_fd = os.open(control, os.O_RDWR)  # holding a writer: no EOF between clients
    with open(os.path.join(directory, "pid.partial"), "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(os.path.join(directory, "pid.partial"), os.path.join(directory, "pid"))
    resident = resident_file_pages()
    runs = forks_runs_from(resident)
    announce = {"kind": "serving", "pid": os.getpid(), "runtime": runtime}
    announce["resident_file_pages"] = None if resident is None else len(resident)
    sys.stdout.write(json.dumps(announce) + "\n")
    sys.stdout.flush()
    parent = os.getppid()
    pending = b""
    last = time.monotonic()
    try:
        while os.getppid() == parent and time.monotonic() - last < idle_exit_s:
            ready, _, _ = select.select([control_fd], [], [], 1.0)
            if not ready:
                continue
            pending += os.read(control_fd, 4096)
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                _serve_one(line.decode("utf-8", errors="replace"), directory, control_fd, runs)
                last = time.monotonic()
    finally:
        for name in ("control", "pid"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
    return 0


# -- persistent channel -----------------------------------------------------------------------------
#
# ``channel`` is the warm agent of a whole host session, reached over one stream that stays open (an
# SSH exec channel, an ADB shell v2 stream): its stdin and stdout carry frames, each a 4-byte
# big-endian length and a UTF-8 JSON object. The host sends {"id": N, "op": ..., ...} and the agent
# answers {"id": N, ...}, in any order, so a ping is answered while a run goes on:
#   ping                      -> {"pong": true}
#   agent {argv, timeout_s}   -> main(argv) in a child forked as ``serve`` forks it (the same imports,
#                                the resident pages touched): {"exit_code", "stdout", "stderr", "timed_out"}
#   exec {argv, cwd, stdin, timeout_s} -> the command in a session of its own; the same answer
#   read {path, max_bytes}    -> {"data": base64} | {"missing": true} | {"too_large": size} | {"error"}
#   cancel {target}           -> the target's process group is killed; its own answer follows
#   bye                       -> the agent exits
# The agent is single-threaded (a select loop: forking from it is safe) and exits at EOF, at a
# hang-up, or after HOST_SILENT_S without a frame; its children die with it.

CHANNEL_PROTOCOL = 1
MAX_FRAME_BYTES = 64 << 20
HOST_SILENT_S = 30.0
_FRAME_HEADER = 4


def encode_frame(document: dict[str, Any]) -> bytes:
    """One frame: the JSON object's length (4 bytes, big-endian), then the object in UTF-8."""
    data = json.dumps(document, separators=(",", ":")).encode("utf-8")
    return len(data).to_bytes(_FRAME_HEADER, "big") + data


def decode_frames(buffer: bytearray) -> list[Any]:
    """Take every whole frame off the front of ``buffer``; raises ValueError on a frame over
    MAX_FRAME_BYTES or one that is not JSON (the stream is out of step: nothing can be trusted)."""
    found = []
    while len(buffer) >= _FRAME_HEADER:
        size = int.from_bytes(bytes(buffer[:_FRAME_HEADER]), "big")
        if size > MAX_FRAME_BYTES:
            raise ValueError(f"frame of {size} bytes is over the {MAX_FRAME_BYTES}-byte limit")
        if len(buffer) < _FRAME_HEADER + size:
            break
        payload = bytes(buffer[_FRAME_HEADER : _FRAME_HEADER + size])
        del buffer[: _FRAME_HEADER + size]
        found.append(json.loads(payload.decode("utf-8")))
    return found


_LIBC: list[Any] = []  # the C library, looked up once (a forked child inherits it)
_PARSER: list[argparse.ArgumentParser] = []  # built once by the channel agent, reused by its children


def _libc() -> Any:
    if not _LIBC:
        import ctypes

        try:
            _LIBC.append(ctypes.CDLL(None, use_errno=True))
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def _die_with_parent() -> None:
    """Linux and Android: the kernel kills this process when the agent dies (even by SIGKILL, as
    adbd's hang-up does), so no run outlives the session that asked for it."""
    with contextlib.suppress(AttributeError):  # no C library (None) or no prctl
        _libc().prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL


class _Job:
    """One running request: its process, its output so far, its deadline."""

    def __init__(self, ident: Any, pid: int, fds: Sequence[int], deadline: float, popen: Any = None) -> None:
        self.ident = ident
        self.pid = pid
        self.output = {fd: bytearray() for fd in fds}
        self.order = list(fds)  # stdout, stderr
        self.deadline = deadline
        self.popen = popen
        self.timed_out = False
        self.code: int | None = None

    def kill(self) -> None:
        import signal

        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(self.pid, signal.SIGKILL)

    def reported_code(self) -> bool:
        """A forked run's exit code from the last line of its stderr (see EXIT_TRAILER), taken
        off the output; False when there is none (killed, or not a forked run)."""
        stderr = self.output[self.order[1]]
        cut = stderr.rfind(EXIT_TRAILER.encode())
        tail = stderr[cut + len(EXIT_TRAILER) :].rstrip(b"\n") if cut >= 0 else b""
        if self.popen is not None or self.timed_out or not tail.lstrip(b"-").isdigit():
            return False
        self.code = int(tail)
        del stderr[cut:]
        return True

    def reap(self) -> bool:
        if self.code is not None:
            return True
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                return False
            self.code = 128 - code if code < 0 else code
            return True
        done, status = os.waitpid(self.pid, os.WNOHANG)
        if not done:
            return False
        code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
        self.code = 128 - code if code < 0 else code
        return True


class _Spare:
    """A child forked ahead of the next run: it waits on a pipe for the run's argv and the files
    the agent has hashed since the fork (its ``_VERIFIED`` is a copy from the fork)."""

    def __init__(self, pid: int, fds: tuple[int, int], request_fd: int) -> None:
        self.pid = pid
        self.fds = fds
        self.request_fd = request_fd

    def start(self, argv: list[str]) -> bool:
        """Hand over the run; False when the spare is gone (the caller forks anew)."""
        message = json.dumps({"argv": argv, "verified": {p: [list(k), d] for p, (k, d) in _VERIFIED.items()}})
        try:
            os.write(self.request_fd, message.encode() + b"\n")  # well under a pipe's buffer
            return True
        except OSError:
            self.discard()
            return False
        finally:
            with contextlib.suppress(OSError):
                os.close(self.request_fd)

    def discard(self) -> None:
        """End it without a run (closing its pipe is enough; SIGKILL for a stuck one)."""
        import signal

        for fd in (self.request_fd, *self.fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(self.pid, 0)

    @staticmethod
    def wait(request_fd: int) -> list[str] | None:
        """In the spare: the argv sent, None when the agent closed the pipe without one."""
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = os.read(request_fd, 1 << 16)
            if not chunk:
                return None
            data += chunk
        os.close(request_fd)
        message = json.loads(data)
        _VERIFIED.update({p: (tuple(k), d) for p, (k, d) in message["verified"].items()})
        return [str(word) for word in message["argv"]]


class ChannelAgent:
    """The agent's side of the persistent channel (see above)."""

    def __init__(
        self, in_fd: int, out_fd: int, resident: Sequence[tuple[int, int]], *, runtime: str | None = None
    ) -> None:
        import fcntl

        self.runtime = runtime  # a runtime's channel keeps a spare child for the next run
        self.in_fd = in_fd
        self.out_fd = out_fd
        fcntl.fcntl(out_fd, fcntl.F_SETFL, fcntl.fcntl(out_fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.resident = resident
        self.incoming = bytearray()
        self.outgoing = bytearray()
        self.jobs: dict[int, _Job] = {}  # by pipe fd
        self.running: list[_Job] = []
        self.spare: _Spare | None = None  # a runtime's channel: the next run's child, forked ahead
        self.exiting: list[int] = []  # answered runs whose processes are still exiting
        self.last_heard = time.monotonic()
        self.stopping = False
        # a child's exit wakes the select loop (SIGCHLD writes a byte here), so an answer is sent
        # the moment its command ends, not at the next poll
        self.wakeup_read, wakeup_write = os.pipe()
        for fd in (self.wakeup_read, wakeup_write):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.wakeup_write = wakeup_write

    def reply(self, document: dict[str, Any]) -> None:
        self.outgoing += encode_frame(document)

    def _flush(self) -> None:
        while self.outgoing:
            try:
                written = os.write(self.out_fd, self.outgoing[: 1 << 16])
            except BlockingIOError:
                return
            del self.outgoing[:written]

    def _forked(self, ident: Any, argv: list[str], deadline: float) -> None:
        """A run in a child of this process: the spare forked while the channel was idle when
        there is one, else a fork now."""
        prime_verified(argv)
        spare, self.spare = self.spare, None
        if spare is not None and spare.start(argv):
            self._track(_Job(ident, spare.pid, spare.fds, deadline))
            return
        pid, fds, _ = self._fork_child(argv)
        self._track(_Job(ident, pid, fds, deadline))

    def _fork_child(self, argv: list[str] | None) -> tuple[int, tuple[int, int], int]:
        """Fork a child that runs ``argv`` as a fresh process would (see serve()): its pid, its
        stdout and stderr, and for a spare (argv None) the pipe it reads its argv from."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        request_read, request_write = os.pipe() if argv is None else (-1, -1)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            inherited = [self.in_fd, self.out_fd, out_read, err_read, request_write]
            self._child(argv, (out_write, err_write), request_read, [*inherited, *self.jobs])
        os.close(out_write)
        os.close(err_write)
        if argv is None:
            os.close(request_read)
        return pid, (out_read, err_read), request_write

    def _child(
        self, argv: list[str] | None, streams: tuple[int, int], request_fd: int, close: list[int]
    ) -> NoReturn:
        """In the forked child: set up as a fresh process, run ``argv`` (a spare: wait for it on
        ``request_fd``), and exit with its code; never returns."""

        def forked() -> int:
            import signal

            for number in (signal.SIGHUP, signal.SIGTERM, signal.SIGCHLD):
                signal.signal(number, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            os.setpgid(0, 0)  # a group of its own: a cancel kills its helpers too
            _die_with_parent()
            for fd in [*close, self.wakeup_read, self.wakeup_write]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(streams[0], 1)
            os.dup2(streams[1], 2)
            for fd in streams:  # only 1 and 2 may hold the pipes: their closing is the answer's EOF
                if fd > 2:
                    os.close(fd)
            _touch(self.resident)
            if argv is None and self.runtime is not None:
                rehearse_run(self.runtime, request_fd)
            run = argv if argv is not None else _Spare.wait(request_fd)
            return 0 if run is None else main(run, kept)  # None: the agent ended without a run for it

        kept: list[Any] = []  # released by _exit, after the answer: no runtime teardown to wait for
        code = _exit_code_of(forked)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            # the code, then the streams closed: the agent answers without waiting for the
            # kernel to take this process's memory down (6 ms on this host after a run)
            os.write(2, f"{EXIT_TRAILER}{code}\n".encode())
            os.close(1)
            os.close(2)
        finally:
            os._exit(code)

    def _reap_exiting(self, *, wait: bool = False) -> None:
        for pid in list(self.exiting):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, 0 if wait else os.WNOHANG)[0] == 0:
                    continue
            self.exiting.remove(pid)

    def _fork_spare(self) -> None:
        """While the channel is idle: the next run's child, forked and its pages touched ahead,
        so a run request waits for neither (6-9 ms of CPU here, about twice that on a 0.5-core
        board). Only on a runtime's channel, and one at a time."""
        if self.runtime is not None and self.spare is None and not self.running and not self.stopping:
            self.spare = _Spare(*self._fork_child(None))

    def _executed(self, ident: Any, request: dict[str, Any], deadline: float) -> None:
        import base64

        argv = request.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            self.reply({"id": ident, "error": "exec needs argv, a non-empty list of strings"})
            return
        stdin = base64.b64decode(request.get("stdin") or "")
        try:
            process = subprocess.Popen(
                argv,
                cwd=request.get("cwd") or None,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            self.reply({"id": ident, "exit_code": 127, "stdout": "", "stderr": f"{argv[0]}: {exc}\n"})
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.write(stdin)  # small: the host sends large input on a stream of its own
            with contextlib.suppress(OSError):
                process.stdin.close()
        assert process.stdout is not None and process.stderr is not None
        fds = (os.dup(process.stdout.fileno()), os.dup(process.stderr.fileno()))
        process.stdout.close()
        process.stderr.close()
        self._track(_Job(ident, process.pid, fds, deadline, popen=process))

    def _track(self, job: _Job) -> None:
        for fd in job.order:
            self.jobs[fd] = job
        self.running.append(job)

    def _read_file(self, ident: Any, request: dict[str, Any]) -> None:
        import base64

        path, limit = request.get("path"), request.get("max_bytes", 1 << 20)
        try:
            size = os.path.getsize(path)  # type: ignore[arg-type]
            if size > limit:
                self.reply({"id": ident, "too_large": size})
                return
            with open(path, "rb") as handle:  # type: ignore[arg-type]
                data = handle.read()
        except FileNotFoundError:
            self.reply({"id": ident, "missing": True})
            return
        except (OSError, TypeError) as exc:
            self.reply({"id": ident, "error": f"{path}: {exc}"})
            return
        self.reply({"id": ident, "data": base64.b64encode(data).decode("ascii")})

    def handle(self, request: Any) -> None:
        self.last_heard = time.monotonic()
        if not isinstance(request, dict) or "id" not in request:
            self.reply({"id": None, "error": "a request is a JSON object with an id and an op"})
            return
        ident, op = request["id"], request.get("op")
        timeout = request.get("timeout_s")
        deadline = time.monotonic() + (float(timeout) if isinstance(timeout, (int, float)) else 3600.0)
        if op == "ping":
            self.reply({"id": ident, "pong": True})
        elif op == "agent":
            argv = request.get("argv")
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                self.reply({"id": ident, "error": "agent needs argv, a list of strings"})
            else:
                self._forked(ident, argv, deadline)
        elif op == "exec":
            self._executed(ident, request, deadline)
        elif op == "read":
            self._read_file(ident, request)
        elif op == "cancel":
            for job in self.running:
                if job.ident == request.get("target"):
                    job.timed_out = True
                    job.kill()
            self.reply({"id": ident, "cancelled": request.get("target")})
        elif op == "bye":
            self.stopping = True
            self.reply({"id": ident, "bye": True})
        else:
            self.reply({"id": ident, "error": f"unknown op {op!r}"})

    def _finish(self, job: _Job) -> None:
        stdout, stderr = (job.output[fd] for fd in job.order)
        self.running.remove(job)
        self.reply(
            {
                "id": job.ident,
                "exit_code": job.code,
                "stdout": stdout.decode("utf-8", errors="replace"),
                "stderr": stderr.decode("utf-8", errors="replace"),
                "timed_out": job.timed_out,
            }
        )

    def _pump(self, ready: Sequence[int]) -> None:
        for fd in ready:
            job = self.jobs.get(fd)
            if job is None:
                continue
            chunk = os.read(fd, 1 << 16)
            if chunk and len(job.output[fd]) < MAX_FRAME_BYTES // 2:
                job.output[fd] += chunk
            elif not chunk:
                os.close(fd)
                del self.jobs[fd]

    def loop(self) -> None:
        import select

        while not self.stopping:
            now = time.monotonic()
            if now - self.last_heard > HOST_SILENT_S:
                return  # the host is gone without closing the stream (a cut link)
            for job in self.running:
                if now > job.deadline and not job.timed_out:
                    job.timed_out = True
                    job.kill()
            unreaped = self.exiting or any(fd not in self.jobs for job in self.running for fd in job.order)
            writers = [self.out_fd] if self.outgoing else []
            try:
                ready, writable, _ = select.select(
                    [self.in_fd, self.wakeup_read, *self.jobs], writers, [], 0.05 if unreaped else 0.5
                )
            except InterruptedError:
                continue
            if self.wakeup_read in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wakeup_read, 512)
            if writable:
                self._flush()
            if self.in_fd in ready:
                data = os.read(self.in_fd, 1 << 16)
                if not data:
                    return  # EOF: the host closed the stream
                self.incoming += data
                for request in decode_frames(self.incoming):
                    self.handle(request)
            self._pump([fd for fd in ready if fd not in (self.in_fd, self.wakeup_read)])
            for job in list(self.running):
                if all(fd not in self.jobs for fd in job.order):
                    if job.reported_code():
                        self.exiting.append(job.pid)  # reaped once the kernel is done with it
                        self._finish(job)
                    elif job.reap():
                        self._finish(job)
            self._flush()
            self._reap_exiting()
            self._fork_spare()  # after the answer is on its way

    def close(self) -> None:
        if self.spare is not None:
            self.spare.discard()
            self.spare = None
        self._reap_exiting(wait=True)
        for job in self.running:
            job.kill()
        for job in self.running:
            with contextlib.suppress(OSError):
                if job.popen is not None:
                    job.popen.wait()
                else:
                    os.waitpid(job.pid, 0)
        for fd in list(self.jobs):
            with contextlib.suppress(OSError):
                os.close(fd)


def channel(runtime: str | None) -> int:
    """Serve the host session over stdin/stdout (see above) until it ends."""
    import signal

    if runtime is not None:  # what a run imports anyway, as serve() does
        import glob  # noqa: F401
        import hashlib  # noqa: F401
        import zipfile  # noqa: F401

        import numpy  # noqa: F401

        _warm_run_steps()
        if runtime == "onnxruntime":
            _onnxruntime_info()
        elif runtime == "litert":
            with contextlib.suppress(AgentFailure):
                load_litert()
    _PARSER.append(build_parser())  # ~10 ms the first time (lazy imports): once, not per run
    _libc()
    resident: list[int] | None = []
    runs: list[tuple[int, int]] = []
    if runtime is not None:
        _PARSER[0].parse_args(_rehearsal_argv(runtime))  # argparse's patterns compiled (~3 ms here)
        resident = resident_file_pages()
        runs = forks_runs_from(resident)
    sys.stdout.flush()
    out_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print goes to stderr, never into the frames
    agent = ChannelAgent(0, out_fd, runs, runtime=runtime)

    def stop(number: int, frame: Any) -> None:
        agent.stopping = True

    for number in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(number, stop)
    signal.signal(signal.SIGCHLD, lambda number, frame: None)
    signal.set_wakeup_fd(agent.wakeup_write)
    agent.reply(
        {
            "kind": "hello",
            "protocol": CHANNEL_PROTOCOL,
            "pid": os.getpid(),
            "runtime": runtime,
            "python": platform.python_version(),
            "resident_file_pages": None if resident is None else len(resident),
        }
    )
    try:
        agent._flush()
        agent.loop()
    except ValueError as exc:  # frames out of step
        sys.stderr.write(f"edgelab channel: {exc}\n")
        return EXIT_FAILED
    finally:
        agent.close()
    return 0


# -- command line -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 with text; we answer in JSON
        raise AgentFailure("args", message, "ArgumentError")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgelab_agent", description="EdgeLab on-device runner")
    commands = parser.add_subparsers(dest="command")
    commands.required = True
    probe_parser = commands.add_parser("probe", help="report what this device has")
    probe_parser.add_argument("--result", default=None)
    run_parser = commands.add_parser("run", help="benchmark one model")
    run_parser.add_argument("--model", required=True)
    run_parser.add_argument("--runtime", required=True, choices=["onnxruntime", "litert"])
    run_parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the runtime, >= 1")
    run_parser.add_argument("--cpus", default=None, help="comma-separated cpus to pin the run to")
    run_parser.add_argument("--delegate", default=None)
    run_parser.add_argument("--inputs", default=None)
    run_parser.add_argument("--outputs", default=None)
    run_parser.add_argument("--warmup-iters", type=int, default=10)
    run_parser.add_argument("--warmup-s", type=float, default=1.0)
    run_parser.add_argument("--min-iters", type=int, default=50)
    run_parser.add_argument("--min-s", type=float, default=2.0)
    run_parser.add_argument("--max-s", type=float, default=60.0)
    run_parser.add_argument("--max-iters", type=int, default=100000)
    run_parser.add_argument("--sample-period-s", type=float, default=0.0, help="thermal sampler; 0: off")
    run_parser.add_argument("--energy", default=None, choices=ENERGY_SOURCES, help="energy source to sample")
    run_parser.add_argument("--idle-s", type=float, default=0.0, help="idle baseline before warm-up")
    run_parser.add_argument("--rate-hz", type=float, default=0.0, help="fixed request rate; 0: back to back")
    run_parser.add_argument("--environment", action="store_true", help="record what can make numbers lie")
    run_parser.add_argument(
        "--cooldown-below-c", type=float, default=None, help="first wait for the hottest zone to fall below"
    )
    run_parser.add_argument("--cooldown-max-s", type=float, default=300.0, help="longest cooldown wait")
    run_parser.add_argument("--cooldown-poll-s", type=float, default=2.0, help="cooldown polling period")
    run_parser.add_argument("--result", default=None)
    run_parser.add_argument(
        "--sha256", action="append", default=[], help="SHA256:PATH that must match before the run"
    )
    serve_parser = commands.add_parser("serve", help="import once, fork a child per run (see serve())")
    serve_parser.add_argument("--dir", required=True, help="where the control FIFO lives")
    serve_parser.add_argument("--runtime", default=None, choices=["onnxruntime", "litert"])
    serve_parser.add_argument("--idle-exit-s", type=float, default=3600.0)
    channel_parser = commands.add_parser("channel", help="serve the host session over stdin/stdout")
    channel_parser.add_argument("--runtime", default=None, choices=["onnxruntime", "litert"])
    return parser


def _emit(document: dict[str, Any], result_path: str | None) -> None:
    text = json.dumps(document)
    if result_path:
        temporary = result_path + ".partial"
        with open(temporary, "w") as handle:
            handle.write(text)
        os.replace(temporary, result_path)
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def main(argv: Sequence[str] | None = None, keep: list[Any] | None = None) -> int:
    """The agent's command line; a run's model goes into ``keep`` (see run())."""
    result_path: str | None = None
    try:
        arguments = (_PARSER[0] if _PARSER else build_parser()).parse_args(argv)
        result_path = getattr(arguments, "result", None)
        if arguments.command == "probe":
            _emit(probe(), result_path)
        elif arguments.command == "serve":
            return serve(arguments.dir, arguments.runtime, arguments.idle_exit_s)
        elif arguments.command == "channel":
            return channel(arguments.runtime)
        else:
            if arguments.min_iters < 1 or arguments.max_s <= 0 or arguments.max_iters < 1:
                raise AgentFailure("args", "--min-iters and --max-iters must be >= 1 and --max-s > 0")
            if arguments.threads < 1:
                raise AgentFailure(
                    "args",
                    "--threads must be >= 1: the thread count is explicit, never the runtime's default",
                )
            _emit(run(arguments, keep), result_path)
        return 0
    except AgentFailure as failure:
        _emit(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": "error",
                "phase": failure.phase,
                "error": {"type": failure.error_type, "message": str(failure)},
            },
            result_path,
        )
        return EXIT_FAILED


if __name__ == "__main__":
    kept: list[Any] = []
    exit_code = main(keep=kept)
    if kept:  # a run, its answer written: no runtime and interpreter teardown for the host to wait for
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):  # a reader gone: the exit code still says how it ended
                stream.flush()
        os._exit(exit_code)
    sys.exit(exit_code)
