"""Variant recipes: one model in several precisions, built on the host, cached by content hash.

ONNX: ``fp32`` (as shipped), ``fp16`` (onnxconverter-common, io types kept), ``int8-dynamic``
(``quantize_dynamic``), ``int8-static`` (``quantize_static``, QDQ, per-channel, calibrated on the
task's real data; opset raised to 13 first, ``quant_pre_process`` with skip_symbolic_shape).
TFLite models from mediapipe carry fp16 weights and no signature, which ai-edge-quantizer
needs: they exist in the precision they ship in, and every other recipe says why it cannot run.

Each built file sits in ``<cache>/variants/<sha256[:16]>-<precision>-r<RECIPE_VERSION>/`` with a
``recipe.json`` recording the settings, the tool versions and the file's sha256; a cached file is
checked against that sha256 before use and built again when its bytes differ.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from harness import cachefile
from harness.errors import ModelError
from harness.models import zoo

RECIPE_VERSION = 5  # bump when a recipe changes: cached variants are rebuilt
ONNX_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
STATIC_OPSET = 13

Calibration = Callable[[], Iterator[dict[str, Any]]]


class RecipeRefused(ModelError):
    """This model cannot take this recipe; the message says why (never a silent copy)."""


@dataclass(frozen=True)
class BuiltVariant:
    path: Path
    precision: str
    recipe: dict[str, Any]
    sha256: str  # of the bytes at ``path``, checked when this was returned


def _cached(target: Path, record: Path) -> dict[str, Any] | None:
    """The recipe of a cached build whose file still has the bytes it was built with; None when
    there is none, or when the file changed (garbage, truncated, altered weights): build again."""
    try:
        recipe = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recipe, dict) or not cachefile.matches(target, recipe.get("sha256")):
        if target.exists():
            warnings.warn(
                f"{target}: its bytes differ from the sha256 in {record.name}; building it again",
                cachefile.CacheRebuiltWarning,
                stacklevel=3,
            )
        return None
    return recipe


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _folder(spec: zoo.ModelSpec, precision: str) -> Path:
    return zoo.cache_dir() / "variants" / f"{spec.sha256[:16]}-{precision}-r{RECIPE_VERSION}"


def refusal(spec: zoo.ModelSpec, precision: str) -> str | None:
    """Why ``spec`` cannot take ``precision`` (None when it can), without building anything."""
    if precision == spec.precision:
        return None
    if spec.format != "onnx":
        return (
            f"{spec.name}: {precision} is not available: the {spec.format} model ships with "
            f"{spec.precision} weights and no signature, and ai-edge-quantizer needs a signature; "
            "use the ONNX models for precision comparisons"
        )
    if precision not in ONNX_PRECISIONS:
        return f"{spec.name}: unknown precision '{precision}' (known: {', '.join(ONNX_PRECISIONS)})"
    return None


def build(spec: zoo.ModelSpec, precision: str, calibration: Calibration | None = None) -> BuiltVariant:
    """The host file of ``spec`` in ``precision`` (built once, then from the cache)."""
    refused = refusal(spec, precision)
    if refused:
        raise RecipeRefused(refused)
    source = zoo.fetch(spec)
    if precision == spec.precision:
        shipped = {"recipe": "as shipped", "source_sha256": spec.sha256, "sha256": spec.sha256}
        return BuiltVariant(source, precision, shipped, spec.sha256)
    folder = _folder(spec, precision)
    with cachefile.locked(folder):
        return _build(spec, precision, calibration, source, folder)


def _build(
    spec: zoo.ModelSpec, precision: str, calibration: Calibration | None, source: Path, folder: Path
) -> BuiltVariant:
    target = folder / spec.filename
    record = folder / "recipe.json"
    refused_file = folder / "refused.txt"
    cached = _cached(target, record)
    if cached is not None:
        return BuiltVariant(target, precision, cached, cached["sha256"])
    if refused_file.exists():
        raise RecipeRefused(refused_file.read_text())
    if precision == "int8-static" and calibration is None:  # the caller's omission: not cached
        raise RecipeRefused(f"{spec.name}: int8-static needs calibration data from the task's dataset")
    workdir = Path(tempfile.mkdtemp(prefix=f"edgelab-{spec.name}-{precision}-"))
    try:
        output = workdir / spec.filename
        if precision == "fp16":
            settings = _fp16(source, output)
        elif precision == "int8-dynamic":
            settings = _int8_dynamic(source, output, workdir)
        else:
            if calibration is None:
                raise RecipeRefused(
                    f"{spec.name}: int8-static needs calibration data from the task's dataset"
                )
            settings = _int8_static(source, output, workdir, calibration)
        digest = cachefile.sha256_file(output)
        recipe = {
            "recipe": precision,
            "source_sha256": spec.sha256,
            "sha256": digest,
            "settings": settings,
            "versions": {name: _version(name) for name in ("onnx", "onnxruntime", "onnxconverter-common")},
        }
        _install(output, target, record, recipe)
        return BuiltVariant(target, precision, recipe, digest)
    except RecipeRefused as refused:
        folder.mkdir(parents=True, exist_ok=True)
        refused_file.write_text(str(refused))  # a deterministic refusal: do not retry every run
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _install(output: Path, target: Path, record: Path, recipe: dict[str, Any]) -> None:
    """Move a built file into the cache with its record; the old record goes first, so a crash
    in between leaves a file without a record (built again), never a record of other bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)
    os.replace(output, target)
    temporary = record.with_name(f".{record.name}.{os.getpid()}")
    temporary.write_text(json.dumps(recipe, indent=1))
    os.replace(temporary, record)


def _loads(path: Path) -> str | None:
    """None when ONNX Runtime on this host can load the model, else why not."""
    import onnxruntime

    try:
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types, all with a message
        return str(exc).strip().splitlines()[0][:300]
    return None


def fp16_weight_share(path: Path) -> float:
    """Share of the float weight elements stored in fp16: initializers and Constant nodes,
    subgraphs (If/Loop bodies) included."""
    import onnx

    counts = {"fp16": 0, "fp32": 0}

    def count(tensor: Any) -> None:
        size = int(np.prod(tensor.dims)) if tensor.dims else 1
        if tensor.data_type == onnx.TensorProto.FLOAT16:
            counts["fp16"] += size
        elif tensor.data_type == onnx.TensorProto.FLOAT:
            counts["fp32"] += size

    def walk(graph: Any) -> None:
        for tensor in graph.initializer:
            count(tensor)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:  # weights as Constant nodes (Paddle)
                    count(attribute.t)
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)
                for sub in attribute.graphs:
                    walk(sub)

    walk(onnx.load(str(path)).graph)
    total = counts["fp16"] + counts["fp32"]
    return round(counts["fp16"] / total, 4) if total else 0.0


def _fp16(source: Path, output: Path) -> dict[str, Any]:
    """Convert to fp16; if ONNX Runtime cannot load the result (control-flow subgraphs the converter
    mistypes), try again keeping If/Loop/Scan in fp32, and refuse when that fails too."""
    import onnx
    from onnxconverter_common import float16

    attempts: list[list[str] | None] = [None, [*float16.DEFAULT_OP_BLOCK_LIST, "If", "Loop", "Scan"]]
    problems = []
    for block in attempts:
        model = onnx.load(str(source))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if block is None:
                    converted = float16.convert_float_to_float16(model, keep_io_types=True)
                else:
                    converted = float16.convert_float_to_float16(
                        model, keep_io_types=True, op_block_list=block
                    )
            except Exception as exc:  # the converter raises plain exceptions for unsupported graphs
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
        onnx.save(converted, str(output))
        problem = _loads(output)
        if problem is None:
            return {
                "tool": "onnxconverter_common.float16.convert_float_to_float16",
                "keep_io_types": True,
                "kept_in_fp32": sorted(set(block or float16.DEFAULT_OP_BLOCK_LIST)),
                "fp16_weight_share": fp16_weight_share(output),  # near 0: the model stayed mostly fp32
                "weights_clamped_to_fp16_range": sum("will be truncated" in str(w.message) for w in caught),
            }
        problems.append(problem)
    raise RecipeRefused(f"{source.name}: fp16 conversion gives no loadable model: {' | '.join(problems)}")


def _preprocessed(source: Path, workdir: Path, opset: int | None = None) -> Path:
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    current = source
    if opset is not None:
        model = onnx.load(str(source))
        version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if version < opset:
            from onnx import version_converter

            current = workdir / f"opset{opset}.onnx"
            onnx.save(version_converter.convert_version(model, opset), str(current))
    prepared = workdir / "prepared.onnx"
    quant_pre_process(str(current), str(prepared), skip_symbolic_shape=True)
    return prepared


def _int8_dynamic(source: Path, output: Path, workdir: Path) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    prepared = _preprocessed(source, workdir)
    quantize_dynamic(str(prepared), str(output), weight_type=QuantType.QInt8)
    return {"tool": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "pre_process": True}


def _int8_static(source: Path, output: Path, workdir: Path, calibration: Calibration) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        """The task's calibration samples, made one at a time; ``rewind`` starts them again
        (the streaming histogram pass reads them twice; ``count`` is of the first pass)."""

        def __init__(self) -> None:
            self.items = calibration()
            self.count = 0
            self.rewound = False

        def get_next(self) -> dict[str, Any] | None:
            item = next(self.items, None)
            if item is not None and not self.rewound:
                self.count += 1
            return item

        def rewind(self) -> None:
            self.items = calibration()
            self.rewound = True

    prepared = _preprocessed(source, workdir, opset=STATIC_OPSET)
    method, problems = "Percentile (99.999)", []
    for calibrate in (CalibrationMethod.Percentile, CalibrationMethod.MinMax):
        reader = Reader()
        try:
            with _streaming_histograms():
                quantize_static(
                    str(prepared),
                    str(output),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=calibrate,  # Percentile: MinMax lets outliers eat the int8 range
                )
            break
        except (ValueError, RuntimeError) as exc:  # the histogram calibrators fail on some graphs
            problems.append(f"{calibrate.name}: {exc}")
            method = "MinMax (Percentile failed)"
    else:
        raise RecipeRefused(f"{source.name}: int8-static failed: {' | '.join(problems)}")
    if reader.count == 0:
        raise RecipeRefused(f"{source.name}: int8-static got no calibration samples")
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "per_channel": True,
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "calibrate_method": method,
        "calibration_samples": reader.count,
        "opset": STATIC_OPSET,
    }


@contextlib.contextmanager
def _streaming_histograms() -> Iterator[None]:
    """Within this block, ONNX Runtime's symmetric percentile calibrator reads the calibration
    samples twice, one at a time, instead of holding every intermediate output of every sample
    (9.9 GB of host memory for ppocr_rec's 48 lines). Pass one finds each tensor's range, pass two
    fills histograms with the edges ``np.histogram`` would have chosen for all samples at once, so
    the histograms, the ranges and the quantized model are the same (tests/models/test_recipes.py
    checks it against the calibrator's own). Other calibrators are left as they are."""
    import importlib

    from onnxruntime.quantization.calibrate import HistogramCalibrater

    # the module, not the package's function of the same name
    ort_quantize: Any = importlib.import_module("onnxruntime.quantization.quantize")

    original = ort_quantize.create_calibrator

    def create(*args: Any, **kwargs: Any) -> Any:
        calibrator = original(*args, **kwargs)
        if (
            isinstance(calibrator, HistogramCalibrater)
            and getattr(calibrator, "method", None) == "percentile"
            and getattr(calibrator, "symmetric", None) is True
        ):
            calibrator.collect_data = types.MethodType(_collect_in_two_passes, calibrator)
        return calibrator

    ort_quantize.create_calibrator = create
    try:
        yield
    finally:
        ort_quantize.create_calibrator = original


def _collect_in_two_passes(calibrator: Any, data_reader: Any) -> None:
    """``HistogramCalibrater.collect_data`` for the symmetric percentile method, one sample in
    memory at a time: the same ``(histogram, edges, min, max)`` per tensor as the collector's
    ``collect_absolute_value`` computes over all samples stacked."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    names = [output.name for output in calibrator.infer_session.get_outputs()]
    wanted = [(index, name) for index, name in enumerate(names) if name in calibrator.tensors_to_calibrate]
    ranges: dict[str, list[Any]] = {}  # name -> [min, max, min |x|, max |x|, dtype, size]
    while inputs := data_reader.get_next():
        outputs = calibrator.infer_session.run(None, inputs)
        for index, name in wanted:
            values = np.asarray(outputs[index]).reshape(-1)
            seen = ranges.setdefault(name, [None, None, None, None, values.dtype, 0])
            if values.dtype != seen[4]:
                raise ValueError(
                    f"calibration expects one element type for {name}: {seen[4]}, {values.dtype}"
                )
            seen[5] += values.size
            if values.size:
                magnitude = np.absolute(values)
                # raw range: NaN-ignoring (np.nanmin); |x| range: NaN-propagating (np.histogram)
                extremes = [np.nanmin(values), np.nanmax(values), magnitude.min(), magnitude.max()]
                if seen[0] is None:
                    seen[:4] = extremes
                else:
                    seen[0], seen[1] = np.fmin(seen[0], extremes[0]), np.fmax(seen[1], extremes[1])
                    seen[2], seen[3] = np.minimum(seen[2], extremes[2]), np.maximum(seen[3], extremes[3])
    if not ranges:
        raise ValueError("No data is collected.")
    edges: dict[str, np.ndarray] = {}
    for name, (_, _, smallest, largest, dtype, size) in ranges.items():
        span = np.array([smallest, largest] if size else [], dtype=dtype)  # np.histogram: a.min(), a.max()
        edges[name] = np.histogram(span, bins=calibrator.num_bins)[1]
    counts = {name: np.zeros(calibrator.num_bins, dtype=np.intp) for name in ranges}
    data_reader.rewind()
    while inputs := data_reader.get_next():
        outputs = calibrator.infer_session.run(None, inputs)
        for index, name in wanted:
            magnitude = np.absolute(np.asarray(outputs[index]).reshape(-1))
            counts[name] += np.histogram(magnitude, bins=edges[name])[0]
    collector = HistogramCollector(
        method=calibrator.method,
        symmetric=calibrator.symmetric,
        num_bins=calibrator.num_bins,
        num_quantized_bins=calibrator.num_quantized_bins,
        percentile=calibrator.percentile,
        scenario=calibrator.scenario,
    )
    for name, (low, high, _, _, dtype, size) in ranges.items():
        zero = np.array(0, dtype=dtype)
        collector.histogram_dict[name] = (
            counts[name],
            edges[name].astype(dtype),
            low if size else zero,
            high if size else zero,
        )
    calibrator.collector = collector
    calibrator.clear_collected_data()


def onnx_twin(spec: zoo.ModelSpec) -> zoo.ModelSpec:
    """The ONNX description of a TFLite zoo model: same source and weights, NCHW inputs."""
    import dataclasses

    inputs = tuple(
        dataclasses.replace(i, shape=(i.shape[0], i.shape[3], i.shape[1], i.shape[2]))
        if len(i.shape) == 4
        else i
        for i in spec.inputs
    )
    return dataclasses.replace(spec, format="onnx", inputs=inputs)


def convert_tflite(spec: zoo.ModelSpec) -> BuiltVariant:
    """The same TFLite model as ONNX (tflite2onnx, no TensorFlow), validated against LiteRT on a
    random input before use; cached like every recipe."""
    folder = _folder(spec, "onnx-from-tflite")
    with cachefile.locked(folder):
        return _convert_tflite(spec, folder)


def _convert_tflite(spec: zoo.ModelSpec, folder: Path) -> BuiltVariant:
    target = folder / (Path(spec.filename).stem + ".onnx")
    record = folder / "recipe.json"
    refused_file = folder / "refused.txt"
    cached = _cached(target, record)
    if cached is not None:
        return BuiltVariant(target, spec.precision, cached, cached["sha256"])
    if refused_file.exists():
        raise RecipeRefused(refused_file.read_text())
    source = zoo.fetch(spec)
    workdir = Path(tempfile.mkdtemp(prefix=f"edgelab-{spec.name}-onnx-"))
    try:
        output = workdir / target.name
        try:
            import tflite2onnx

            logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
            tflite2onnx.convert(str(source), str(output))
        except Exception as exc:  # the converter raises plain exceptions for unsupported ops
            raise RecipeRefused(
                f"{spec.name}: tflite2onnx cannot convert it: {type(exc).__name__}: {exc}"
            ) from None
        difference = _max_difference_with_litert(source, output)
        if difference is None or difference > 1e-2:
            raise RecipeRefused(
                f"{spec.name}: the ONNX conversion disagrees with LiteRT (max |diff| {difference})"
            )
        digest = cachefile.sha256_file(output)
        recipe = {
            "recipe": "onnx-from-tflite",
            "source_sha256": spec.sha256,
            "sha256": digest,
            "settings": {
                "tool": "tflite2onnx.convert",
                "layout": "NHWC input -> NCHW",
                "max_abs_diff_vs_litert": difference,
            },
            "versions": {
                name: _version(name) for name in ("tflite2onnx", "onnx", "onnxruntime", "ai-edge-litert")
            },
        }
        _install(output, target, record, recipe)
        return BuiltVariant(target, spec.precision, recipe, digest)
    except RecipeRefused as refused:
        folder.mkdir(parents=True, exist_ok=True)
        refused_file.write_text(str(refused))
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _max_difference_with_litert(tflite: Path, onnx_file: Path) -> float | None:
    """Largest absolute difference between LiteRT and ONNX Runtime outputs on one random input."""
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    values = np.random.default_rng(0).uniform(-1, 1, detail["shape"]).astype(np.float32)
    interpreter.set_tensor(detail["index"], values)
    interpreter.invoke()
    expected = [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.transpose(values, (0, 3, 1, 2)) if values.ndim == 4 else values}
    produced = session.run(None, feed)
    if len(produced) != len(expected):
        return None
    worst = 0.0
    for reference in expected:
        matches = [np.asarray(p) for p in produced if np.asarray(p).size == reference.size]
        if not matches:
            return None
        worst = max(worst, min(float(np.max(np.abs(m.reshape(-1) - reference.reshape(-1)))) for m in matches))
    return worst
