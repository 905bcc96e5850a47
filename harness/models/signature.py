"""What a model file is, read from its own bytes: format, inputs, outputs and precision as shipped.

The format comes from the content (a TFLite flatbuffer carries ``TFL3`` at bytes 4-8; an ONNX
file is a ModelProto with a graph), never from the extension alone. Inputs come from the model's
signature (ONNX graph inputs that are not initializers; LiteRT's input details, quantization
included); the precision from the weights (the element type most weight elements are stored in).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import cachefile
from harness.errors import ModelError
from harness.models.spec import Format, InputSpec, OutputSpec

TFLITE_IDENTIFIER = b"TFL3"
SUPPORTED_DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")


@dataclass(frozen=True)
class ModelFile:
    """One model file as its bytes describe it. ``inputs`` hold the signature's shapes with every
    free dimension set to 1 (listed in ``InputSpec.dynamic``); overrides come later."""

    path: Path
    format: Format
    sha256: str
    size_bytes: int
    precision: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    signature: dict[str, tuple[int | None, ...] | None]  # per input: dims, None where free


def detect_format(path: Path) -> Format:
    """``tflite`` or ``onnx`` from the content; a ModelError naming the file otherwise."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelError(f"model file {path}: cannot read it ({exc.strerror or exc})") from None
    if head[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    problem = _onnx_problem(path)
    if problem is None:
        return "onnx"
    raise ModelError(
        f"model file {path}: neither a TFLite flatbuffer (no 'TFL3' identifier at bytes 4-8) nor an ONNX "
        f"model ({problem}); give a .tflite or .onnx model file"
    )


def _onnx_problem(path: Path) -> str | None:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        text = str(exc).strip()
        return f"not an ONNX protobuf: {text.splitlines()[0][:120] if text else type(exc).__name__}"
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        return "not an ONNX protobuf: no IR version or no graph"
    return None


@functools.lru_cache(maxsize=64)
def _read(path: Path, sha256: str) -> ModelFile:
    """Read once per content: the same bytes at the same path describe the same model."""
    model_format = detect_format(path)
    if model_format == "onnx":
        inputs, outputs, signature = _onnx_io(path)
        precision = precision_of(_onnx_weight_types(path))
    else:
        inputs, outputs, signature = _tflite_io(path)
        precision = precision_of(_tflite_weight_types(path))
    return ModelFile(path, model_format, sha256, path.stat().st_size, precision, inputs, outputs, signature)


def read(path: Path) -> ModelFile:
    """Describe ``path`` (hashed once per session: harness.cachefile keeps it while the
    file's size, times and inode hold)."""
    if not path.is_file():
        raise ModelError(f"model file {path}: not found; check the path")
    return _read(path.resolve(), cachefile.sha256_file(path))


def precision_of(weights: Counter[str]) -> str:
    """fp32, fp16 or int8: the type most weight elements are stored in (shapes and int32 biases
    do not count); a model without float or 8-bit weights is fp32."""
    families = Counter[str]()
    for dtype, count in weights.items():
        if dtype in ("float32", "float64"):
            families["fp32"] += count
        elif dtype in ("float16", "bfloat16"):
            families["fp16"] += count
        elif dtype in ("int8", "uint8", "int4", "uint4"):
            families["int8"] += count
    if not families:
        return "fp32"
    return families.most_common(1)[0][0]


def _dtype_name(dtype: Any, where: str) -> str:
    name = str(np.dtype(dtype).name)
    if name not in SUPPORTED_DTYPES:
        raise ModelError(
            f"{where}: element type {name} is not supported (supported: {', '.join(SUPPORTED_DTYPES)})"
        )
    return name


def _input_spec(
    name: str, dims: tuple[int | None, ...], dtype: str, scale: float | None, zero: int | None
) -> InputSpec:
    dynamic = tuple(axis for axis, dim in enumerate(dims) if dim is None)
    shape = tuple(1 if dim is None else dim for dim in dims)
    if scale is not None and dtype not in ("int8", "uint8", "int16"):
        scale, zero = None, None  # quantization metadata on a float tensor: nothing to map
    if scale is not None:
        from harness.models.inputs import real_range

        low, high = real_range(InputSpec(name, shape, dtype, scale=scale, zero_point=zero))
        return InputSpec(
            name, shape, dtype, low=low, high=high, scale=scale, zero_point=zero, dynamic=dynamic
        )
    return InputSpec(name, shape, dtype, dynamic=dynamic)


# -- ONNX -------------------------------------------------------------------------------------


def _onnx_io(
    path: Path,
) -> tuple[tuple[InputSpec, ...], tuple[OutputSpec, ...], dict[str, tuple[int | None, ...] | None]]:
    import onnx
    from onnx import helper

    model = onnx.load_model(str(path), load_external_data=False)
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs, signature = [], {}
    for value in model.graph.input:
        if value.name in initializers:
            continue  # weights listed as inputs (IR < 4): not something a caller feeds
        where = f"model file {path}: input '{value.name}'"
        if not value.type.HasField("tensor_type"):
            raise ModelError(f"{where}: only tensor inputs are supported (not sequences or maps)")
        tensor = value.type.tensor_type
        dtype = _dtype_name(helper.tensor_dtype_to_np_dtype(tensor.elem_type), where)
        dims: tuple[int | None, ...] | None = None
        if tensor.HasField("shape"):
            dims = tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim
            )
        signature[value.name] = dims
        inputs.append(_input_spec(value.name, dims or (), dtype, None, None))
    outputs = []
    for value in model.graph.output:
        tensor = value.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim
        )
        dtype = (
            np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
            if tensor.elem_type
            else "float32"
        )
        outputs.append(OutputSpec(value.name, dims, dtype))
    return tuple(inputs), tuple(outputs), signature


def _onnx_tensors(graph: Any) -> Iterator[Any]:
    """Every stored tensor: initializers, Constant nodes' values, and those of subgraphs."""
    import onnx

    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                yield attribute.t
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _onnx_tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _onnx_tensors(sub)


def _onnx_weight_types(path: Path) -> Counter[str]:
    import onnx
    from onnx import helper

    model = onnx.load_model(str(path), load_external_data=False)
    counts = Counter[str]()
    for tensor in _onnx_tensors(model.graph):
        if tensor.data_type in (onnx.TensorProto.BFLOAT16,):
            name = "bfloat16"
        elif tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            name = "int4"
        else:
            try:
                name = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).name
            except (KeyError, TypeError, ValueError):
                continue
        counts[name] += int(np.prod(tensor.dims)) if tensor.dims else 1
    return counts


# -- TFLite -----------------------------------------------------------------------------------


def _tflite_io(
    path: Path,
) -> tuple[tuple[InputSpec, ...], tuple[OutputSpec, ...], dict[str, tuple[int | None, ...] | None]]:
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"model file {path}: LiteRT cannot load it: {exc}") from None
    inputs: list[InputSpec] = []
    signature: dict[str, tuple[int | None, ...] | None] = {}
    for detail in interpreter.get_input_details():
        where = f"model file {path}: input '{detail['name']}'"
        dims = _tflite_dims(detail)
        scale, zero = _tflite_quantization(detail, where)
        signature[detail["name"]] = dims
        inputs.append(_input_spec(detail["name"], dims, _dtype_name(detail["dtype"], where), scale, zero))
    outputs = []
    for detail in interpreter.get_output_details():
        scale, zero = _tflite_quantization(detail, f"model file {path}: output '{detail['name']}'")
        outputs.append(
            OutputSpec(detail["name"], _tflite_dims(detail), np.dtype(detail["dtype"]).name, scale, zero)
        )
    return tuple(inputs), tuple(outputs), signature


def _tflite_dims(detail: dict[str, Any]) -> tuple[int | None, ...]:
    signature = detail.get("shape_signature")
    dims = signature if signature is not None and len(signature) else detail["shape"]
    return tuple(None if int(d) < 0 else int(d) for d in dims)


def _tflite_quantization(detail: dict[str, Any], where: str) -> tuple[float | None, int | None]:
    parameters = detail.get("quantization_parameters") or {}
    scales = np.asarray(parameters.get("scales", []), dtype=np.float64)
    if scales.size > 1:
        raise ModelError(
            f"{where}: quantized per channel ({scales.size} scales); give real inputs with inputs: "
            "{data: FILE.npz} in models.yaml"
        )
    if scales.size == 1 and scales[0] > 0:
        zeros = np.asarray(parameters.get("zero_points", [0]))
        return float(scales[0]), int(zeros[0]) if zeros.size else 0
    return None, None


def _tflite_weight_types(path: Path) -> Counter[str]:
    """Element types of the constant tensors (those with a buffer of data), read from the
    flatbuffer with the schema LiteRT ships."""
    from ai_edge_litert import schema_py_generated as schema

    data = path.read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    names = {value: key.lower() for key, value in vars(schema.TensorType).items() if not key.startswith("_")}
    counts = Counter[str]()
    for index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(index)
        if graph is None:
            continue
        for position in range(graph.TensorsLength()):
            tensor = graph.Tensors(position)
            if tensor is None:
                continue
            buffer = model.Buffers(tensor.Buffer())
            if buffer is None or (buffer.DataLength() == 0 and buffer.Size() == 0):
                continue
            counts[names.get(tensor.Type(), "other")] += (
                int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else 1
            )
    return counts
