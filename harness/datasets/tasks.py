"""Evaluation tasks: real inputs with labels, corrupted slice by slice, and their metrics.

A task builds one input batch for a model: every clean sample, then every sample under every
corruption x severity (a *slice*), stored compactly (uint8 with the model's normalisation as an
affine the agent applies on the device). Outputs come back from the device and are scored per
slice, and against the host's fp32 reference outputs for the same inputs.

| model | task | metric (per slice) | agreement with fp32 |
|---|---|---|---|
| ppocr_rec | OCR of rendered text lines | exact match, character error rate | same string |
| ppocr_det | text detection on rendered pages | IoU of text map and text boxes | IoU with fp32 |
| ppocr_cls | text orientation (0 / 180 degrees) | top-1 accuracy | same class |
| silero_vad | voice activity in espeak-ng speech | F1 (precision, recall) | same decision |
| face_detection | face or not, LFW crops (scikit-image) | accuracy (recall, false alarms) | same decision |
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.datasets import sources
from harness.datasets.corruptions import CORRUPTIONS, corrupt
from harness.errors import EdgeLabError
from harness.models import files, zoo
from harness.models.spec import ModelSpec

CLEAN = "clean"
CALIBRATION_SEED_OFFSET = 1000
DEFAULT_SEVERITIES = (1, 3, 5)
AFFINE_SCALE, AFFINE_OFFSET = ".__scale__", ".__offset__"  # the agent's convention


class TaskError(EdgeLabError):
    """No task for this model, or options the task cannot take."""


def slice_name(corruption: str, severity: int) -> str:
    return f"{corruption}@{severity}"


@dataclass
class EvalSet:
    model: str
    task: str
    inputs: dict[str, np.ndarray]
    slices: list[str]
    labels: Sequence[Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.slices)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".partial.npz")
        np.savez(temporary, **self.inputs)  # type: ignore[arg-type]
        temporary.replace(path)
        return path

    def float_inputs(self, index: int) -> dict[str, np.ndarray]:
        """Sample ``index`` as the model sees it (affine applied); samples carry the model's own
        batch axis, as the agent expects."""
        feed = {}
        for name, values in self.inputs.items():
            if name.endswith((AFFINE_SCALE, AFFINE_OFFSET)):
                continue
            sample = values[index]
            scale, offset = self.inputs.get(name + AFFINE_SCALE), self.inputs.get(name + AFFINE_OFFSET)
            if scale is not None or offset is not None:
                sample = sample.astype(np.float32) * (scale if scale is not None else 1) + (
                    offset if offset is not None else 0
                )
                sample = sample.astype(np.float32)
            feed[name] = np.ascontiguousarray(sample)
        return feed


class Task:
    """Real inputs with labels for one model, and how its outputs are scored: the zoo's tasks here,
    the team's datasets in harness.datasets.userdata."""

    name = ""
    metric = ""
    kind = "image"
    default_corruptions: tuple[str, ...] = ()
    lower_is_better: frozenset[str] = frozenset({"cer", "false_positive_rate"})

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def build(self, corruptions: Sequence[str], severities: Sequence[int], seed: int) -> EvalSet:
        raise NotImplementedError

    def key(self, corruptions: Sequence[str], severities: Sequence[int], seed: int) -> str:
        """Names the evaluation set (inputs, fp32 reference) in the cache."""
        return evalset_key(self.spec, corruptions, severities, seed)

    def score(
        self,
        outputs: dict[str, np.ndarray],
        labels: list[Any],
        reference: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        """The metric(s) of ``outputs`` for these labels; ``reference`` (the fp32 outputs of the same
        inputs, when there are any) is for metrics that compare with it."""
        raise NotImplementedError

    def agreement(self, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
        raise NotImplementedError

    calibration_scale = 4  # calibrate on this many times the evaluation's clean samples

    def calibration(self, seed: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Clean real samples as float feeds for int8-static calibration: drawn with another seed
        than the evaluation, so the model is not calibrated on the inputs it is scored on."""
        evalset = self.calibration_set(seed + CALIBRATION_SEED_OFFSET)
        for index in range(evalset.size):
            yield evalset.float_inputs(index)

    def calibration_set(self, seed: int) -> EvalSet:
        return self.build([], (), seed)

    def _check(self, corruptions: Sequence[str]) -> None:
        wrong = [c for c in corruptions if c not in CORRUPTIONS or CORRUPTIONS[c].kind != self.kind]
        if wrong:
            known = ", ".join(n for n, c in CORRUPTIONS.items() if c.kind == self.kind)
            raise TaskError(
                f"{self.spec.name}: corruptions {wrong} do not apply to {self.kind} (use: {known})"
            )


def _slices(
    samples: Sequence[np.ndarray], corruptions: Sequence[str], severities: Sequence[int], seed: int
) -> Iterator[tuple[str, int, np.ndarray]]:
    for index, sample in enumerate(samples):
        yield CLEAN, index, sample
    for corruption in corruptions:
        for severity in severities:
            for index, sample in enumerate(samples):
                yield (
                    slice_name(corruption, severity),
                    index,
                    corrupt(sample, corruption, severity, seed + index),
                )


# -- OCR recognition ------------------------------------------------------------------------------


def _fit_line(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to ``height`` keeping the aspect (at most ``width``), pad right with grey; CHW uint8."""
    from PIL import Image

    h, w = image.shape[:2]
    new_w = max(1, min(width, int(np.ceil(w * height / h))))
    resized = np.asarray(Image.fromarray(image).resize((new_w, height), Image.Resampling.BILINEAR))
    canvas = np.full((height, width, 3), 128, dtype=np.uint8)
    canvas[:, :new_w] = resized
    return canvas.transpose(2, 0, 1)


def _minus_one_to_one(name: str = "x") -> dict[str, np.ndarray]:
    return {
        name + AFFINE_SCALE: np.array(2 / 255, np.float32),
        name + AFFINE_OFFSET: np.array(-1.0, np.float32),
    }


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


class OcrRecognition(Task):
    name = "ocr_recognition"
    metric = "exact_match"
    default_corruptions = ("gaussian_noise", "motion_blur", "low_light", "jpeg", "pixelate")
    lines = 12

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._characters: list[str] | None = None

    def characters(self) -> list[str]:
        if self._characters is None:
            import onnx

            model = onnx.load(str(files.local_file(self.spec)), load_external_data=False)
            table = next((p.value for p in model.metadata_props if p.key == "character"), None)
            if table is None:
                raise TaskError(f"{self.spec.name}: the model has no 'character' metadata to decode with")
            self._characters = [*table.split("\n"), " "]  # PP-OCR: blank first, space last
        return self._characters

    def calibration_set(self, seed: int) -> EvalSet:
        self.lines, original = self.lines * self.calibration_scale, self.lines
        try:
            return self.build([], (), seed)
        finally:
            self.lines = original

    def build(self, corruptions: Sequence[str], severities: Sequence[int], seed: int) -> EvalSet:
        self._check(corruptions)
        lines = sources.text_lines(self.lines, seed)
        samples = [image for _, image in lines]
        names, labels, stacked = [], [], []
        for name, index, image in _slices(samples, corruptions, severities, seed):
            names.append(name)
            labels.append(lines[index][0])
            stacked.append(_fit_line(image, 48, 320)[None])
        return EvalSet(
            self.spec.name, self.name, {"x": np.stack(stacked), **_minus_one_to_one()}, names, labels
        )

    def decode(self, logits: np.ndarray) -> list[str]:
        characters = self.characters()
        texts = []
        for sequence in np.asarray(logits).reshape(logits.shape[0], -1, logits.shape[-1]).argmax(axis=-1):
            kept, last = [], -1
            for index in sequence:
                if index not in (last, 0) and index - 1 < len(characters):
                    kept.append(characters[index - 1])
                last = index
            texts.append("".join(kept).strip())
        return texts

    def score(
        self,
        outputs: dict[str, np.ndarray],
        labels: list[Any],
        reference: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        texts = self.decode(next(iter(outputs.values())))
        exact = [t == label for t, label in zip(texts, labels, strict=True)]
        cer = [edit_distance(t, label) / max(1, len(label)) for t, label in zip(texts, labels, strict=True)]
        return {"exact_match": float(np.mean(exact)), "cer": float(np.mean(cer))}

    def agreement(self, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
        ours, theirs = self.decode(next(iter(outputs.values()))), self.decode(next(iter(reference.values())))
        return float(np.mean([a == b for a, b in zip(ours, theirs, strict=True)]))


class TextOrientation(OcrRecognition):
    name = "text_orientation"
    metric = "accuracy"

    def build(self, corruptions: Sequence[str], severities: Sequence[int], seed: int) -> EvalSet:
        self._check(corruptions)
        lines = sources.text_lines(self.lines, seed)
        samples = [image if i % 2 == 0 else image[::-1, ::-1] for i, (_, image) in enumerate(lines)]
        names, labels, stacked = [], [], []
        for name, index, image in _slices(samples, corruptions, severities, seed):
            names.append(name)
            labels.append(index % 2)  # 0: upright, 1: rotated 180 degrees
            stacked.append(_fit_line(image, 48, 192)[None])
        return EvalSet(
            self.spec.name, self.name, {"x": np.stack(stacked), **_minus_one_to_one()}, names, labels
        )

    def score(
        self,
        outputs: dict[str, np.ndarray],
        labels: list[Any],
        reference: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        predicted = np.asarray(next(iter(outputs.values()))).reshape(len(labels), -1).argmax(axis=-1)
        return {"accuracy": float(np.mean(predicted == np.asarray(labels)))}

    def agreement(self, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
        ours = np.asarray(next(iter(outputs.values()))).reshape(-1, 2).argmax(-1)
        theirs = np.asarray(next(iter(reference.values()))).reshape(-1, 2).argmax(-1)
        return float(np.mean(ours == theirs))


# -- text detection ------------------------------------------------------------------------------------

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
DET_THRESHOLD = 0.3


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


class TextDetection(Task):
    name = "text_detection"
    metric = "iou"
    default_corruptions = ("gaussian_noise", "motion_blur", "low_light", "jpeg", "contrast")
    pages = 4

    def calibration_set(self, seed: int) -> EvalSet:
        self.pages, original = self.pages * self.calibration_scale, self.pages
        try:
            return self.build([], (), seed)
        finally:
            self.pages = original

    def build(self, corruptions: Sequence[str], severities: Sequence[int], seed: int) -> EvalSet:
        self._check(corruptions)
        pages = sources.text_pages(self.pages, 320, seed)
        names, labels, stacked = [], [], []
        for name, index, image in _slices([p.image for p in pages], corruptions, severities, seed):
            names.append(name)
            labels.append(pages[index].mask)  # the text boxes, from where the lines were drawn
            stacked.append(image.transpose(2, 0, 1)[None])
        inputs: dict[str, np.ndarray] = {
            "x": np.stack(stacked),
            "x" + AFFINE_SCALE: (1 / (255 * IMAGENET_STD)).astype(np.float32),
            "x" + AFFINE_OFFSET: (-IMAGENET_MEAN / IMAGENET_STD).astype(np.float32),
        }
        return EvalSet(self.spec.name, self.name, inputs, names, labels)

    def _maps(self, outputs: dict[str, np.ndarray], count: int) -> np.ndarray:
        return np.asarray(next(iter(outputs.values()))).reshape(count, 320, 320) > DET_THRESHOLD

    def score(
        self,
        outputs: dict[str, np.ndarray],
        labels: list[Any],
        reference: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        maps = self._maps(outputs, len(labels))
        return {"iou": float(np.mean([_iou(m, mask) for m, mask in zip(maps, labels, strict=True)]))}

    def agreement(self, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
        ours = np.asarray(next(iter(outputs.values())))
        count = ours.size // (320 * 320)
        theirs = self._maps(reference, count)
        return float(np.mean([_iou(a, b) for a, b in zip(self._maps(outputs, count), theirs, strict=True)]))


# -- voice activity --------------------------------------------------------------------------------------

VAD_CONTEXT = 64


class VoiceActivity(Task):
    name = "voice_activity"
    metric = "f1"
    kind = "audio"
    default_corruptions = ("noise_snr", "clipping", "gain", "reverb", "packet_loss")

    def build(self, corruptions: Sequence[str], severities: Sequence[int], seed: int) -> EvalSet:
        self._check(corruptions)
        clip = sources.speech(seed)
        versions: list[tuple[str, np.ndarray]] = [(CLEAN, clip.audio)]
        for corruption in corruptions:
            for severity in severities:
                versions.append(
                    (slice_name(corruption, severity), corrupt(clip.audio, corruption, severity, seed))
                )
        names, labels, windows = [], [], []
        for name, audio in versions:
            chunks = audio.reshape(-1, sources.CHUNK)
            context = np.concatenate([np.zeros((1, VAD_CONTEXT), np.float32), chunks[:-1, -VAD_CONTEXT:]])
            windows.append(np.concatenate([context, chunks], axis=1).astype(np.float32))
            names += [name] * chunks.shape[0]
            labels += [bool(v) for v in clip.labels]
        stacked = np.concatenate(windows)
        inputs: dict[str, np.ndarray] = {
            "input": stacked[:, None, :],
            "state": np.zeros((stacked.shape[0], 2, 1, 128), np.float32),
            "sr": np.full((stacked.shape[0],), sources.SAMPLE_RATE, np.int64),
        }
        return EvalSet(self.spec.name, self.name, inputs, names, labels)

    def calibration(self, seed: int = 0) -> Iterator[dict[str, np.ndarray]]:
        evalset = self.build([], (), seed + CALIBRATION_SEED_OFFSET)
        for index in range(0, evalset.size, 4):  # every 4th chunk: speech and silence alike
            yield evalset.float_inputs(index)

    @staticmethod
    def _speech(outputs: dict[str, np.ndarray]) -> np.ndarray:
        probability = outputs.get("output")
        if probability is None:
            probability = next(iter(outputs.values()))
        return np.asarray(probability).reshape(-1) > 0.5

    def score(
        self,
        outputs: dict[str, np.ndarray],
        labels: list[Any],
        reference: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        predicted, truth = self._speech(outputs), np.asarray(labels, dtype=bool)
        tp = float(np.sum(predicted & truth))
        fp, fn = float(np.sum(predicted & ~truth)), float(np.sum(~predicted & truth))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        return {"f1": f1, "precision": precision, "recall": recall}

    def agreement(self, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
        return float(np.mean(self._speech(outputs) == self._speech(reference)))


# -- face detection ---------------------------------------------------------------------------------

FACE_CANVAS, FACE_SIZE = 128, 64  # the model's input; a crop scaled to half of it, centred on grey
FACE_THRESHOLD = 0.5  # MediaPipe's default min_detection_confidence


class FaceDetection(Task):
    """Is there a face? MediaPipe's short-range face detector on LFW crops (faces) and the subset's
    other crops (not faces): the best anchor's score against MediaPipe's default threshold."""

    name = "face_detection"
    metric = "accuracy"
    default_corruptions = ("gaussian_noise", "motion_blur", "low_light", "jpeg", "contrast")
    crops = 24

    def _samples(self, count: int, part: int, seed: int) -> tuple[list[bool], list[np.ndarray]]:
        from PIL import Image

        labels, images = [], []
        for is_face, crop in sources.faces(count, part, seed):
            scaled = np.asarray(
                Image.fromarray(crop).resize((FACE_SIZE, FACE_SIZE), Image.Resampling.BILINEAR)
            )
            canvas = np.full((FACE_CANVAS, FACE_CANVAS), 128, np.uint8)
            start = (FACE_CANVAS - FACE_SIZE) // 2
            canvas[start : start + FACE_SIZE, start : start + FACE_SIZE] = scaled
            labels.append(is_face)
            images.append(np.repeat(canvas[..., None], 3, axis=2))
        return labels, images

    def _evalset(
        self,
        labels: list[bool],
        images: list[np.ndarray],
        corruptions: Sequence[str],
        severities: Sequence[int],
        seed: int,
    ) -> EvalSet:
        names, slice_labels, stacked = [], [], []
        for name, index, image in _slices(images, corruptions, severities, seed):
            names.append(name)
            slice_labels.append(labels[index])
            stacked.append(image[None])  # NHWC, as the model takes it
        inputs = {"input": np.stack(stacked), **_minus_one_to_one("input")}
        return EvalSet(self.spec.name, self.name, inputs, names, slice_labels)

    def build(self, corruptions: Sequence[str], severities: Sequence[int], seed: int) -> EvalSet:
        self._check(corruptions)
        labels, images = self._samples(self.crops, 0, seed)
        return self._evalset(labels, images, corruptions, severities, seed)

    def calibration_set(self, seed: int) -> EvalSet:
        labels, images = self._samples(self.crops * 2, 1, seed)  # the other half of the crops
        return self._evalset(labels, images, [], (), seed)

    @staticmethod
    def _faces(outputs: dict[str, np.ndarray]) -> np.ndarray:
        logits = outputs.get("classificators")
        if logits is None:  # one score per anchor: the output with one value per anchor
            logits = min(outputs.values(), key=lambda values: np.asarray(values).shape[-1])
        logits = np.asarray(logits, dtype=np.float64)
        best = logits.reshape(logits.shape[0], -1).max(axis=1)
        return np.asarray(1 / (1 + np.exp(-best)) >= FACE_THRESHOLD)

    def score(
        self,
        outputs: dict[str, np.ndarray],
        labels: list[Any],
        reference: dict[str, np.ndarray] | None = None,
    ) -> dict[str, float]:
        found, truth = self._faces(outputs), np.asarray(labels, dtype=bool)
        faces, others = int(truth.sum()), int((~truth).sum())
        return {
            "accuracy": float(np.mean(found == truth)),
            "recall": float(np.sum(found & truth) / faces) if faces else 1.0,
            "false_positive_rate": float(np.sum(found & ~truth) / others) if others else 0.0,
        }

    def agreement(self, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
        return float(np.mean(self._faces(outputs) == self._faces(reference)))


TASKS: dict[str, type[Task]] = {
    "ppocr_rec": OcrRecognition,
    "ppocr_cls": TextOrientation,
    "ppocr_det": TextDetection,
    "silero_vad": VoiceActivity,
    "face_detection": FaceDetection,
}


def task_for(model: str) -> Task:
    try:
        return TASKS[model](zoo.get(model))
    except KeyError:
        raise TaskError(
            f"no evaluation task for '{model}' (models with one: {', '.join(TASKS)}); "
            "benchmark it for latency, or bring a dataset"
        ) from None


DATASET_VERSION = 2  # bump when sources, corruptions or preprocessing change: cached sets are rebuilt


def evalset_key(spec: ModelSpec, corruptions: Sequence[str], severities: Sequence[int], seed: int) -> str:
    text = json.dumps([spec.name, spec.sha256, list(corruptions), list(severities), seed, DATASET_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
