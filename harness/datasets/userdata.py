"""The team's datasets as evaluation tasks: ``npz`` (model-ready arrays and labels), ``image-folder``
(one sub-folder per class) and ``csv`` (a manifest of files and labels), scored by their metric.

Samples are built one at a time into memory-mapped arrays under the cache (and reused while the
data, the model's inputs and the options are unchanged), so the host's memory stays bounded by a
sample, not the dataset. Corruptions apply to images and ``.wav`` audio before preprocessing; an
npz holds model-ready tensors, which no corruption applies to.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import wave
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.datasets import metrics as metric_functions
from harness.datasets import npzfile
from harness.datasets.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from harness.datasets.tasks import AFFINE_OFFSET, AFFINE_SCALE, CLEAN, EvalSet, Task, slice_name
from harness.errors import DataError, ModelError
from harness.models import resolve
from harness.models.inputs import dequantize, integer_range, synthetic
from harness.models.project import DatasetConfig, Preprocess
from harness.models.spec import InputSpec, ModelSpec

USERDATA_VERSION = 1  # bump when loading or preprocessing changes: cached sets are rebuilt
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
AUDIO_SUFFIXES = (".wav",)
DEFAULT_CORRUPTIONS = {
    "image": ("gaussian_noise", "motion_blur", "low_light", "jpeg", "pixelate"),
    "audio": ("noise_snr", "clipping", "gain", "reverb", "packet_loss"),
}


def sample_view(array: np.ndarray, item: InputSpec, what: str) -> np.ndarray:
    try:
        return resolve.sample_view(array, item, what)
    except ModelError as exc:  # the data does not fit: the test fails in one line
        raise DataError(str(exc)) from None


def model_ready(array: np.ndarray, item: InputSpec, what: str) -> np.ndarray:
    try:
        return resolve.model_ready(array, item, what)
    except ModelError as exc:
        raise DataError(str(exc)) from None


class RepeatedLabels(Sequence[Any]):
    """The base labels once per slice, without copying them per slice."""

    def __init__(self, base: np.ndarray, slices: int) -> None:
        self.base = base
        self.slices = slices

    def __len__(self) -> int:
        return len(self.base) * self.slices

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= position < len(self):
            raise IndexError(index)
        return self.base[position % len(self.base)]


def parse_corruption(entry: str, where: str) -> tuple[str, int | None]:
    """``name`` or ``name@severity`` -> (name, severity or None for every severity asked)."""
    name, _, level = entry.partition("@")
    if name not in CORRUPTIONS:
        import difflib

        close = difflib.get_close_matches(name, list(CORRUPTIONS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(CORRUPTIONS)}"
        raise DataError(f"{where}: field 'corruptions': unknown corruption '{name}' ({hint})")
    if not level:
        return name, None
    if not level.isdigit() or int(level) not in SEVERITIES:
        raise DataError(f"{where}: field 'corruptions': '{entry}': the severity after @ is 1-5")
    return name, int(level)


@dataclass(frozen=True)
class _Sample:
    """One raw sample: a file to load, or an index into npz arrays; and its label."""

    label: Any
    file: Path | None = None
    index: int | None = None


class DatasetTask(Task):
    """Accuracy on the team's declared dataset with the team's metric."""

    calibration_scale = 0  # the team's int8-static data comes from models.yaml calibration:, never here

    def __init__(
        self,
        spec: ModelSpec,
        config: DatasetConfig,
        metric: metric_functions.Metric,
        *,
        folder: Path,
        cache: Path,
        declared: Sequence[str] | str | None,
        where: str,
    ) -> None:
        super().__init__(spec)
        self.config = config
        self.metric_spec = metric
        self.metric = metric.name
        self.lower_is_better = frozenset({metric.name} if metric.lower_is_better else ())
        self.path = folder / config.path if not Path(config.path).is_absolute() else Path(config.path)
        self.cache = cache
        self.where = where
        self.name = f"{config.format} {config.path}"
        if not self.path.exists():
            raise DataError(f"{where}: field 'dataset.path': {self.path} not found; check the path")
        self._samples: list[_Sample] | None = None
        self._arrays: dict[str, np.ndarray] | None = None
        self.kind = self._kind()
        if declared == "default":
            self.default_corruptions = DEFAULT_CORRUPTIONS.get(self.kind, ())
        else:
            self.default_corruptions = tuple(declared or ())
        if self.default_corruptions and self.kind not in DEFAULT_CORRUPTIONS:
            raise DataError(
                f"{where}: field 'corruptions': an {config.format} dataset holds model-ready tensors, "
                "which no "
                "corruption applies to; corrupt images (image-folder, csv of images) or .wav audio (csv)"
            )
        self.target = self._target_input()

    def limited(self, count: int) -> DatasetTask:
        """The same dataset cut to its first ``count`` samples (a quick check of data and metric)."""
        import copy

        cut = copy.copy(self)
        cut.config = self.config.model_copy(update={"limit": count})
        cut._samples = self.samples()[:count]
        return cut

    # -- what the data is --------------------------------------------------------------------

    def _kind(self) -> str:
        if self.config.format == "npz":
            return "tensor"
        if self.config.format == "image-folder":
            return "image"
        kinds = {self._file_kind(sample.file) for sample in self.samples() if sample.file is not None}
        if len(kinds) > 1:
            raise DataError(f"{self.where}: {self.path}: mixes {sorted(kinds)} files; one kind per dataset")
        return kinds.pop() if kinds else "tensor"

    def _file_kind(self, file: Path) -> str:
        suffix = file.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            return "image"
        if suffix in AUDIO_SUFFIXES:
            return "audio"
        if suffix == ".npy":
            return "tensor"
        raise DataError(
            f"{self.where}: {self.path}: {file.name}: unknown file kind '{suffix}' (images "
            f"{', '.join(IMAGE_SUFFIXES)}, audio .wav, or a model-ready .npy)"
        )

    def _target_input(self) -> InputSpec:
        """The input the files feed (image-folder, csv); npz feeds every input by name."""
        inputs = {item.name: item for item in self.spec.inputs}
        if self.config.input is not None:
            if self.config.input not in inputs:
                raise DataError(
                    f"{self.where}: field 'dataset.input': the model has no input '{self.config.input}' "
                    f"(its inputs: {', '.join(inputs)})"
                )
            return inputs[self.config.input]
        if len(inputs) > 1 and self.config.format != "npz":
            raise DataError(
                f"{self.where}: field 'dataset.input': the model has inputs {', '.join(inputs)}; name the "
                "one "
                "the files feed (the others get their synthetic values)"
            )
        return self.spec.inputs[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """The npz's arrays, memory-mapped, checked against the inputs and the labels."""
        if self._arrays is None:
            found = npzfile.open_arrays(self.path, self.cache / "datasets")
            wanted = [item.name for item in self.spec.inputs]
            missing = [name for name in wanted if name not in found]
            extra = [name for name in found if name not in (*wanted, self.config.labels)]
            if missing or extra:
                raise DataError(
                    f"{self.where}: dataset {self.path}: arrays {sorted(found)} do not match the model's "
                    "inputs "
                    f"{wanted} plus '{self.config.labels}'"
                    + (f" (missing: {', '.join(missing)})" if missing else "")
                    + (f" (not inputs: {', '.join(extra)})" if extra else "")
                    + "; store one array per input name, sample axis first, and the labels"
                )
            arrays = {
                item.name: sample_view(
                    found[item.name], item, f"{self.where}: dataset {self.path}: '{item.name}'"
                )
                for item in self.spec.inputs
            }
            counts = {name: int(array.shape[0]) for name, array in arrays.items()}
            if len(set(counts.values())) != 1:
                raise DataError(
                    f"{self.where}: dataset {self.path}: inputs hold different sample counts {counts}; one "
                    "sample per row in every array"
                )
            count = next(iter(counts.values()))
            if self.config.labels in found:
                labels = found[self.config.labels]
                if labels.ndim == 0 or labels.shape[0] != count:
                    raise DataError(
                        f"{self.where}: dataset {self.path}: {count} samples but "
                        f"{labels.shape[0] if labels.ndim else 0} labels in '{self.config.labels}'; one "
                        "label per sample"
                    )
                arrays[self.config.labels] = labels
            elif not self.metric_spec.needs_fp32:
                raise DataError(
                    f"{self.where}: dataset {self.path}: no '{self.config.labels}' array; add the labels "
                    "(or set dataset.labels to their name)"
                )
            self._arrays = arrays
        return self._arrays

    def samples(self) -> list[_Sample]:
        if self._samples is None:
            if self.config.format == "npz":
                arrays = self.arrays()
                count = int(next(iter(arrays.values())).shape[0])
                labels = arrays.get(self.config.labels)
                found = [_Sample(labels[i] if labels is not None else 0, index=i) for i in range(count)]
            elif self.config.format == "image-folder":
                found = self._folder_samples()
            else:
                found = self._csv_samples()
            if self.config.limit is not None:
                found = found[: self.config.limit]
            if not found:
                raise DataError(f"{self.where}: dataset {self.path}: no samples")
            self._samples = found
        return self._samples

    def _class_index(self, name: str, known: Sequence[str]) -> int:
        classes = self.config.classes or tuple(known)
        if name not in classes:
            raise DataError(
                f"{self.where}: dataset {self.path}: class '{name}' is not in dataset.classes "
                f"({', '.join(classes)}); add it or fix the label"
            )
        return classes.index(name)

    def _folder_samples(self) -> list[_Sample]:
        if not self.path.is_dir():
            raise DataError(f"{self.where}: dataset {self.path}: an image-folder dataset is a folder")
        classes = sorted(p.name for p in self.path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(f"{self.where}: dataset {self.path}: no class sub-folders (one folder per class)")
        samples = []
        for name in classes:
            index = self._class_index(name, classes)
            for file in sorted((self.path / name).iterdir()):
                if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                    samples.append(_Sample(index, file=file))
        return samples

    def _csv_samples(self) -> list[_Sample]:
        rows: list[tuple[int, str, str]] = []
        try:
            with self.path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                header = [name.strip() for name in reader.fieldnames or []]
                if "path" not in header or "label" not in header:
                    raise DataError(
                        f"{self.where}: dataset {self.path}: the header must name 'path' and 'label' columns "
                        f"(got {header})"
                    )
                for number, row in enumerate(reader, start=2):
                    path, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
                    if not path or not label:
                        raise DataError(f"{self.where}: {self.path}: line {number}: empty path or label")
                    rows.append((number, path, label))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{self.where}: {self.path}: not a readable CSV ({exc})") from None
        names = sorted({label for _, _, label in rows})
        numeric = self.config.classes is None and all(label.lstrip("-").isdigit() for label in names)
        samples = []
        for number, path, label in rows:
            file = Path(path) if Path(path).is_absolute() else self.path.parent / path
            if not file.is_file():
                raise DataError(f"{self.where}: {self.path}: line {number}: {file} does not exist")
            samples.append(_Sample(int(label) if numeric else self._class_index(label, names), file=file))
        return samples

    # -- building ------------------------------------------------------------------------------

    def slices_of(
        self, corruptions: Sequence[str], severities: Sequence[int]
    ) -> list[tuple[str, str | None, int]]:
        """(slice name, corruption, severity): clean first, then each corruption at each severity
        (``name@N`` entries at N only)."""
        chosen: list[tuple[str, str | None, int]] = [(CLEAN, None, 0)]
        for entry in corruptions:
            name, level = parse_corruption(entry, self.where)
            if CORRUPTIONS[name].kind != self.kind:
                raise DataError(
                    f"{self.where}: corruption '{name}' is for {CORRUPTIONS[name].kind}, and this dataset "
                    "holds "
                    f"{self.kind}"
                )
            for severity in (level,) if level is not None else severities:
                if (slice_name(name, severity), name, severity) not in chosen:
                    chosen.append((slice_name(name, severity), name, severity))
        return chosen

    def key(self, corruptions: Sequence[str], severities: Sequence[int], seed: int) -> str:
        fingerprint = hashlib.sha256()
        files = [self.path] if self.path.is_file() else []
        files += [sample.file for sample in self.samples() if sample.file is not None]
        for file in files:
            info = file.stat()
            fingerprint.update(f"{file}:{info.st_size}:{info.st_mtime_ns}\n".encode())
        text = json.dumps(
            [
                self.spec.sha256,
                repr(self.spec.inputs),
                self.config.model_dump(mode="json"),
                fingerprint.hexdigest(),
                [s[0] for s in self.slices_of(corruptions, severities)],
                seed,
                USERDATA_VERSION,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def build(self, corruptions: Sequence[str], severities: Sequence[int], seed: int) -> EvalSet:
        key = self.key(corruptions, severities, seed)
        folder = self.cache / "evalsets" / f"{self.spec.name}-{key}.d"
        slices = self.slices_of(corruptions, severities)
        if not (folder / ".complete").exists():
            self._write(folder, slices, seed)
        return self._open(folder, slices)

    def _open(self, folder: Path, slices: list[tuple[str, str | None, int]]) -> EvalSet:
        layout = json.loads((folder / ".complete").read_text())
        inputs = {name: np.load(folder / file, mmap_mode="r") for name, file in layout["inputs"].items()}
        labels = np.load(folder / "labels.npy", mmap_mode="r")
        count = int(labels.shape[0])
        names = [name for name, _, _ in slices for _ in range(count)]
        return EvalSet(self.spec.name, self.name, inputs, names, RepeatedLabels(labels, len(slices)))

    def _write(self, folder: Path, slices: list[tuple[str, str | None, int]], seed: int) -> None:
        samples = self.samples()
        count, total = len(samples), len(samples) * len(slices)
        partial = folder.with_name(folder.name + f".{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            layout: dict[str, str] = {}
            files: dict[str, np.ndarray] = {}

            def array(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
                layout[name] = f"{len(layout)}.npy"
                files[name] = np.lib.format.open_memmap(
                    partial / layout[name], mode="w+", dtype=dtype, shape=shape
                )
                return files[name]

            if self.kind == "tensor" and self.config.format == "npz":
                self._write_npz(array, slices, total)
            else:
                self._write_files(array, slices, count, total, seed)
            generator = np.random.default_rng(seed)
            for item in self.spec.inputs:  # inputs the files do not feed: their synthetic values
                if item.name not in files:
                    array(item.name, (total, *item.shape), item.dtype)[:] = synthetic(item, 1, generator)[0]
            if self.config.format == "npz" and self.config.labels in self.arrays():
                labels = self.arrays()[self.config.labels][:count]
            else:
                labels = np.asarray([sample.label for sample in samples])
            np.save(partial / "labels.npy", labels)
            for values in files.values():
                if isinstance(values, np.memmap):
                    values.flush()
            (partial / ".complete").write_text(json.dumps({"inputs": layout}))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def _write_npz(self, array: Any, slices: list[tuple[str, str | None, int]], total: int) -> None:
        arrays = self.arrays()
        count = len(self.samples())
        chunk = 256
        for item in self.spec.inputs:
            source = arrays[item.name]
            target = array(item.name, (total, *source.shape[1:]), item.dtype)
            what = f"{self.where}: dataset {self.path}: '{item.name}'"
            for start in range(0, count, chunk):
                target[start : start + chunk] = model_ready(
                    np.asarray(source[start : min(count, start + chunk)]), item, what
                )

    def _write_files(
        self, array: Any, slices: list[tuple[str, str | None, int]], count: int, total: int, seed: int
    ) -> None:
        item = self.target
        samples = self.samples()
        preprocess = self.config.preprocess or Preprocess()
        if self.kind == "image":
            height, width, channels, layout = self._image_geometry(item, preprocess)
            plain = np.dtype(item.dtype).kind == "f"
            shape = (1, height, width, channels) if layout == "NHWC" else (1, channels, height, width)
            target = array(item.name, (total, *shape), np.uint8 if plain else item.dtype)
            scale, offset = self._affine(item, preprocess, channels, layout)
            if plain:
                array(item.name + AFFINE_SCALE, scale.shape, np.float32)[:] = scale
                array(item.name + AFFINE_OFFSET, offset.shape, np.float32)[:] = offset
            for position, (_, corruption, severity) in enumerate(slices):
                for index, sample in enumerate(samples):
                    assert sample.file is not None
                    image = self._load_image(sample.file, height, width, preprocess.color)
                    if corruption is not None:
                        image = corrupt(image, corruption, severity, seed + index)
                    laid = image[None] if layout == "NHWC" else image.transpose(2, 0, 1)[None]
                    if plain:
                        target[position * count + index] = laid
                    else:
                        real = laid.astype(np.float32) * scale + offset
                        target[position * count + index] = self._to_integer(real, item)
        elif self.kind == "audio":
            length = self._audio_length(item)
            target = array(item.name, (total, *item.shape), item.dtype)
            for position, (_, corruption, severity) in enumerate(slices):
                for index, sample in enumerate(samples):
                    assert sample.file is not None
                    audio = self._load_audio(sample.file, preprocess.sample_rate)
                    if corruption is not None:
                        audio = corrupt(audio, corruption, severity, seed + index)
                    fitted = np.zeros(length, np.float32)
                    fitted[: min(length, audio.size)] = audio[:length]
                    target[position * count + index] = fitted.reshape(item.shape).astype(item.dtype)
        else:
            target = array(item.name, (total, *item.shape), item.dtype)
            for index, sample in enumerate(samples):
                assert sample.file is not None
                what = f"{self.where}: {sample.file}"
                try:
                    loaded = np.load(sample.file, allow_pickle=False)
                except (OSError, ValueError) as exc:
                    raise DataError(f"{what}: not a readable .npy ({exc})") from None
                value = sample_view(np.asarray(loaded)[None], item, what)[0]
                target[index] = model_ready(value, item, what)

    # -- images and audio ----------------------------------------------------------------------

    def _image_geometry(self, item: InputSpec, preprocess: Preprocess) -> tuple[int, int, int, str]:
        shape = item.shape
        if len(shape) != 4 or shape[0] != 1:
            raise DataError(
                f"{self.where}: input '{item.name}' {list(shape)} is not an image batch of 1 ([1,H,W,C] or "
                "[1,C,H,W]); feed it from an npz of model-ready arrays"
            )
        layout = preprocess.layout
        channels = 1 if preprocess.color == "GRAY" else 3
        if layout is None:
            nhwc, nchw = shape[3] == channels, shape[1] == channels
            if nhwc == nchw:
                raise DataError(
                    f"{self.where}: input '{item.name}' {list(shape)}: set dataset.preprocess.layout (NHWC "
                    "or "
                    "NCHW); the shape does not tell"
                )
            layout = "NHWC" if nhwc else "NCHW"
        height, width = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
        if preprocess.size is not None:
            height, width = preprocess.size
        model_channels = shape[3] if layout == "NHWC" else shape[1]
        if model_channels != channels:
            raise DataError(
                f"{self.where}: input '{item.name}' {list(shape)} takes {model_channels} channels in "
                f"{layout}; "
                f"color {preprocess.color} gives {channels}"
            )
        return height, width, channels, layout

    def _affine(
        self, item: InputSpec, preprocess: Preprocess, channels: int, layout: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """``real = pixel * scale + offset`` per channel, shaped to broadcast over one sample."""
        plain_integer = np.dtype(item.dtype).kind in ("i", "u") and not item.quantized
        pixel_scale = (
            preprocess.scale if preprocess.scale is not None else (1.0 if plain_integer else 1 / 255)
        )
        mean = np.broadcast_to(np.asarray(preprocess.mean, np.float64), (channels,))
        std = np.broadcast_to(np.asarray(preprocess.std, np.float64), (channels,))
        for name, values in (("mean", preprocess.mean), ("std", preprocess.std)):
            if isinstance(values, tuple) and len(values) not in (1, channels):
                raise DataError(
                    f"{self.where}: field 'dataset.preprocess.{name}': {len(values)} values for {channels} "
                    "channels"
                )
        scale, offset = pixel_scale / std, -mean / std
        shape = (channels,) if layout == "NHWC" else (channels, 1, 1)
        return scale.reshape(shape).astype(np.float32), offset.reshape(shape).astype(np.float32)

    @staticmethod
    def _to_integer(real: np.ndarray, item: InputSpec) -> np.ndarray:
        if item.quantized:
            from harness.models.inputs import quantize

            return quantize(real, item)
        low, high = integer_range(item.dtype)
        integers: np.ndarray = np.clip(np.rint(real), low, high).astype(item.dtype)
        return integers

    def _load_image(self, file: Path, height: int, width: int, color: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as opened:
                image = opened.convert("L" if color == "GRAY" else "RGB")
                image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{self.where}: {file}: not a readable image ({exc})") from None
        if color == "GRAY":
            return pixels[..., None]
        return pixels[..., ::-1] if color == "BGR" else pixels

    def _audio_length(self, item: InputSpec) -> int:
        if np.dtype(item.dtype).kind != "f" or sum(1 for dim in item.shape if dim > 1) != 1:
            raise DataError(
                f"{self.where}: input '{item.name}' {list(item.shape)} {item.dtype} is not a waveform (one "
                "axis of "
                "float samples); .wav files feed raw audio: give model-ready arrays (.npz or .npy rows) "
                "instead"
            )
        return int(np.prod(item.shape))

    def _load_audio(self, file: Path, rate: int) -> np.ndarray:
        try:
            with wave.open(str(file)) as handle:
                channels, width, source_rate = (
                    handle.getnchannels(),
                    handle.getsampwidth(),
                    handle.getframerate(),
                )
                frames = handle.readframes(handle.getnframes())
        except (OSError, EOFError, wave.Error) as exc:
            raise DataError(f"{self.where}: {file}: not a readable .wav ({exc})") from None
        if width != 2:
            raise DataError(f"{self.where}: {file}: {8 * width}-bit samples; save 16-bit PCM")
        audio = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
        audio = audio.reshape(-1, channels).mean(axis=1)
        if source_rate != rate:
            from math import gcd

            from scipy.signal import resample_poly

            common = gcd(rate, source_rate)
            audio = np.asarray(resample_poly(audio, rate // common, source_rate // common), np.float32)
        return audio

    # -- scoring ---------------------------------------------------------------------------------

    def _real(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        specs = {spec.name: spec for spec in self.spec.outputs}
        return {
            name: dequantize(np.asarray(value), specs[name]) if name in specs else np.asarray(value)
            for name, value in outputs.items()
        }

    def score(
        self,
        outputs: dict[str, np.ndarray],
        labels: list[Any],
        reference: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        real = self._real(outputs)
        if self.metric_spec.output is not None and self.metric_spec.output not in real:
            raise DataError(
                f"{self.where}: field 'dataset.output': the model has no output '{self.metric_spec.output}' "
                f"(its outputs: {', '.join(real)})"
            )
        if self.metric_spec.needs_fp32:
            if reference is None:
                raise DataError(
                    f"{self.where}: metric cosine_vs_fp32 needs an fp32 reference, and there is none"
                )
            name = self.metric_spec.output or next(iter(real))
            return {self.metric: metric_functions.cosine(real[name], self._real(reference)[name])}
        value = metric_functions.call(self.metric_spec, real, np.asarray(labels), self.where)
        return {self.metric: value}

    def agreement(self, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
        """Classification metrics: share of samples answered like fp32; others: mean cosine
        similarity of the outputs with fp32's."""
        ours, theirs = self._real(outputs), self._real(reference)
        name = self.metric_spec.output or next(iter(ours))
        if self.metric_spec.classification:
            a = np.asarray(ours[name]).reshape(ours[name].shape[0], -1).argmax(axis=1)
            b = np.asarray(theirs[name]).reshape(theirs[name].shape[0], -1).argmax(axis=1)
            return float(np.mean(a == b))
        return metric_functions.cosine(ours[name], theirs[name])

    def calibration(self, seed: int = 0) -> Iterator[dict[str, np.ndarray]]:
        raise DataError(
            f"{self.where}: int8-static is calibrated on models.yaml calibration:, never on the dataset"
        )
