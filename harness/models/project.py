"""models.yaml: the team's own models, their inputs, data, metric and budgets (pydantic schema).

Errors name the file, the model, the field and the fix, with a did-you-mean for unknown keys, as
devices.yaml's do. Paths are relative to the file's folder. What the schema cannot know (a
corruption or metric name, a tag of the fleet) is checked by the layer that knows it
(harness.catalog); nothing here reads a model file.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness import yamlfile
from harness.errors import ConfigError
from harness.models import zoo

DEFAULT_MODELS_FILE = "models.yaml"
# a project lists tens of models, not megabytes of them (bounded as devices.yaml is: harness.yamlfile)
MODELS_FILE_LIMITS = yamlfile.Limits(max_bytes=1 << 20, max_values=100_000)
PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic", "int8-static")
BUDGET_KEYS = ("latency_p90_ms", "peak_rss_mb", "energy_mj_per_inference", "accuracy_drop_points")
DEFAULT_BUDGET = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FUNCTION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputOverride(_Strict):
    """What to change in one input the model declares (the model's signature is the default)."""

    name: str
    shape: tuple[int, ...] | None = Field(
        default=None, description="every dim; free dims may take any size >= 1"
    )
    dtype: str | None = Field(
        default=None, description="checked against the model's own (a guard, not a cast)"
    )
    low: float | None = Field(default=None, description="real values drawn from [low, high)")
    high: float | None = None
    value: float | None = Field(default=None, description="a constant instead of random values")

    @model_validator(mode="after")
    def _range(self) -> InputOverride:
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"field 'inputs.{self.name}': low {self.low} must be below high {self.high}")
        if self.shape is not None and any(dim < 1 for dim in self.shape):
            raise ValueError(
                f"field 'inputs.{self.name}.shape': every dim must be >= 1 (got {list(self.shape)})"
            )
        return self


class InputData(_Strict):
    """Real inputs for benchmarks: an .npy (one input) or .npz (one array per input name)."""

    data: str


class Preprocess(_Strict):
    """How an image or audio file becomes a model input: ``(pixel * scale - mean) / std``."""

    size: tuple[int, int] | None = Field(default=None, description="[height, width]; default: the input's")
    layout: Literal["NHWC", "NCHW"] | None = None
    color: Literal["RGB", "BGR", "GRAY"] = "RGB"
    scale: float | None = Field(default=None, gt=0, description="default 1/255; 1 for plain integer inputs")
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    sample_rate: int = Field(default=16000, gt=0, description="audio: resampled to this rate")

    @field_validator("std")
    @classmethod
    def _nonzero(cls, value: float | tuple[float, ...]) -> float | tuple[float, ...]:
        values = value if isinstance(value, tuple) else (value,)
        if any(item <= 0 for item in values):
            raise ValueError("field 'dataset.preprocess.std': every value must be > 0")
        return value


class DatasetConfig(_Strict):
    path: str
    format: Literal["npz", "image-folder", "csv"]
    labels: str = Field(default="labels", description="npz: the name of the labels array")
    input: str | None = Field(default=None, description="image-folder/csv: the input the files feed")
    output: str | None = Field(default=None, description="the output built-in metrics read (default: first)")
    classes: tuple[str, ...] | None = Field(default=None, description="class names in output order")
    preprocess: Preprocess | None = None
    limit: int | None = Field(default=None, ge=1, description="use the first N samples only")


class MetricConfig(_Strict):
    name: str
    better: Literal["higher", "lower"] = "higher"


class Budget(_Strict):
    latency_p90_ms: float | None = Field(default=None, gt=0)
    peak_rss_mb: float | None = Field(default=None, gt=0)
    energy_mj_per_inference: float | None = Field(default=None, gt=0)
    accuracy_drop_points: float | None = Field(default=None, ge=0)

    def limits(self) -> dict[str, float]:
        return {key: value for key in BUDGET_KEYS if (value := getattr(self, key)) is not None}


class ProjectModel(_Strict):
    """One entry of models.yaml."""

    name: str
    path: str | None = None
    url: str | None = None
    sha256: str | None = None
    description: str = ""
    inputs: list[InputOverride] | InputData | None = None
    precisions: tuple[Literal["fp32", "fp16", "int8", "int8-dynamic", "int8-static"], ...] | None = None
    calibration: str | None = None
    dataset: DatasetConfig | None = None
    corruptions: tuple[str, ...] | Literal["default"] | None = None
    metric: MetricConfig | None = None
    budgets: dict[str, Budget] | None = None

    @field_validator("sha256", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, int | float):  # YAML reads a hash of digits only as a number
            raise ValueError("field 'sha256': quote it ('...'): YAML reads a hash of digits only as a number")
        return value

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs_shape(cls, value: Any) -> Any:
        if value is None or isinstance(value, list):
            return value
        if isinstance(value, Mapping) and set(value) <= {"data"}:
            return value
        raise ValueError(
            "field 'inputs': give a list of overrides [{name, shape, dtype, low, high, value}] "
            "or {data: FILE.npz} of real inputs"
        )

    @field_validator("metric", mode="before")
    @classmethod
    def _metric_text(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("metric")
    @classmethod
    def _metric_form(cls, value: MetricConfig | None) -> MetricConfig | None:
        if value is not None and ":" in value.name and not _FUNCTION.fullmatch(value.name):
            raise ValueError(
                f"field 'metric': '{value.name}' is not module:function (e.g. mymetrics:wake_rate) "
                "nor a built-in name"
            )
        return value

    @field_validator("budgets", mode="before")
    @classmethod
    def _flat_budgets(cls, value: Any) -> Any:
        """``budgets: {latency_p90_ms: 10}`` is the default block; per tag: ``{default: ..., phone: ...}``."""
        if isinstance(value, Mapping) and value and set(value) <= set(BUDGET_KEYS):
            return {DEFAULT_BUDGET: dict(value)}
        if isinstance(value, Mapping) and set(value) & set(BUDGET_KEYS):
            mixed = sorted(set(value) & set(BUDGET_KEYS))
            raise ValueError(
                f"field 'budgets': {mixed} sit beside tag blocks; put them under 'default:' "
                "(budgets: {default: {...}, TAG: {...}})"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ProjectModel:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of 'path' (a file) or 'url' (with its 'sha256')")
        if self.url is not None:
            if not self.url.startswith(("http://", "https://")):
                raise ValueError(f"field 'url': only http:// and https:// are downloaded (got {self.url!r})")
            if self.sha256 is None:
                raise ValueError(
                    "field 'sha256' is required with 'url' (64 hex digits: `sha256sum FILE`); a URL model "
                    "is downloaded once and verified"
                )
        if self.sha256 is not None and not _HEX64.fullmatch(
            self.sha256.strip().lower().removeprefix("sha256:")
        ):
            raise ValueError(f"field 'sha256': 64 hexadecimal characters (got {self.sha256!r})")
        if self.metric is not None and self.dataset is None:
            raise ValueError("field 'metric' needs a 'dataset' to score (dataset: {path, format})")
        if self.dataset is not None and self.metric is None:
            raise ValueError(
                "field 'dataset' needs a 'metric': top1, top5, exact_match, mse, cosine_vs_fp32 or "
                "module:function"
            )
        if self.corruptions is not None and self.dataset is None:
            raise ValueError("field 'corruptions' needs a 'dataset' to corrupt")
        return self

    def budget_for(self, tags: tuple[str, ...]) -> dict[str, tuple[float, str]]:
        """Each budget that applies to a device with ``tags``: (limit, the block it came from). When
        several blocks apply (default and tags), the strictest limit holds."""
        chosen: dict[str, tuple[float, str]] = {}
        for block, budget in (self.budgets or {}).items():
            if block != DEFAULT_BUDGET and block not in tags:
                continue
            for key, limit in budget.limits().items():
                if key not in chosen or limit < chosen[key][0]:
                    chosen[key] = (limit, block)
        return chosen


class Project:
    """The models of one models.yaml, with the folder their relative paths start from."""

    def __init__(self, models: dict[str, ProjectModel], source: str, folder: Path) -> None:
        self.models = models
        self.source = source
        self.folder = folder

    def names(self) -> list[str]:
        return list(self.models)

    def path_of(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.folder / path


def _fields_of(location: tuple[str, ...]) -> list[str]:
    """Known keys at ``location`` (a path of field names) in a model entry."""
    kinds: dict[str, type[BaseModel]] = {
        "dataset": DatasetConfig,
        "preprocess": Preprocess,
        "metric": MetricConfig,
        "inputs": InputOverride,
    }
    model: type[BaseModel] = ProjectModel
    for part in location:
        if part in kinds:
            model = kinds[part]
        elif model is ProjectModel and part == "budgets":
            model = Budget
    return sorted(name for name in model.model_fields if name != "name" or model is not ProjectModel)


def _explain(source: str, model: str, error: Mapping[str, Any]) -> str:
    location = [str(part) for part in error["loc"] if not isinstance(part, int)]
    location = [
        part for part in location if part not in ("list[InputOverride]", "InputData", "str", "MetricConfig")
    ]
    field = ".".join(location) or "entry"
    where = f"{source}: model '{model}'"
    match error["type"]:
        case "missing":
            return f"{where}: field '{field}' is required"
        case "extra_forbidden":
            known = _fields_of(tuple(location[:-1]))
            close = difflib.get_close_matches(location[-1], known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
            return f"{where}: unknown field '{field}' ({hint})"
        case "value_error":  # our own validators name the field themselves
            return f"{where}: {error['ctx']['error']}"
        case "literal_error":
            return f"{where}: field '{field}': {error['msg']} (got {error.get('input')!r})"
        case "string_type" if isinstance(error.get("input"), bool):
            return (
                f"{where}: field '{field}': {error['msg']} (got {error.get('input')!r}: YAML reads "
                'yes/no/on/off/true/false as booleans; quote it, e.g. "yes")'
            )
        case _:
            return f"{where}: field '{field}': {error['msg']} (got {error.get('input')!r})"


def parse_model(name: str, raw: object, source: str = DEFAULT_MODELS_FILE) -> ProjectModel:
    """Validate one entry of ``models``; ``name`` is its key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: model '{name}': expected a mapping of fields, got {type(raw).__name__}")
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{source}: model '{name}': a name is 1-64 letters, digits, '_', '.' or '-' (it goes into test "
            "ids and file names); rename it"
        )
    if name in {spec.name for spec in zoo.all_models()}:
        raise ConfigError(
            f"{source}: model '{name}' has the name of a zoo model; rename it (the zoo's '{name}' stays "
            "addressable by that name)"
        )
    data = dict(raw)
    if "name" in data and data["name"] != name:
        raise ConfigError(f"{source}: model '{name}': field 'name' must match its key or be omitted")
    data["name"] = name
    try:
        return ProjectModel.model_validate(data)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_explain(source, name, err) for err in exc.errors()))
        raise ConfigError("\n".join(problems)) from None


def load_project(path: str | os.PathLike[str]) -> Project:
    """Read and validate a models.yaml."""
    file = Path(path)
    source = str(path)
    if not file.is_file():
        raise ConfigError(f"{source}: file not found (pass --models-file with an existing file)")
    document = yamlfile.load(file, source, MODELS_FILE_LIMITS)
    if document is None:
        document = {}
    if not isinstance(document, Mapping) or not isinstance(document.get("models", {}), Mapping):
        raise ConfigError(f"{source}: expected a top-level mapping 'models: {{NAME: {{path: ...}}}}'")
    unknown = sorted(set(document) - {"models"})
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), ["models"], n=1)
        hint = " (did you mean 'models'?)" if close else ""
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}{hint}; only 'models' is read")
    entries: Mapping[str, object] = document.get("models") or {}
    models = {str(name): parse_model(str(name), raw, source) for name, raw in entries.items()}
    return Project(models, source, file.resolve().parent)
