"""Metrics for the team's datasets: built-ins, and ``module:function`` from the project.

The contract: ``function(outputs, labels) -> float``. ``outputs`` maps each output name to an
array with the sample axis first (quantized outputs already turned into real values); ``labels``
is an array with the sample axis first. Built-ins read one output (``dataset.output``, default the
first). A metric that cannot be imported, raises or returns no finite number is a DataError
naming the model and the metric.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import DataError

MetricFunction = Callable[[Mapping[str, np.ndarray], np.ndarray], float]
BUILTIN = ("top1", "top5", "exact_match", "mse", "cosine_vs_fp32")
PROPORTIONS = ("top1", "top5", "exact_match")  # share of samples right: the drop has a binomial CI
CLASSIFICATION = ("top1", "top5", "exact_match")


def _scores(values: np.ndarray) -> np.ndarray:
    """Per sample, one row of scores: (samples, classes)."""
    return np.asarray(values).reshape(values.shape[0], -1)


def top_k(output: np.ndarray, labels: np.ndarray, k: int) -> float:
    scores = _scores(output)
    truth = np.asarray(labels).reshape(-1).astype(np.int64)
    if truth.size != scores.shape[0]:
        raise ValueError(f"{truth.size} labels for {scores.shape[0]} samples: one class index per sample")
    if k >= scores.shape[1]:
        return 1.0
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(best == truth[:, None], axis=1)))


def prediction(output: np.ndarray, like: np.ndarray) -> np.ndarray:
    """What a sample answers: integer outputs as they are; float outputs by argmax over the last
    axis (a class, or a class per position when the label is a sequence)."""
    values = np.asarray(output)
    if values.dtype.kind in ("i", "u", "b"):
        return values.reshape(like.shape) if values.size == like.size else values
    per_sample = values.reshape(values.shape[0], -1) if like.ndim <= 1 else values
    if like.ndim <= 1:
        return np.asarray(per_sample.argmax(axis=-1))
    return np.asarray(per_sample.reshape(*like.shape, -1).argmax(axis=-1))


def exact_match(output: np.ndarray, labels: np.ndarray) -> float:
    truth = np.asarray(labels)
    answers = prediction(output, truth)
    if answers.shape != truth.shape:
        raise ValueError(f"answers of shape {answers.shape} for labels of shape {truth.shape}")
    matches = (answers == truth).reshape(truth.shape[0], -1).all(axis=1)
    return float(np.mean(matches))


def mse(output: np.ndarray, labels: np.ndarray) -> float:
    values = np.asarray(output, dtype=np.float64).reshape(output.shape[0], -1)
    truth = np.asarray(labels, dtype=np.float64).reshape(labels.shape[0], -1)
    if values.shape != truth.shape:
        raise ValueError(f"{values.shape[1]} output values but {truth.shape[1]} label values per sample")
    return float(np.mean((values - truth) ** 2))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of two outputs, sample by sample (1.0 for two zero vectors)."""
    left = np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1)
    right = np.asarray(b, dtype=np.float64).reshape(b.shape[0], -1)
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    dots = np.sum(left * right, axis=1)
    same = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 1.0)
    return float(np.mean(same))


@dataclass(frozen=True)
class Metric:
    """A metric as a dataset's scorer uses it."""

    name: str
    function: MetricFunction | None  # None: cosine_vs_fp32 (scored against the fp32 outputs)
    lower_is_better: bool
    output: str | None  # the output built-ins read; None: the first

    @property
    def needs_fp32(self) -> bool:
        return self.name == "cosine_vs_fp32"

    @property
    def proportion(self) -> bool:
        return self.name in PROPORTIONS

    @property
    def classification(self) -> bool:
        return self.name in CLASSIFICATION


def _primary(outputs: Mapping[str, np.ndarray], name: str | None) -> np.ndarray:
    if name is None:
        return next(iter(outputs.values()))
    return outputs[name]


def builtin(name: str, output: str | None) -> MetricFunction:
    def run(outputs: Mapping[str, np.ndarray], labels: np.ndarray) -> float:
        value = _primary(outputs, output)
        if name == "top1":
            return top_k(value, labels, 1)
        if name == "top5":
            return top_k(value, labels, 5)
        if name == "exact_match":
            return exact_match(value, labels)
        return mse(value, labels)

    return run


def import_function(reference: str, rootdir: Path, where: str) -> MetricFunction:
    """``module:function`` imported with the rootdir first on the import path."""
    module_name, _, function_name = reference.partition(":")
    added = str(rootdir) not in sys.path
    if added:
        sys.path.insert(0, str(rootdir))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a team module can raise anything at import time
        raise DataError(
            f"{where}: metric '{reference}' cannot be imported: {type(exc).__name__}: {exc} (looked in "
            f"{rootdir} "
            "first); put the module in the project folder or fix the name"
        ) from None
    finally:
        if added:
            sys.path.remove(str(rootdir))
    function = getattr(module, function_name, None)
    if not callable(function):
        raise DataError(
            f"{where}: metric '{reference}': module '{module_name}' ({getattr(module, '__file__', '?')}) "
            "has no "
            f"function '{function_name}'; fix the name"
        )
    checked: MetricFunction = function
    return checked


def load(name: str, *, lower_is_better: bool, output: str | None, rootdir: Path, where: str) -> Metric:
    if name in BUILTIN:
        function = None if name == "cosine_vs_fp32" else builtin(name, output)
        return Metric(name, function, name == "mse", output)
    if ":" not in name:
        import difflib

        close = difflib.get_close_matches(name, BUILTIN, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(
            f"{where}: unknown metric '{name}'{hint}; give one of {', '.join(BUILTIN)} or module:function"
        )
    return Metric(name, import_function(name, rootdir, where), lower_is_better, output)


def call(metric: Metric, outputs: Mapping[str, np.ndarray], labels: np.ndarray, where: str) -> float:
    """The metric's value, or a DataError saying what it was given and what went wrong."""
    assert metric.function is not None
    shapes = ", ".join(f"{name!r}: {tuple(value.shape)}" for name, value in outputs.items())
    given = f"outputs {{{shapes}}}, labels {tuple(labels.shape)}"
    try:
        value = metric.function(outputs, labels)
    except Exception as exc:  # the team's function may raise anything
        raise DataError(
            f"{where}: metric '{metric.name}' raised {type(exc).__name__}: {exc} ({given}); fix the metric "
            "or the data"
        ) from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(
            f"{where}: metric '{metric.name}' returned {type(value).__name__} {value!r}, not a float "
            f"({given})"
        ) from None
    if not math.isfinite(number):
        raise DataError(
            f"{where}: metric '{metric.name}' returned {number} ({given}); a metric must be finite"
        )
    return number
