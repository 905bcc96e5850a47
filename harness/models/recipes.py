"""Variant recipes: one model in several precisions, built on the host, cached by content hash.

ONNX: ``fp32`` (as shipped), ``fp16`` (onnxconverter-common, io types kept), ``int8-dynamic``
(``quantize_dynamic``), ``int8-static`` (``quantize_static``, QDQ, per-channel, calibrated on the
task's real data; opset raised to 13 first, ``quant_pre_process`` with skip_symbolic_shape).
TFLite models exist in the precision they ship in (mediapipe's carry fp16 weights and no
signature, which ai-edge-quantizer needs), and every other recipe says why it cannot run; so do
ONNX models that do not ship fp32 weights. The team's models take the same recipes as the zoo's.

Each built file sits in ``<cache>/variants/<sha256[:16]>-<precision>-r<RECIPE_VERSION>/`` with a
``recipe.json`` recording the settings and the tool versions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ModelError
from harness.models import files, zoo
from harness.models.spec import ModelSpec

RECIPE_VERSION = 5  # bump when a recipe changes: cached variants are rebuilt
ONNX_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
STATIC_OPSET = 13

# Feeds for int8-static, one per sample; a calibration with a ``key`` attribute (its data's hash)
# keys the cached variant by that data too, so new calibration data builds a new variant.
Calibration = Callable[[], Iterator[dict[str, Any]]]
CALIBRATION_SOURCES = "a zoo model's task, or models.yaml calibration: an .npz of real inputs"


class RecipeRefused(ModelError):
    """This model cannot take this recipe; the message says why (never a silent copy)."""


@dataclass(frozen=True)
class BuiltVariant:
    path: Path
    precision: str
    recipe: dict[str, Any]


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _folder(spec: ModelSpec, precision: str) -> Path:
    return zoo.cache_dir() / "variants" / f"{spec.sha256[:16]}-{precision}-r{RECIPE_VERSION}"


def refusal(spec: ModelSpec, precision: str) -> str | None:
    """Why ``spec`` cannot take ``precision`` (None when it can), without building anything."""
    if precision == spec.precision:
        return None
    if spec.format != "onnx" and spec.origin == "zoo":
        return (
            f"{spec.name}: {precision} is not available: the {spec.format} model ships with "
            f"{spec.precision} weights and no signature, and ai-edge-quantizer needs a signature; "
            "use the ONNX models for precision comparisons"
        )
    if spec.format != "onnx":
        return (
            f"{spec.name}: {precision} is not available: the {spec.format} model ships {spec.precision} and "
            "EdgeLab's precision recipes build ONNX variants; export the TFLite precisions you want to "
            "compare as files of their own, or give the model as ONNX"
        )
    if precision not in ONNX_PRECISIONS:
        return f"{spec.name}: unknown precision '{precision}' (known: {', '.join(ONNX_PRECISIONS)})"
    if spec.precision != "fp32":
        return (
            f"{spec.name}: {precision} is not available: the recipes start from fp32 weights and the model "
            f"ships {spec.precision}; give its fp32 export to compare precisions"
        )
    return None


def build(spec: ModelSpec, precision: str, calibration: Calibration | None = None) -> BuiltVariant:
    """The host file of ``spec`` in ``precision`` (built once, then from the cache)."""
    refused = refusal(spec, precision)
    if refused:
        raise RecipeRefused(refused)
    source = files.local_file(spec)
    if precision == spec.precision:
        return BuiltVariant(source, precision, {"recipe": "as shipped", "source_sha256": spec.sha256})
    calibrated_on = getattr(calibration, "key", None) if precision == "int8-static" else None
    folder = _folder(spec, precision if calibrated_on is None else f"{precision}-c{calibrated_on[:12]}")
    target = folder / spec.filename
    record = folder / "recipe.json"
    refused_file = folder / "refused.txt"
    if target.exists() and record.exists():
        return BuiltVariant(target, precision, json.loads(record.read_text()))
    if refused_file.exists():
        raise RecipeRefused(refused_file.read_text())
    if precision == "int8-static" and calibration is None:  # the caller's omission: not cached
        raise RecipeRefused(f"{spec.name}: int8-static needs calibration data ({CALIBRATION_SOURCES})")
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
                    f"{spec.name}: int8-static needs calibration data ({CALIBRATION_SOURCES})"
                )
            settings = _int8_static(source, output, workdir, calibration)
        recipe = {
            "recipe": precision,
            "source_sha256": spec.sha256,
            "sha256": hashlib.sha256(output.read_bytes()).hexdigest(),
            "settings": settings,
            "versions": {name: _version(name) for name in ("onnx", "onnxruntime", "onnxconverter-common")},
        }
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(output, target)
        record.write_text(json.dumps(recipe, indent=1))
        return BuiltVariant(target, precision, recipe)
    except RecipeRefused as refused:
        folder.mkdir(parents=True, exist_ok=True)
        refused_file.write_text(str(refused))  # a deterministic refusal: do not retry every run
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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
        def __init__(self) -> None:
            self.items = calibration()
            self.count = 0

        def get_next(self) -> dict[str, Any] | None:
            item = next(self.items, None)
            if item is not None:
                self.count += 1
            return item

    prepared = _preprocessed(source, workdir, opset=STATIC_OPSET)
    method, problems = "Percentile (99.999)", []
    for calibrate in (CalibrationMethod.Percentile, CalibrationMethod.MinMax):
        reader = Reader()
        try:
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


def onnx_twin(spec: ModelSpec) -> ModelSpec:
    """The ONNX description of a TFLite zoo model: same source and weights, NCHW inputs."""
    import dataclasses

    inputs = tuple(
        dataclasses.replace(i, shape=(i.shape[0], i.shape[3], i.shape[1], i.shape[2]))
        if len(i.shape) == 4
        else i
        for i in spec.inputs
    )
    return dataclasses.replace(spec, format="onnx", inputs=inputs)


def convert_tflite(spec: ModelSpec) -> BuiltVariant:
    """The same TFLite model as ONNX (tflite2onnx, no TensorFlow), validated against LiteRT on a
    random input before use; cached like every recipe."""
    folder = _folder(spec, "onnx-from-tflite")
    target = folder / (Path(spec.filename).stem + ".onnx")
    record = folder / "recipe.json"
    refused_file = folder / "refused.txt"
    if target.exists() and record.exists():
        return BuiltVariant(target, spec.precision, json.loads(record.read_text()))
    if refused_file.exists():
        raise RecipeRefused(refused_file.read_text())
    source = files.local_file(spec)
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
        recipe = {
            "recipe": "onnx-from-tflite",
            "source_sha256": spec.sha256,
            "sha256": hashlib.sha256(output.read_bytes()).hexdigest(),
            "settings": {
                "tool": "tflite2onnx.convert",
                "layout": "NHWC input -> NCHW",
                "max_abs_diff_vs_litert": difference,
            },
            "versions": {
                name: _version(name) for name in ("tflite2onnx", "onnx", "onnxruntime", "ai-edge-litert")
            },
        }
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(output, target)
        record.write_text(json.dumps(recipe, indent=1))
        return BuiltVariant(target, spec.precision, recipe)
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
