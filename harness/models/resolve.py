"""The one place a model reference becomes a model: a zoo name, a models.yaml name or a file path.

A path is relative to the rootdir (absolute as given); its format, inputs, outputs and precision
come from its bytes (harness.models.signature), its name from its stem. A path that a models.yaml
entry names resolves to that entry (its inputs, data and budgets apply). Input overrides are
checked against the model's signature here, before any device is touched.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import cachefile
from harness.errors import ConfigError, ModelError
from harness.models import files, signature, zoo
from harness.models.inputs import quantize
from harness.models.project import InputData, InputOverride, Project, ProjectModel
from harness.models.spec import FileSource, InputSpec, ModelSpec, UrlSource

MODEL_SUFFIXES = (".tflite", ".onnx")


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to make variants of: its spec (overrides applied), its host file when known
    (None: a zoo model not fetched yet), and what models.yaml says about it."""

    spec: ModelSpec
    path: Path | None
    entry: ProjectModel | None = None
    inputs_data: Path | None = None  # real benchmark inputs (models.yaml inputs: {data: ...})
    calibration_file: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def where(self) -> str:
        """How errors name this model: its models.yaml entry, or its file."""
        if self.entry is not None:
            return f"model '{self.name}'"
        return f"model file {self.path}" if self.path is not None else f"model '{self.name}'"


def looks_like_path(reference: str) -> bool:
    return "/" in reference or "\\" in reference or reference.lower().endswith(MODEL_SUFFIXES)


def _close(name: str, known: Sequence[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1)
    return f" Did you mean '{match[0]}'?" if match else ""


class Resolver:
    """Resolves references for one run; each file is read (and hashed) once."""

    def __init__(self, rootdir: Path, project: Project | None = None) -> None:
        self.rootdir = rootdir
        self.project = project
        self._resolved: dict[str, ResolvedModel] = {}
        self._entry_paths: dict[Path, str] | None = None

    def resolve(self, reference: str) -> ResolvedModel:
        if reference not in self._resolved:
            self._resolved[reference] = self._resolve(reference)
        return self._resolved[reference]

    def _resolve(self, reference: str) -> ResolvedModel:
        project_names = self.project.names() if self.project is not None else []
        if self.project is not None and reference in self.project.models:
            return self.resolve_entry(self.project.models[reference])
        zoo_names = [spec.name for spec in zoo.all_models()]
        if reference in zoo_names:
            return ResolvedModel(zoo.get(reference), None)
        if looks_like_path(reference) or (self.rootdir / reference).is_file():
            return self._resolve_path(reference)
        known = ", ".join([*zoo_names, *project_names])
        where = f"; models.yaml: {self.project.source}" if self.project is not None else ""
        raise ModelError(
            f"unknown model '{reference}' (zoo models and project models: "
            f"{known}{where}).{_close(reference, [*zoo_names, *project_names])} "
            "Name one of them, or give the path of a .tflite or .onnx file"
        )

    def _resolve_path(self, reference: str) -> ResolvedModel:
        path = Path(reference).expanduser()
        path = path if path.is_absolute() else self.rootdir / path
        if not path.is_file():
            raise ModelError(
                f"model file '{reference}' not found (looked at {path}; relative paths start at the rootdir "
                f"{self.rootdir}); check the path"
            )
        entry_name = self._entries_by_path().get(path.resolve())
        if entry_name is not None and self.project is not None:
            return self.resolve_entry(self.project.models[entry_name])
        name = path.stem
        if name in {spec.name for spec in zoo.all_models()}:
            raise ModelError(
                f"model file {path}: its stem '{name}' is the name of a zoo model, and results would mix "
                "with the zoo's; rename the file or give it another name in models.yaml"
            )
        if self.project is not None and name in self.project.models:
            raise ModelError(
                f"model file {path}: its stem '{name}' names another model in {self.project.source}; rename "
                "the file or refer to the entry by its name"
            )
        described = signature.read(path)
        spec = ModelSpec(
            name=name,
            format=described.format,
            precision=described.precision,
            sha256=described.sha256,
            size_bytes=described.size_bytes,
            inputs=described.inputs,
            outputs=described.outputs,
            source=FileSource(path),
            origin="file",
        )
        return ResolvedModel(spec, path)

    def _entries_by_path(self) -> dict[Path, str]:
        if self._entry_paths is None:
            self._entry_paths = {}
            if self.project is not None:
                for name, entry in self.project.models.items():
                    if entry.path is not None:
                        self._entry_paths[self.project.path_of(entry.path).resolve()] = name
        return self._entry_paths

    def resolve_entry(self, entry: ProjectModel) -> ResolvedModel:
        """A models.yaml entry: its file (downloaded once for ``url:``), signature and overrides."""
        project = self.project
        assert project is not None
        where = f"{project.source}: model '{entry.name}'"
        if entry.url is not None:
            assert entry.sha256 is not None
            source: FileSource | UrlSource = UrlSource(entry.url)
            path = files.fetch_url(entry.url, entry.sha256, source.filename, entry.name)
        else:
            assert entry.path is not None
            path = project.path_of(entry.path)
            if not path.is_file():
                raise ConfigError(f"{where}: field 'path': {path} not found; check the path")
            source = FileSource(path)
        try:
            described = signature.read(path)
        except ModelError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if entry.sha256 is not None and entry.url is None:
            pinned = entry.sha256.strip().lower().removeprefix("sha256:")
            if described.sha256 != pinned:
                raise ConfigError(
                    f"{where}: field 'sha256': {path} has sha256 {described.sha256}, not {pinned}; update "
                    "the "
                    "pin if the model was meant to change"
                )
        inputs = described.inputs
        inputs_data = None
        if isinstance(entry.inputs, list):
            inputs = apply_overrides(described.inputs, entry.inputs, described.signature, where)
        elif isinstance(entry.inputs, InputData):
            inputs_data = project.path_of(entry.inputs.data)
            if not inputs_data.is_file():
                raise ConfigError(f"{where}: field 'inputs.data': {inputs_data} not found; check the path")
        calibration = None
        if entry.calibration is not None:
            calibration = project.path_of(entry.calibration)
            if not calibration.is_file():
                raise ConfigError(f"{where}: field 'calibration': {calibration} not found; check the path")
        spec = ModelSpec(
            name=entry.name,
            format=described.format,
            precision=described.precision,
            sha256=described.sha256,
            size_bytes=described.size_bytes,
            inputs=inputs,
            outputs=described.outputs,
            source=source,
            description=entry.description,
            origin="models.yaml",
        )
        return ResolvedModel(spec, path, entry, inputs_data, calibration)


def apply_overrides(
    inputs: Sequence[InputSpec],
    overrides: Sequence[InputOverride],
    signatures: dict[str, tuple[int | None, ...] | None],
    where: str,
) -> tuple[InputSpec, ...]:
    """The model's inputs with the team's overrides; an override the model cannot take (an unknown
    name, another rank, a fixed dim changed, another dtype) is refused naming the input."""
    by_name = {item.name: item for item in inputs}
    seen: set[str] = set()
    for override in overrides:
        if override.name not in by_name:
            raise ConfigError(
                f"{where}: field 'inputs': the model has no input '{override.name}' (its inputs: "
                f"{', '.join(by_name)}).{_close(override.name, list(by_name))}"
            )
        if override.name in seen:
            raise ConfigError(f"{where}: field 'inputs': '{override.name}' is overridden twice; keep one")
        seen.add(override.name)
        by_name[override.name] = _override(
            by_name[override.name], override, signatures.get(override.name), where
        )
    return tuple(by_name[item.name] for item in inputs)


def _override(
    item: InputSpec, override: InputOverride, dims: tuple[int | None, ...] | None, where: str
) -> InputSpec:
    field = f"inputs.{item.name}"
    changes: dict[str, Any] = {}
    if override.dtype is not None and np.dtype(override.dtype).name != item.dtype:
        raise ConfigError(
            f"{where}: field '{field}.dtype': the model takes {item.dtype}, not {override.dtype}; inputs "
            "are fed "
            "in the model's own dtype (fix the dtype, or the model)"
        )
    if override.shape is not None:
        wanted = tuple(override.shape)
        if dims is not None:
            if len(wanted) != len(dims):
                raise ConfigError(
                    f"{where}: field '{field}.shape': the model refuses {list(wanted)}: it takes "
                    f"{len(dims)} dims "
                    f"{_dims_text(dims)}, not {len(wanted)}"
                )
            fixed = [
                f"dim {axis} is {dim}"
                for axis, (dim, got) in enumerate(zip(dims, wanted, strict=True))
                if dim is not None and dim != got
            ]
            if fixed:
                raise ConfigError(
                    f"{where}: field '{field}.shape': the model refuses {list(wanted)}: {', '.join(fixed)} "
                    "in its "
                    f"signature {_dims_text(dims)}; only free dims (?) can take another size"
                )
        changes["shape"] = wanted
    if override.low is not None:
        changes["low"] = override.low
    if override.high is not None:
        changes["high"] = override.high
    low, high = changes.get("low", item.low), changes.get("high", item.high)
    if low >= high:
        raise ConfigError(f"{where}: field '{field}': low {low} must be below high {high}")
    if override.value is not None:
        changes |= {"fill": "constant", "value": override.value}
    elif override.low is not None or override.high is not None:
        changes["fill"] = "uniform"
    return dataclasses.replace(item, **changes)


def _dims_text(dims: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in dims) + "]"


# -- real arrays against the model's inputs ---------------------------------------------------------


def sample_view(array: np.ndarray, item: InputSpec, what: str) -> np.ndarray:
    """``array`` (sample axis first) as samples of ``item``: the model's own batch axis may be left
    out when it is 1 or free (it becomes 1). Refused, naming ``what``, when the shapes cannot match."""
    expected = item.shape
    given = got = tuple(array.shape[1:])
    if array.ndim == 0:
        raise ModelError(f"{what}: a 0-d array; put the sample axis first ({len(expected) + 1} dims)")
    if len(got) == len(expected) - 1 and (expected[:1] == (1,) or 0 in item.dynamic):
        array = np.expand_dims(array, 1)
        got = (1, *got)
    free = set(item.dynamic)
    mismatch = len(got) != len(expected) or any(
        axis not in free and want != have
        for axis, (want, have) in enumerate(zip(expected, got, strict=False))
    )
    if mismatch:
        raise ModelError(
            f"{what}: {array.shape[0]} samples of shape {list(given)}, but input '{item.name}' takes "
            f"{_dims_text(tuple(None if a in free else d for a, d in enumerate(expected)))} per sample "
            "(sample axis first; the model's batch axis may be left out when it is 1 or free)"
        )
    return array


def model_ready(array: np.ndarray, item: InputSpec, what: str) -> np.ndarray:
    """Values of ``array`` in the input's dtype: real values are quantized for a quantized input;
    floats are never silently truncated into a plain integer input."""
    target = np.dtype(item.dtype)
    if array.dtype == target:
        return array
    if item.quantized and target.kind in ("i", "u") and array.dtype.kind == "f":
        return quantize(array, item)
    if target.kind == "f" and array.dtype.kind in ("f", "i", "u", "b"):
        return array.astype(target)
    if target.kind in ("i", "u") and array.dtype.kind in ("i", "u"):
        return array.astype(target)
    raise ModelError(
        f"{what}: {array.dtype.name} values for input '{item.name}', which takes {item.dtype}; store "
        f"{item.dtype} (or real values as float for a quantized input)"
    )


class NpzCalibration:
    """int8-static calibration from the team's .npz of real inputs: one feed per sample, in the
    model's input dtypes; checked against the inputs when made, so a bad file fails early."""

    def __init__(self, path: Path, inputs: Sequence[InputSpec], where: str) -> None:
        self.path = path
        self.inputs = tuple(inputs)
        self.where = where
        self.count = self.check()
        self.key = cachefile.sha256_file(path)  # keys the cached int8-static variant by its data too

    def check(self) -> int:
        """The number of samples, after checking every array against the inputs."""
        with np.load(self.path, allow_pickle=False) as archive:
            names = set(archive.files)
            wanted = {item.name for item in self.inputs}
            if names != wanted:
                raise ModelError(
                    f"{self.where}: calibration {self.path}: arrays {sorted(names)} do not match the "
                    "model's inputs "
                    f"{sorted(wanted)}; store one array per input name"
                )
            counts = set()
            for item in self.inputs:
                view = sample_view(
                    archive[item.name], item, f"{self.where}: calibration {self.path}: '{item.name}'"
                )
                counts.add(view.shape[0])
        if len(counts) != 1 or 0 in counts:
            raise ModelError(
                f"{self.where}: calibration {self.path}: arrays hold {sorted(counts)} samples; give one count"
            )
        return int(counts.pop())

    def __call__(self) -> Iterator[dict[str, Any]]:
        with np.load(self.path, allow_pickle=False) as archive:
            arrays = {item.name: sample_view(archive[item.name], item, self.where) for item in self.inputs}
            for index in range(self.count):
                yield {
                    item.name: np.ascontiguousarray(model_ready(arrays[item.name][index], item, self.where))
                    for item in self.inputs
                }
