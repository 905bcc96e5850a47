"""Real data available offline, with exact labels, and the user's own data.

- photos: scikit-image's bundled images (astronaut, coffee, chelsea, rocket, camera, page, text);
- faces: scikit-image's bundled LFW subset (100 face crops from Labeled Faces in the Wild, 100
  crops of other things; 25 x 25 grey), labels from the dataset's own order;
- text lines: words rendered with a real TrueType font (Pillow's bundled FreeType font), labels
  exact by construction; pages of such lines with their text mask for detection;
- speech: sentences spoken by ``espeak-ng`` at 16 kHz between silences, labels per 512-sample
  chunk from where speech was placed (skipped with the reason when espeak-ng is absent).

The team's own data is read by harness.datasets.userdata (declared in models.yaml).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import EdgeLabError

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "page", "text")
VOCABULARY = (
    "EDGE", "LAB", "2026", "PIXEL", "BOARD", "model", "latency", "device", "int8", "fp16", "OCR",
    "camera", "noise", "blur", "light", "text", "line", "print", "paper", "store", "open", "close",
    "sale", "exit", "price", "12.50", "9:41", "road", "stop", "north",
)  # fmt: skip
SENTENCES = (
    "turn on the kitchen light",
    "what is the weather tomorrow",
    "set a timer for ten minutes",
    "play some music in the living room",
)
SAMPLE_RATE = 16000
CHUNK = 512


class DatasetError(EdgeLabError):
    """A dataset cannot be built or read; the message names the file or tool and the fix."""


def photos() -> list[tuple[str, np.ndarray]]:
    """RGB uint8 photos from scikit-image's bundled data (grayscale ones made RGB)."""
    try:
        from skimage import data
    except ModuleNotFoundError:
        raise DatasetError("photos need scikit-image: pip install scikit-image") from None
    found = []
    for name in PHOTOS:
        image = np.asarray(getattr(data, name)())
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        found.append((name, image[..., :3].astype(np.uint8)))
    return found


LFW_FACES = 100  # lfw_subset(): the first 100 crops are faces, the other 100 are not


def faces(count: int, part: int, seed: int = 0) -> list[tuple[bool, np.ndarray]]:
    """``count`` (face?, 25 x 25 uint8 grey crop) pairs, half faces, drawn by ``seed`` from one half
    of each class: ``part`` 0 or 1, so an evaluation (0) and a calibration (1) never share a crop."""
    try:
        from skimage import data
    except ModuleNotFoundError:
        raise DatasetError("faces need scikit-image: pip install scikit-image") from None
    crops = (np.asarray(data.lfw_subset()) * 255).round().astype(np.uint8)  # type: ignore[no-untyped-call]
    half = LFW_FACES // 2
    if count > 2 * half or part not in (0, 1):
        raise DatasetError(f"faces: at most {2 * half} crops per part (0 or 1), asked {count} of part {part}")
    rng = np.random.default_rng(seed)
    chosen: list[tuple[bool, np.ndarray]] = []
    for is_face, start in ((True, 0), (False, LFW_FACES)):
        pool = start + part * half + rng.permutation(half)[: (count + (not is_face)) // 2]
        chosen += [(is_face, crops[int(i)]) for i in pool]
    order = rng.permutation(len(chosen))  # faces and others mixed
    return [chosen[int(i)] for i in order]


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def render_line(text: str, height: int = 48, size: int = 30) -> np.ndarray:
    """One line of black text on white, ``height`` pixels high, as wide as the text needs."""
    from PIL import Image, ImageDraw

    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    width = max(8, right - left + 16)
    canvas = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(canvas).text(
        (8 - left, (height - (bottom - top)) // 2 - top), text, fill="black", font=font
    )
    return np.asarray(canvas, dtype=np.uint8)


def text_lines(count: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """``count`` lines of 1-3 words from VOCABULARY, deterministic by seed."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(count):
        words = [VOCABULARY[int(i)] for i in rng.integers(0, len(VOCABULARY), size=int(rng.integers(1, 4)))]
        text = " ".join(words)
        lines.append((text, render_line(text)))
    return lines


@dataclass(frozen=True)
class Page:
    image: np.ndarray  # HxWx3 uint8
    mask: np.ndarray  # HxW bool: pixels inside a text line's box


def text_pages(count: int, size: int = 320, seed: int = 0) -> list[Page]:
    """Pages of ``size`` x ``size`` with a few text lines at known places (for text detection)."""
    rng = np.random.default_rng(seed)
    pages = []
    for index in range(count):
        image = np.full((size, size, 3), 255, dtype=np.uint8)
        mask = np.zeros((size, size), dtype=bool)
        top = 12
        for _text, rendered in text_lines(int(rng.integers(3, 6)), seed=seed * 1000 + index):
            line = rendered[:, : size - 24]
            height, width = line.shape[:2]
            if top + height > size - 8:
                break
            left = int(rng.integers(8, max(9, size - width - 8)))
            image[top : top + height, left : left + width] = line
            ink = np.flatnonzero((line < 128).any(axis=(0, 2)))
            rows = np.flatnonzero((line < 128).any(axis=(1, 2)))
            if ink.size and rows.size:
                mask[top + rows[0] : top + rows[-1] + 1, left + ink[0] : left + ink[-1] + 1] = True
            top += height + int(rng.integers(4, 20))
        pages.append(Page(image, mask))
    return pages


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # float32, 16 kHz
    labels: np.ndarray  # one bool per 512-sample chunk: speech placed there


def speech(seed: int = 0) -> Speech:
    """Sentences by espeak-ng between silences, 16 kHz, with per-chunk speech labels."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise DatasetError("speech needs espeak-ng: apt-get install espeak-ng")
    from scipy.signal import resample_poly

    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    truth: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as folder:
        for index, sentence in enumerate(SENTENCES):
            path = Path(folder) / f"{index}.wav"
            subprocess.run(
                [binary, "-v", "en-us", "-s", "150", "-w", str(path), sentence], check=True, timeout=60
            )
            with wave.open(str(path)) as handle:
                rate = handle.getframerate()
                raw = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16)
            voice = resample_poly(raw.astype(np.float64) / 32768.0, SAMPLE_RATE, rate).astype(np.float32)
            envelope = np.convolve(np.abs(voice), np.ones(400) / 400, mode="same")
            gap = np.zeros(int(rng.integers(8000, 16000)), dtype=np.float32)
            pieces += [gap, voice]
            truth += [np.zeros(gap.size, bool), envelope > 0.01]
    audio = np.concatenate([*pieces, np.zeros(8000, np.float32)])
    speaking = np.concatenate([*truth, np.zeros(8000, bool)])
    chunks = audio.size // CHUNK
    labels = speaking[: chunks * CHUNK].reshape(chunks, CHUNK).mean(axis=1) > 0.5
    return Speech(audio[: chunks * CHUNK], labels)
