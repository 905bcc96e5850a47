"""What a model is to EdgeLab, wherever it comes from: its bytes' source, format, precision, inputs.

A zoo entry, a models.yaml entry and a file named by path all become one ``ModelSpec``; nothing
here reads a file (harness.models.signature does) or fetches one (harness.models.files does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import urlparse

Format = Literal["onnx", "tflite"]
Origin = Literal["zoo", "file", "models.yaml"]
INTEGER_KINDS = ("i", "u")


@dataclass(frozen=True)
class InputSpec:
    """One model input and how to synthesise a valid value for it.

    ``low``/``high`` are real values: for a quantized input (``scale`` set) they are mapped to the
    tensor's integers through ``scale`` and ``zero_point``, so the model sees the range it was
    calibrated on, not arbitrary integers."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    fill: Literal["uniform", "normal", "constant"] = "uniform"
    low: float = 0.0
    high: float = 1.0
    value: float = 0.0
    scale: float | None = None  # quantized: real = scale * (stored - zero_point)
    zero_point: int | None = None
    dynamic: tuple[int, ...] = ()  # axes the model leaves free (set to 1 unless overridden)

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale > 0


@dataclass(frozen=True)
class OutputSpec:
    """One model output; quantized outputs are turned back into real values before scoring."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale > 0


@dataclass(frozen=True)
class WheelSource:
    """A member of a PyPI wheel, fetched with ``pip download --no-deps`` (the zoo)."""

    distribution: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def filename(self) -> str:
        return PurePosixPath(self.member).name

    def describe(self) -> str:
        return f"wheel {self.requirement}:{self.member}"


@dataclass(frozen=True)
class FileSource:
    """The team's own file on this host."""

    path: Path

    @property
    def filename(self) -> str:
        return self.path.name

    def describe(self) -> str:
        return f"file {self.path}"


@dataclass(frozen=True)
class UrlSource:
    """A file downloaded once into the cache and verified against its sha256."""

    url: str

    @property
    def filename(self) -> str:
        return PurePosixPath(urlparse(self.url).path).name or "model"

    def describe(self) -> str:
        return f"url {self.url}"


Source = WheelSource | FileSource | UrlSource


def source_kind(source: Source) -> Literal["wheel", "file", "url"]:
    if isinstance(source, WheelSource):
        return "wheel"
    return "file" if isinstance(source, FileSource) else "url"


@dataclass(frozen=True)
class ModelSpec:
    """A model: where its bytes come from, what they are, and what it eats."""

    name: str
    format: Format
    precision: str  # as shipped, read from the weights: fp32, fp16 or int8
    sha256: str
    size_bytes: int
    inputs: tuple[InputSpec, ...]
    source: Source
    task: str = ""
    description: str = ""
    license: str = ""
    outputs: tuple[OutputSpec, ...] = ()
    origin: Origin = "zoo"

    @property
    def filename(self) -> str:
        return self.source.filename
