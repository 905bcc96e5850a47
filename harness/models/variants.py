"""Model variants: one model in one format, run by one runtime at one precision.

Today a variant is the model as its wheel ships it; quantization recipes add more variants of
the same model here, and nothing above this module needs to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import SelectionError
from harness.models import zoo

RUNTIME_FOR_FORMAT = {"onnx": "onnxruntime", "tflite": "litert"}
KNOWN_RUNTIMES = ("onnxruntime", "litert")
KNOWN_PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic", "int8-static")


@dataclass(frozen=True)
class Variant:
    model: str
    format: str
    runtime: str
    precision: str
    spec: zoo.ModelSpec

    @property
    def id(self) -> str:
        return f"{self.model}-{self.runtime}-{self.precision}"

    def materialize(self) -> Path:
        """The host file of this variant, fetched and verified."""
        return zoo.fetch(self.spec)


def variants_for(model: str) -> list[Variant]:
    """Every variant of a zoo model that EdgeLab can build today."""
    spec = zoo.get(model)
    return [Variant(spec.name, spec.format, RUNTIME_FOR_FORMAT[spec.format], spec.precision, spec)]


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
    """Variants of ``model`` allowed by the filters, and when none is, the reason why."""
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
            f"(available: {', '.join(v.runtime + '-' + v.precision for v in available)})"
        )
    return chosen, reason
