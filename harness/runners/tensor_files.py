"""Model inputs and outputs as files the runtimes' own tools read and write: raw tensor bytes for
benchmark_model, TensorProto files for onnxruntime_perf_test, and the agent's ``.npz`` layout back.

The model's tensors are read on the host with the same runtimes (ai-edge-litert, onnxruntime):
the device tools print no signature. Inputs follow the agent's conventions (a leading sample
axis; ``NAME.__scale__``/``NAME.__offset__`` affine arrays), checked the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import ParseError

AFFINE_SCALE, AFFINE_OFFSET = ".__scale__", ".__offset__"  # the agent's convention (datasets.tasks)

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


class TensorFileError(ValueError):
    """Inputs that do not fit the model, or outputs that do not fit its tensors."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # None: a free dimension
    dtype: str

    @property
    def nbytes(self) -> int:
        if any(d is None for d in self.shape):
            raise TensorFileError(f"tensor '{self.name}' has free dimensions {list(self.shape)}")
        return (
            int(np.prod([d for d in self.shape if d is not None], dtype=np.int64))
            * np.dtype(self.dtype).itemsize
        )


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def tflite_signature(model: Path) -> Signature:
    """Inputs and outputs of a .tflite model as LiteRT allocates them (host interpreter)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()

    def specs(details: Sequence[Mapping[str, object]]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(
                str(d["name"]),
                tuple(int(x) for x in d["shape"]),  # type: ignore[attr-defined]
                np.dtype(d["dtype"]).name,  # type: ignore[call-overload]
            )
            for d in details
        )

    return Signature(specs(interpreter.get_input_details()), specs(interpreter.get_output_details()))


def onnx_signature(model: Path) -> Signature:
    """Inputs and outputs of an .onnx model as ONNX Runtime sees them (free dimensions None)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def specs(values: Sequence[object]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(
                str(v.name),  # type: ignore[attr-defined]
                tuple(d if isinstance(d, int) and d >= 0 else None for d in v.shape),  # type: ignore[attr-defined]
                _ORT_TYPES.get(str(v.type), str(v.type)),  # type: ignore[attr-defined]
            )
            for v in values
        )

    return Signature(specs(session.get_inputs()), specs(session.get_outputs()))


def load_batch(path: Path, inputs: Sequence[TensorSpec]) -> tuple[dict[str, np.ndarray], int]:
    """The input file (``.npz`` by name, ``.npy`` for a one-input model) as arrays with a leading
    sample axis, affine arrays applied, checked against the model's inputs as the agent checks
    them; and the number of samples. Inputs the file does not give are absent (the tool makes them)."""
    try:
        if path.suffix == ".npy":
            if len(inputs) != 1:
                raise TensorFileError(
                    f"{path}: a .npy input needs a single-input model; use .npz keyed by name"
                )
            given = {inputs[0].name: np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as archive:
                given = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise TensorFileError(f"cannot read inputs {path}: {exc}") from None
    batch = {k: v for k, v in given.items() if not k.endswith((AFFINE_SCALE, AFFINE_OFFSET))}
    for name in list(batch):
        scale, offset = given.get(name + AFFINE_SCALE), given.get(name + AFFINE_OFFSET)
        if scale is not None or offset is not None:
            values = batch[name].astype(np.float32)
            if scale is not None:
                values = values * scale.astype(np.float32)
            if offset is not None:
                values = values + offset.astype(np.float32)
            batch[name] = np.ascontiguousarray(values, dtype=np.float32)
    known = {spec.name: spec for spec in inputs}
    unknown = sorted(set(batch) - set(known))
    if unknown:
        raise TensorFileError(
            f"inputs file has {unknown}, which the model does not take (inputs: {list(known)})"
        )
    counts = {int(a.shape[0]) for a in batch.values() if a.ndim > 0}
    if len(counts) > 1 or any(a.ndim == 0 for a in batch.values()):
        shapes = {k: list(v.shape) for k, v in batch.items()}
        raise TensorFileError(f"every input array needs the same leading sample axis; got shapes {shapes}")
    count = counts.pop() if counts else 1
    if count < 1:
        raise TensorFileError("the input batch is empty")
    for name, array in batch.items():
        spec = known[name]
        sample = tuple(array.shape[1:])
        mismatch = len(sample) != len(spec.shape) or any(
            want is not None and want != got for want, got in zip(spec.shape, sample, strict=False)
        )
        if mismatch or array.dtype != np.dtype(spec.dtype):
            raise TensorFileError(
                f"input '{name}': model expects shape {list(spec.shape)} {spec.dtype}, "
                f"file has {list(sample)} {array.dtype.name} per sample"
            )
    return batch, count


def sample_major_bytes(array: np.ndarray) -> bytes:
    """Samples one after the other, each C-contiguous: ``dd bs=<sample bytes> skip=i`` cuts one."""
    return np.ascontiguousarray(array).tobytes()


def write_tensor_proto(array: np.ndarray, name: str, path: Path) -> Path:
    """One sample as an ONNX TensorProto file (``test_data_set_0/input_K.pb``)."""
    from onnx import numpy_helper

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(numpy_helper.from_array(np.ascontiguousarray(array), name=name).SerializeToString())
    return path


def split_outputs(data: bytes, outputs: Sequence[TensorSpec], samples: int) -> dict[str, np.ndarray]:
    """benchmark_model's ``--output_filepath`` bytes of ``samples`` runs, appended one after the
    other (each run: every output tensor's raw bytes in output order), as the agent's arrays
    ``{name: (samples, *shape)}``. ParseError when the size does not add up."""
    per_sample = sum(spec.nbytes for spec in outputs)
    if per_sample == 0 or len(data) != per_sample * samples:
        raise ParseError(
            "tool-outputs",
            f"{len(data)} bytes of outputs for {samples} samples of {per_sample} bytes "
            f"({', '.join(f'{s.name} {list(s.shape)} {s.dtype}' for s in outputs)})",
        )
    arrays: dict[str, list[np.ndarray]] = {spec.name: [] for spec in outputs}
    offset = 0
    for _ in range(samples):
        for spec in outputs:
            size = spec.nbytes
            chunk = np.frombuffer(
                data, dtype=np.dtype(spec.dtype), count=size // np.dtype(spec.dtype).itemsize, offset=offset
            )
            arrays[spec.name].append(chunk.reshape([d for d in spec.shape if d is not None]).copy())
            offset += size
    return {name: np.stack(values) for name, values in arrays.items()}


def save_outputs(arrays: Mapping[str, np.ndarray], path: Path) -> Path:
    """The agent's outputs file: ``np.savez`` of ``{name: (samples, *shape)}``, at exactly ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    with temporary.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    temporary.replace(path)
    return path
