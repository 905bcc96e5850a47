"""Model variants: one model in one format, run by one runtime at one precision.

ONNX models shipped in fp32 come in fp32 (as shipped), fp16, int8-dynamic and int8-static
(harness.models.recipes); int8-static needs calibration data, which whoever builds the variants
gives (the zoo task's real data, or the .npz models.yaml names): without it the variant is listed
as unavailable with the reason. Other models come as shipped; the other precisions are listed as
unavailable with the reason, so a run says why they were skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import SelectionError
from harness.models import recipes, zoo
from harness.models.spec import ModelSpec

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
    spec: ModelSpec
    unavailable: str | None = None  # why this recipe cannot be built for this model
    converted_from: str | None = None  # "tflite": the same model converted to ONNX (like for like)
    calibration: recipes.Calibration | None = None  # int8-static's real data

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
        return recipes.build(self.spec, self.precision, self.calibration)


def _variant(spec: ModelSpec, precision: str, calibration: recipes.Calibration | None) -> Variant:
    runtime = RUNTIME_FOR_FORMAT[spec.format]
    reason = recipes.refusal(spec, precision)
    if reason is None and precision == "int8-static" and precision != spec.precision and calibration is None:
        where = (
            "its task's real data (variants_for(..., calibration=task_for(name).calibration))"
            if spec.origin == "zoo"
            else "set calibration: an .npz of real inputs in its models.yaml entry (never random numbers)"
        )
        reason = f"{spec.name}: int8-static needs calibration data: {where}"
    return Variant(spec.name, spec.format, runtime, precision, spec, reason, calibration=calibration)


def variants_for(
    model: str | ModelSpec,
    *,
    precisions: Sequence[str] | None = None,
    calibration: recipes.Calibration | None = None,
) -> list[Variant]:
    """Every variant of a model: what can be built, and what cannot (with the reason).

    ``precisions`` are the ones models.yaml declares (each listed, refused ones with the reason);
    without them: the zoo's usual set, or for the team's models what the recipes can build from
    what ships (all four for fp32 ONNX, the shipped precision otherwise)."""
    spec = zoo.get(model) if isinstance(model, str) else model
    if precisions is not None:
        return [_variant(spec, precision, calibration) for precision in dict.fromkeys(precisions)]
    if spec.format == "onnx":
        chosen = (
            recipes.ONNX_PRECISIONS if spec.precision == "fp32" or spec.origin == "zoo" else (spec.precision,)
        )
        return [_variant(spec, precision, calibration) for precision in chosen]
    runtime = RUNTIME_FOR_FORMAT[spec.format]
    variants = [Variant(spec.name, spec.format, runtime, spec.precision, spec)]
    if spec.origin == "zoo" and spec.name in ONNX_TWINS:  # the same weights in ONNX, runtime vs runtime
        twin = recipes.onnx_twin(spec)
        variants.append(
            Variant(spec.name, "onnx", "onnxruntime", spec.precision, twin, converted_from="tflite")
        )
    if spec.origin == "zoo":
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
    model: str | ModelSpec | Sequence[Variant],
    runtimes: tuple[str, ...] | None,
    precisions: tuple[str, ...] | None,
) -> tuple[list[Variant], str]:
    """Variants allowed by the filters (unavailable ones included: the caller skips them with
    ``variant.unavailable``), and when none is, the reason why. ``model`` is a zoo name, a spec,
    or the variants a catalog made."""
    available = variants_for(model) if isinstance(model, str | ModelSpec) else list(model)
    name = available[0].model if available else str(model)
    chosen = [
        variant
        for variant in available
        if (runtimes is None or variant.runtime in runtimes)
        and (precisions is None or variant.precision in precisions)
    ]
    reason = ""
    if not chosen:
        reason = (
            f"model '{name}' has no variant for runtime {'/'.join(runtimes or ('any',))} "
            f"and precision {'/'.join(precisions or ('any',))} "
            f"(available: {', '.join(v.runtime + '-' + v.precision for v in available if not v.unavailable)})"
        )
    return chosen, reason
