"""Accuracy of a variant on a device, per slice (clean, corruption@severity), next to the host
fp32 reference on the very same inputs: what suites assert on."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import cachefile
from harness.datasets.tasks import CLEAN, EvalSet, Task
from harness.record import AccuracyRecord, SliceDrop, SliceRecord, SliceValue

LOWER_IS_BETTER = {"cer"}


@dataclass(frozen=True)
class SliceScore:
    name: str
    samples: int
    metrics: dict[str, float]  # this variant on the device
    fp32: dict[str, float]  # the host fp32 reference on the same inputs
    agreement: float  # share of samples where this variant's answer equals fp32's (IoU for maps)


@dataclass
class AccuracyReport:
    model: str
    task: str
    metric: str
    precision: str
    slices: dict[str, SliceScore] = field(default_factory=dict)

    def value(self, slice_name: str = CLEAN, metric: str | None = None) -> float:
        return self.slices[slice_name].metrics[metric or self.metric]

    def worst_slice(self, metric: str | None = None) -> tuple[str, float]:
        name = metric or self.metric
        pick = max if name in LOWER_IS_BETTER else min
        worst = pick(self.slices.values(), key=lambda s: s.metrics[name])
        return worst.name, worst.metrics[name]

    def drop_vs_fp32(self, slice_name: str = CLEAN, metric: str | None = None) -> float:
        """Points lost against fp32 on this slice (positive is worse; x100 for rates)."""
        name = metric or self.metric
        score = self.slices[slice_name]
        delta = score.fp32[name] - score.metrics[name]
        return (-delta if name in LOWER_IS_BETTER else delta) * 100

    def max_drop_vs_fp32(self, metric: str | None = None) -> tuple[str, float]:
        drops = {name: self.drop_vs_fp32(name, metric) for name in self.slices}
        worst = max(drops, key=lambda n: drops[n])
        return worst, drops[worst]

    def record(self) -> AccuracyRecord:
        """What results.json and the database keep of this report."""
        worst_name, worst_value = self.worst_slice()
        drop_name, drop_points = self.max_drop_vs_fp32()
        return AccuracyRecord(
            task=self.task,
            metric=self.metric,
            precision=self.precision,
            clean=self.value(),
            worst_slice=SliceValue(slice=worst_name, value=worst_value),
            max_drop_vs_fp32_points=SliceDrop(slice=drop_name, points=drop_points),
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
    reference: dict[str, np.ndarray],
    precision: str,
) -> AccuracyReport:
    if not outputs:
        raise ValueError("no outputs to score")
    count = {int(np.asarray(v).shape[0]) for v in outputs.values()}
    if count != {evalset.size}:
        raise ValueError(f"{evalset.model}: {count} outputs for {evalset.size} inputs")
    report = AccuracyReport(evalset.model, evalset.task, task.metric, precision)
    ours, theirs = split(outputs, evalset.slices), split(reference, evalset.slices)
    for name, (indexes, values) in ours.items():
        labels = [evalset.labels[i] for i in indexes]
        report.slices[name] = SliceScore(
            name=name,
            samples=len(indexes),
            metrics=task.score(values, labels),
            fp32=task.score(theirs[name][1], labels),
            agreement=task.agreement(values, theirs[name][1]),
        )
    return report


def host_reference(model_file: Path, evalset: EvalSet, cache: Path) -> dict[str, np.ndarray]:
    """fp32 outputs of the host's ONNX Runtime on the evaluation inputs, cached by evalset key
    with their sha256: a cached file whose bytes changed is computed again, never scored with."""
    with cachefile.locked(cache):
        if cachefile.verified(cache):
            with np.load(cache, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        reference = _run_reference(model_file, evalset)
        cachefile.build(cache, lambda path: np.savez(path, **reference))  # type: ignore[arg-type]
        return reference


def _run_reference(model_file: Path, evalset: EvalSet) -> dict[str, np.ndarray]:
    """One sample at a time into arrays allocated once (no list of copies, no stacking)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    reference: dict[str, np.ndarray] = {}
    for index in range(evalset.size):
        for name, value in zip(names, session.run(None, evalset.float_inputs(index)), strict=True):
            array = np.asarray(value)
            if name not in reference:
                reference[name] = np.empty((evalset.size, *array.shape), dtype=array.dtype)
            reference[name][index] = array
    return reference
