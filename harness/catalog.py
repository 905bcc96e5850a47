"""Every model a run can name, with what it needs beyond its bytes: variants with their calibration,
the evaluation (the zoo's task or the team's dataset and metric), benchmark inputs and budgets.

It sits above models/ and datasets/ and joins them: a zoo model is calibrated on its task's real
data, a models.yaml model on its ``calibration:`` file; neither of those layers imports the other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness import cachefile
from harness.datasets import metrics
from harness.datasets.tasks import Task, TaskError, task_for
from harness.datasets.userdata import DatasetTask, parse_corruption
from harness.errors import ConfigError, DataError, EdgeLabError, ModelError
from harness.models import zoo
from harness.models.inputs import write_inputs
from harness.models.project import DEFAULT_MODELS_FILE, Project, ProjectModel, load_project
from harness.models.recipes import Calibration
from harness.models.resolve import NpzCalibration, ResolvedModel, Resolver, model_ready, sample_view
from harness.models.spec import ModelSpec
from harness.models.variants import Variant, select_variants, variants_for


class NoEvaluation(TaskError):
    """The model has no data to evaluate on: ``edge.evaluate()`` skips with this reason."""


class Catalog:
    """The zoo, the project's models.yaml and model files, resolved once per run."""

    def __init__(self, rootdir: Path | None = None, models_file: Path | None = None) -> None:
        self.rootdir = (rootdir or Path.cwd()).resolve()
        self.project: Project | None = None
        if models_file is not None:
            self.project = load_project(models_file)
            self._check_project(self.project)
        self.resolver = Resolver(self.rootdir, self.project)
        self._by_name: dict[str, ResolvedModel] = {}
        self._variants: dict[str, list[Variant]] = {}
        self._tasks: dict[str, Task] = {}

    @classmethod
    def for_rootdir(cls, rootdir: Path, models_file: str | Path | None = None) -> Catalog:
        """``models_file`` as given (missing: an error), else models.yaml in the rootdir if any."""
        if models_file is not None:
            return cls(rootdir, Path(models_file))
        default = rootdir / DEFAULT_MODELS_FILE
        return cls(rootdir, default if default.is_file() else None)

    def _check_project(self, project: Project) -> None:
        """What the schema cannot know: corruption and metric names (datasets/ knows them)."""
        for name, entry in project.models.items():
            where = f"{project.source}: model '{name}'"
            if isinstance(entry.corruptions, tuple):
                try:
                    for corruption in entry.corruptions:
                        parse_corruption(corruption, where)
                except DataError as exc:
                    raise ConfigError(str(exc)) from None
            if (
                entry.metric is not None
                and ":" not in entry.metric.name
                and entry.metric.name not in metrics.BUILTIN
            ):
                import difflib

                close = difflib.get_close_matches(entry.metric.name, metrics.BUILTIN, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(
                    f"{where}: field 'metric': unknown metric '{entry.metric.name}'{hint}; give one of "
                    f"{', '.join(metrics.BUILTIN)} or module:function"
                )

    # -- models and variants -------------------------------------------------------------------

    def model(self, reference: str) -> ResolvedModel:
        resolved = self.resolver.resolve(reference)
        known = self._by_name.get(resolved.name)
        if known is not None and known.spec.sha256 != resolved.spec.sha256 and known.path != resolved.path:
            raise ModelError(
                f"model '{resolved.name}': two different models take this name in one run ({known.path} and "
                f"{resolved.path}); rename one file or name them in models.yaml"
            )
        self._by_name[resolved.name] = resolved
        return resolved

    def by_name(self, name: str) -> ResolvedModel | None:
        """A model this run resolved (any reference), or a zoo or models.yaml name."""
        if name not in self._by_name:
            try:
                self.model(name)
            except EdgeLabError:
                return None
        return self._by_name.get(name)

    def variants(self, reference: str) -> list[Variant]:
        """The model's variants, int8-static calibrated on real data when there is some."""
        resolved = self.model(reference)
        if resolved.name not in self._variants:
            entry = resolved.entry
            calibration: Calibration | None = None
            if resolved.calibration_file is not None:
                try:
                    calibration = NpzCalibration(
                        resolved.calibration_file, resolved.spec.inputs, resolved.where
                    )
                except ModelError as exc:
                    raise ConfigError(f"{self._source()}: {exc}") from None
            elif resolved.spec.origin == "zoo":
                try:
                    calibration = task_for(resolved.name).calibration
                except TaskError:
                    calibration = None
            precisions = entry.precisions if entry is not None else None
            self._variants[resolved.name] = variants_for(
                resolved.spec, precisions=precisions, calibration=calibration
            )
        return self._variants[resolved.name]

    def select(
        self, reference: str, runtimes: tuple[str, ...] | None, precisions: tuple[str, ...] | None
    ) -> tuple[list[Variant], str]:
        return select_variants(self.variants(reference), runtimes, precisions)

    def _source(self) -> str:
        return self.project.source if self.project is not None else DEFAULT_MODELS_FILE

    # -- what a variant is measured with --------------------------------------------------------

    def entry(self, variant: Variant) -> ProjectModel | None:
        resolved = self.by_name(variant.model)
        return (
            resolved.entry if resolved is not None and resolved.spec.sha256 == variant.spec.sha256 else None
        )

    def benchmark_inputs(self, variant: Variant, cache: Path) -> Path:
        """The team's real inputs (models.yaml ``inputs: {data: ...}``, checked and made model-ready
        once), else deterministic synthetic ones from the model's inputs, cached by content."""
        resolved = self.by_name(variant.model)
        data = (
            resolved.inputs_data
            if resolved is not None and resolved.spec.sha256 == variant.spec.sha256
            else None
        )
        if data is not None and resolved is not None:
            return self._prepared_data(resolved, data, cache)
        spec = variant.spec
        shapes = hashlib.sha256(repr(spec.inputs).encode()).hexdigest()[:8]
        destination = cache / "inputs" / f"{spec.sha256[:16]}-{shapes}-b1-s0.npz"
        # checked against the sha256 recorded when they were made (made again when they differ)
        cachefile.ensure(destination, lambda path: write_inputs(spec.inputs, path, batch=1, seed=0))
        return destination

    def _prepared_data(self, resolved: ResolvedModel, data: Path, cache: Path) -> Path:
        import numpy as np

        content = f"{cachefile.sha256_file(data)}{resolved.spec.inputs!r}"
        key = hashlib.sha256(content.encode()).hexdigest()[:16]
        destination = cache / "inputs" / f"{resolved.spec.sha256[:16]}-data-{key}.npz"
        if cachefile.verified(destination):
            return destination
        where = f"{self._source()}: {resolved.where}: inputs.data {data}"
        try:
            if data.suffix == ".npy":
                if len(resolved.spec.inputs) != 1:
                    raise DataError(
                        f"{where}: an .npy feeds a single-input model; store an .npz keyed by input name"
                    )
                given = {resolved.spec.inputs[0].name: np.load(data, allow_pickle=False)}
            else:
                with np.load(data, allow_pickle=False) as archive:
                    given = {name: archive[name] for name in archive.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"{where}: not a readable .npy/.npz ({exc})") from None
        wanted = [item.name for item in resolved.spec.inputs]
        if sorted(given) != sorted(wanted):
            raise DataError(f"{where}: arrays {sorted(given)} do not match the model's inputs {wanted}")
        arrays = {}
        for item in resolved.spec.inputs:
            try:
                arrays[item.name] = model_ready(sample_view(given[item.name], item, where), item, where)
            except ModelError as exc:
                raise DataError(str(exc)) from None
        if len({array.shape[0] for array in arrays.values()}) != 1:
            raise DataError(f"{where}: the arrays hold different sample counts; one count for every input")
        with cachefile.locked(destination):
            cachefile.build(destination, lambda path: np.savez(path, **arrays))  # type: ignore[arg-type]
        return destination

    def evaluation(self, variant: Variant, cache: Path) -> Task:
        """The zoo model's task, or the team's dataset with its metric; NoEvaluation when there is
        none (``edge.evaluate()`` skips with the reason)."""
        resolved = self.by_name(variant.model)
        if resolved is None or resolved.spec.origin == "zoo":
            try:
                return task_for(variant.model)
            except TaskError as exc:
                raise NoEvaluation(str(exc)) from None
        entry = resolved.entry
        if entry is None or entry.dataset is None or entry.metric is None:
            name = (
                f"'{resolved.name}' in models.yaml"
                if entry is not None
                else f"the file {resolved.path} in models.yaml"
            )
            raise NoEvaluation(
                f"model '{resolved.name}' has no dataset to evaluate on: declare {name} with "
                "dataset: {path, format} and metric: (docs/models-yaml.md)"
            )
        if resolved.name not in self._tasks:
            assert self.project is not None
            where = f"{self.project.source}: model '{resolved.name}'"
            metric = metrics.load(
                entry.metric.name,
                lower_is_better=entry.metric.better == "lower",
                output=entry.dataset.output,
                rootdir=self.rootdir,
                where=where,
            )
            self._tasks[resolved.name] = DatasetTask(
                resolved.spec,
                entry.dataset,
                metric,
                folder=self.project.folder,
                cache=cache,
                declared=entry.corruptions,
                where=where,
            )
        return self._tasks[resolved.name]

    def fp32_variant(self, variant: Variant) -> tuple[Variant | None, str]:
        """The variant whose host run is the accuracy reference, or (None, why there is none)."""
        siblings = self._variants.get(variant.model)
        if siblings is None:
            try:
                siblings = self.variants(variant.model)
            except EdgeLabError:  # a variant made outside this catalog: only itself is known
                siblings = [variant]
        for sibling in siblings:
            if sibling.precision == "fp32" and sibling.unavailable is None and sibling.converted_from is None:
                return sibling, ""
        spec: ModelSpec = variant.spec
        return None, (
            f"{variant.model} ships {spec.precision} {spec.format} and has no fp32 variant to compare with "
            "(the drop against fp32 needs the fp32 model: give it as its own file)"
        )

    def describe(self) -> list[ResolvedModel]:
        """The project's models, resolved (every file read, URL models downloaded)."""
        return [self.model(name) for name in (self.project.names() if self.project is not None else [])]

    def zoo_specs(self) -> list[ModelSpec]:
        return zoo.all_models()
