"""Model inputs on the host: synthetic batches from an input spec, and real values in and out of
quantized tensors (``real = scale * (stored - zero_point)``).

Synthetic values are deterministic by seed; they exercise latency and memory, never accuracy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.models.spec import InputSpec, ModelSpec, OutputSpec


def integer_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def real_range(spec: InputSpec) -> tuple[float, float]:
    """The real values a quantized input can represent: what its integers stand for."""
    assert spec.scale is not None
    low, high = integer_range(spec.dtype)
    zero = spec.zero_point or 0
    return spec.scale * (low - zero), spec.scale * (high - zero)


def quantize(values: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Real values as the tensor's integers (rounded, clipped to the dtype)."""
    assert spec.scale is not None
    low, high = integer_range(spec.dtype)
    stored = np.rint(np.asarray(values, dtype=np.float64) / spec.scale) + (spec.zero_point or 0)
    quantized: np.ndarray = np.clip(stored, low, high).astype(spec.dtype)
    return quantized


def dequantize(values: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """A quantized output as real values (float32); other outputs unchanged."""
    if not spec.quantized or np.asarray(values).dtype.kind not in ("i", "u"):
        return np.asarray(values)
    assert spec.scale is not None
    real: np.ndarray = (
        (np.asarray(values).astype(np.float32) - np.float32(spec.zero_point or 0)) * np.float32(spec.scale)
    ).astype(np.float32)
    return real


def synthetic(spec: InputSpec, batch: int, generator: np.random.Generator) -> np.ndarray:
    """``batch`` values for one input, shape ``(batch, *spec.shape)``, in the input's dtype.

    Float inputs: ``fill`` over ``[low, high)``. Quantized integer inputs: real values over
    ``[low, high)`` (default: the range the tensor represents) through scale and zero point. Other
    integer and bool inputs: the constant ``value`` (0 unless overridden): an index or a flag
    drawn at random is rarely valid."""
    shape = (batch, *spec.shape)
    kind = np.dtype(spec.dtype).kind
    if spec.fill == "constant" or (kind in ("i", "u", "b") and not spec.quantized):
        values = np.full(shape, spec.value)
    elif spec.fill == "normal":
        values = generator.normal(spec.value, (spec.high - spec.low) / 4, size=shape)
    else:
        values = generator.uniform(spec.low, spec.high, size=shape)
    if spec.quantized and kind in ("i", "u"):
        return quantize(values, spec)
    return values.astype(spec.dtype)


def make_inputs(spec: ModelSpec, destination: Path, *, batch: int = 1, seed: int = 0) -> Path:
    """A deterministic ``.npz``: one array per input, shape ``(batch, *input_shape)``."""
    return write_inputs(spec.inputs, destination, batch=batch, seed=seed)


def write_inputs(items: Sequence[InputSpec], destination: Path, *, batch: int = 1, seed: int = 0) -> Path:
    if batch < 1:
        raise ValueError("batch must be >= 1")
    generator = np.random.default_rng(seed)
    arrays = {item.name: synthetic(item, batch, generator) for item in items}
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".inputs-", suffix=".npz", dir=destination.parent)
    os.close(descriptor)
    try:
        np.savez(temporary, **arrays)  # type: ignore[arg-type]
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; inputs are no secret
        os.replace(temporary, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return destination
