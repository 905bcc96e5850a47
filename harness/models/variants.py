"""Model variants: one model in one format, run by one runtime at one precision.

ONNX models come in fp32 (as shipped), fp16, int8-dynamic and int8-static (harness.models.recipes,
calibrated on the model's evaluation task when it has one). TFLite models come as shipped; the
other precisions are listed as unavailable with the reason, so a run says why they were skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import SelectionError
from harness.models import recipes, zoo

RUNTIME_FOR_FORMAT = {"onnx": "onnxruntime", "tflite": "litert"}
KNOWN_RUNTIMES = ("onnxruntime", "litert")
# TFLite zoo models tflite2onnx converts faithfully (checked against LiteRT at build time);
# selfie_segmentation uses HARD_SWISH, which it does not support.
ONNX_TWINS = ("face_detection", "hand_landmark")
KNOWN_PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic", "int8-static")


@dataclass(frozen=True)
class Variant:
    model: str
    format: str
    runtime: str
    precision: str
    spec: zoo.ModelSpec
    unavailable: str | None = None  # why this recipe cannot be built for this model
    converted_from: str | None = None  # "tflite": the same model converted to ONNX (like for like)

    @property
    def id(self) -> str:
        return f"{self.model}-{self.runtime}-{self.precision}"

    def materialize(self) -> Path:
        """The host file of this variant: fetched and verified, or built by its recipe (cached)."""
        return self.build().path

    def build(self) -> recipes.BuiltVariant:
        if self.unavailable:
            raise recipes.RecipeRefused(self.unavailable)
        if self.converted_from == "tflite":
            return recipes.convert_tflite(self.spec)
        calibration = None
        if self.precision == "int8-static":
            from harness.datasets.tasks import TaskError, task_for

            try:
                calibration = task_for(self.model).calibration
            except TaskError as exc:
                raise recipes.RecipeRefused(
                    f"{self.model}: int8-static needs calibration data: {exc}"
                ) from None
        return recipes.build(self.spec, self.precision, calibration)


def variants_for(model: str) -> list[Variant]:
    """Every variant of a zoo model: what can be built, and what cannot (with the reason)."""
    spec = zoo.get(model)
    runtime = RUNTIME_FOR_FORMAT[spec.format]
    if spec.format == "onnx":
        return [
            Variant(spec.name, spec.format, runtime, precision, spec) for precision in recipes.ONNX_PRECISIONS
        ]
    variants = [Variant(spec.name, spec.format, runtime, spec.precision, spec)]
    if spec.name in ONNX_TWINS:  # the same weights in ONNX, for a like-for-like runtime comparison
        twin = recipes.onnx_twin(spec)
        variants.append(
            Variant(spec.name, "onnx", "onnxruntime", spec.precision, twin, converted_from="tflite")
        )
    for precision in ("fp32", "int8-dynamic", "int8-static"):
        reason = recipes.refusal(spec, precision)
        if reason:
            variants.append(Variant(spec.name, spec.format, runtime, precision, spec, reason))
    return variants


def parse_choice(option: str, value: str | None, known: tuple[str, ...]) -> tuple[str, ...] | None:
    """``--runtime``/``--precision``: a comma list of known names, or None for all."""
    if value is None or value.strip() in ("", "all"):
        return None
    chosen = tuple(item.strip() for item in value.split(",") if item.strip())
    unknown = [item for item in chosen if item not in known]
    if unknown:
        raise SelectionError(
            f"{option}: unknown value(s) {', '.join(unknown)} (known: {', '.join(known)}, all)"
        )
    return chosen


def select_variants(
    model: str,
    runtimes: tuple[str, ...] | None,
    precisions: tuple[str, ...] | None,
) -> tuple[list[Variant], str]:
    """Variants of ``model`` allowed by the filters (unavailable ones included: the caller skips
    them with ``variant.unavailable``), and when none is, the reason why."""
    available = variants_for(model)
    chosen = [
        variant
        for variant in available
        if (runtimes is None or variant.runtime in runtimes)
        and (precisions is None or variant.precision in precisions)
    ]
    reason = ""
    if not chosen:
        reason = (
            f"model '{model}' has no variant for runtime {'/'.join(runtimes or ('any',))} "
            f"and precision {'/'.join(precisions or ('any',))} "
            f"(available: {', '.join(v.runtime + '-' + v.precision for v in available if not v.unavailable)})"
        )
    return chosen, reason
