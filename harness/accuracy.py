"""Accuracy of a variant on a device, per slice (clean, corruption@severity), next to the host
fp32 reference on the very same inputs: what suites assert on.

The reference is the model's fp32 variant run on the host (ONNX Runtime or LiteRT, by format).
A model without an fp32 variant (e.g. a TFLite file that ships int8) has no reference: its drop
against fp32 is None, with the reason in ``fp32_missing``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from harness import cachefile
from harness.datasets.tasks import CLEAN, EvalSet, Task
from harness.record import AccuracyRecord, SliceDrop, SliceRecord, SliceValue

LOWER_IS_BETTER = frozenset({"cer"})


@dataclass(frozen=True)
class SliceScore:
    name: str
    samples: int
    metrics: dict[str, float]  # this variant on the device
    fp32: dict[str, float] | None  # the host fp32 reference on the same inputs (None: no fp32 variant)
    agreement: float | None  # share of samples answered like fp32 (IoU for maps, cosine for values)


@dataclass
class AccuracyReport:
    model: str
    task: str
    metric: str
    precision: str
    slices: dict[str, SliceScore] = field(default_factory=dict)
    lower_is_better: frozenset[str] = LOWER_IS_BETTER
    fp32_missing: str | None = None  # why there is no fp32 reference

    def value(self, slice_name: str = CLEAN, metric: str | None = None) -> float:
        return self.slices[slice_name].metrics[metric or self.metric]

    def worst_slice(self, metric: str | None = None) -> tuple[str, float]:
        name = metric or self.metric
        pick = max if name in self.lower_is_better else min
        worst = pick(self.slices.values(), key=lambda s: s.metrics[name])
        return worst.name, worst.metrics[name]

    def drop_vs_fp32(self, slice_name: str = CLEAN, metric: str | None = None) -> float | None:
        """Points lost against fp32 on this slice: 100 x the difference, positive is worse (for a
        rate, percentage points). None without an fp32 reference (see ``fp32_missing``)."""
        name = metric or self.metric
        score = self.slices[slice_name]
        if score.fp32 is None:
            return None
        delta = score.fp32[name] - score.metrics[name]
        return (-delta if name in self.lower_is_better else delta) * 100

    def max_drop_vs_fp32(self, metric: str | None = None) -> tuple[str, float] | None:
        drops = {name: self.drop_vs_fp32(name, metric) for name in self.slices}
        known = {name: drop for name, drop in drops.items() if drop is not None}
        if not known:
            return None
        worst = max(known, key=lambda n: known[n])
        return worst, known[worst]

    def record(self) -> AccuracyRecord:
        """What results.json and the database keep of this report."""
        worst_name, worst_value = self.worst_slice()
        drop = self.max_drop_vs_fp32()
        return AccuracyRecord(
            task=self.task,
            metric=self.metric,
            precision=self.precision,
            clean=self.value(),
            worst_slice=SliceValue(slice=worst_name, value=worst_value),
            max_drop_vs_fp32_points=SliceDrop(slice=drop[0], points=drop[1]) if drop is not None else None,
            fp32_missing=self.fp32_missing if drop is None else None,
            lower_is_better=self.metric in self.lower_is_better,
            slices={
                name: SliceRecord(samples=s.samples, metrics=s.metrics, fp32=s.fp32, agreement=s.agreement)
                for name, s in self.slices.items()
            },
        )


def split(
    outputs: dict[str, np.ndarray], slices: list[str]
) -> dict[str, tuple[list[int], dict[str, np.ndarray]]]:
    """Outputs (leading sample axis) grouped by slice, in first-seen order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, name in enumerate(slices):
        groups[name].append(index)
    return {
        name: (indexes, {k: np.asarray(v)[indexes] for k, v in outputs.items()})
        for name, indexes in groups.items()
    }


def score(
    task: Task,
    evalset: EvalSet,
    outputs: dict[str, np.ndarray],
    reference: dict[str, np.ndarray] | None,
    precision: str,
    *,
    fp32_missing: str | None = None,
) -> AccuracyReport:
    """Score ``outputs`` slice by slice; ``reference`` None (with ``fp32_missing`` saying why)
    when the model has no fp32 variant to compare with."""
    if not outputs:
        raise ValueError("no outputs to score")
    count = {int(np.asarray(v).shape[0]) for v in outputs.values()}
    if count != {evalset.size}:
        raise ValueError(f"{evalset.model}: {count} outputs for {evalset.size} inputs")
    report = AccuracyReport(
        evalset.model,
        evalset.task,
        task.metric,
        precision,
        lower_is_better=task.lower_is_better,
        fp32_missing=fp32_missing if reference is None else None,
    )
    ours = split(outputs, evalset.slices)
    theirs = split(reference, evalset.slices) if reference is not None else {}
    for name, (indexes, values) in ours.items():
        labels = [evalset.labels[i] for i in indexes]
        fp32_values = theirs[name][1] if name in theirs else None
        report.slices[name] = SliceScore(
            name=name,
            samples=len(indexes),
            metrics=task.score(values, labels, fp32_values),
            fp32=task.score(fp32_values, labels, fp32_values) if fp32_values is not None else None,
            agreement=task.agreement(values, fp32_values) if fp32_values is not None else None,
        )
    return report


def host_reference(
    model_file: Path, evalset: EvalSet, cache: Path, model_format: Literal["onnx", "tflite"] = "onnx"
) -> dict[str, np.ndarray]:
    """fp32 outputs of the host's ONNX Runtime (or LiteRT for a TFLite model) on the evaluation
    inputs, in order, from a freshly loaded model (a stateful model starts from its initial state,
    as the device's output pass does). Cached by evalset key with their sha256: a cached file whose
    bytes changed is computed again, never scored with. Memory-mapped, one sample in memory."""
    from harness.datasets.npzfile import open_arrays

    scratch = cache.with_name(cache.name + ".d")
    with cachefile.locked(cache):
        if not cachefile.verified(cache):
            cachefile.build(
                cache, lambda path: _write_reference(model_file, model_format, evalset, scratch, path)
            )
        return open_arrays(cache, scratch)


def _write_reference(
    model_file: Path, model_format: Literal["onnx", "tflite"], evalset: EvalSet, scratch: Path, path: Path
) -> None:
    """One sample at a time into memory-mapped arrays allocated once, then streamed into ``path``."""
    run = host_runner(model_file, model_format)
    scratch.mkdir(parents=True, exist_ok=True)
    collected: dict[str, np.ndarray] = {}
    try:
        for index in range(evalset.size):
            for name, value in run(evalset.float_inputs(index)).items():
                if name not in collected:
                    collected[name] = np.lib.format.open_memmap(
                        scratch / f"build-{len(collected)}.npy",
                        mode="w+",
                        dtype=np.asarray(value).dtype,
                        shape=(evalset.size, *np.shape(value)),
                    )
                collected[name][index] = value
        np.savez(path, **collected)  # type: ignore[arg-type]
    finally:
        collected.clear()
        for built in scratch.glob("build-*.npy"):
            built.unlink()


Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def host_runner(model_file: Path, model_format: Literal["onnx", "tflite"]) -> Runner:
    """The model loaded on the host (one thread): feed -> outputs, sample after sample."""
    return _litert_runner(model_file) if model_format == "tflite" else _ort_runner(model_file)


def _ort_runner(model_file: Path) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, (np.asarray(v) for v in session.run(None, feed)), strict=True))

    return run


def _litert_runner(model_file: Path) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_file), num_threads=1)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    resized = False

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        nonlocal inputs, resized
        if not resized:  # the samples' shapes, where the model leaves dims free
            for detail in inputs:
                shape = list(np.shape(feed[detail["name"]]))
                if shape != [int(d) for d in detail["shape"]]:
                    interpreter.resize_tensor_input(detail["index"], shape)
            interpreter.allocate_tensors()
            inputs, resized = interpreter.get_input_details(), True
        for detail in inputs:
            interpreter.set_tensor(detail["index"], feed[detail["name"]])
        interpreter.invoke()
        return {
            d["name"]: interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()
        }

    return run
