"""Field corruptions with severities 1-5, deterministic by seed.

Images are uint8 HxW or HxWxC and come back the same shape and dtype; audio is float32 in
[-1, 1] at 16 kHz; sensor series are float arrays (time on axis 0). Each function documents what
it models in the field. Severity constants follow the spirit of ImageNet-C (Hendrycks &
Dietterich, 2019): 1 is mild, 5 is the worst a product still has to survive.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Corruption:
    name: str
    kind: str  # image | audio | series
    models: str  # what it stands for in the field
    apply: Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _check(severity: int) -> int:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1-5, got {severity}")
    return severity - 1


def _to_uint8(values: np.ndarray) -> np.ndarray:
    clipped: np.ndarray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return clipped


# -- images --------------------------------------------------------------------------------------


def gaussian_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.04, 0.06, 0.08, 0.10, 0.14)[_check(severity)] * 255
    return _to_uint8(image.astype(np.float64) + rng.normal(0, sigma, image.shape))


def shot_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    photons = (60, 25, 12, 5, 3)[_check(severity)]
    return _to_uint8(rng.poisson(image.astype(np.float64) / 255 * photons) / photons * 255)


def motion_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    length = (3, 5, 7, 11, 15)[_check(severity)]
    angle = float(rng.uniform(0, 180))
    kernel = np.zeros((length, length))
    kernel[length // 2, :] = 1.0
    from scipy import ndimage  # scipy's filters cost a second to import: only when applied

    kernel = ndimage.rotate(kernel, angle, reshape=False, order=1)
    kernel /= kernel.sum()
    return _filter(image, kernel)


def defocus_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius = (1, 2, 3, 4, 6)[_check(severity)]
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    kernel = (x**2 + y**2 <= radius**2).astype(np.float64)
    return _filter(image, kernel / kernel.sum())


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    values = image.astype(np.float64)
    if values.ndim == 3:
        out = np.stack(
            [ndimage.convolve(values[..., c], kernel, mode="reflect") for c in range(values.shape[2])], -1
        )
    else:
        out = ndimage.convolve(values, kernel, mode="reflect")
    return _to_uint8(out)


def low_light(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Underexposure: darker (gamma) with sensor read noise, as a phone camera at night."""
    gamma = (1.5, 2.0, 2.5, 3.0, 3.5)[_check(severity)]
    dark = 255 * (image.astype(np.float64) / 255) ** gamma
    return _to_uint8(dark + rng.normal(0, 2.0 * severity, image.shape))


def contrast(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Fog, glare or a washed-out screen: contrast pulled towards the mean."""
    keep = (0.6, 0.45, 0.3, 0.2, 0.1)[_check(severity)]
    values = image.astype(np.float64)
    mean = values.mean()
    return _to_uint8((values - mean) * keep + mean)


def jpeg(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Compression by a messaging app or a low-bandwidth camera stream."""
    from PIL import Image

    quality = (30, 18, 12, 8, 5)[_check(severity)]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert(Image.fromarray(image).mode)).astype(np.uint8)


def pixelate(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Digital zoom or a low-resolution sensor upscaled."""
    from PIL import Image

    factor = (0.6, 0.5, 0.4, 0.3, 0.25)[_check(severity)]
    height, width = image.shape[:2]
    small = Image.fromarray(image).resize(
        (max(1, int(width * factor)), max(1, int(height * factor))), Image.Resampling.BOX
    )
    return np.asarray(small.resize((width, height), Image.Resampling.NEAREST)).astype(np.uint8)


def occlusion(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A finger, a sticker or a shadow: a grey box over part of the frame."""
    share = (0.1, 0.2, 0.3, 0.4, 0.5)[_check(severity)]
    height, width = image.shape[:2]
    box_h, box_w = max(1, int(height * np.sqrt(share))), max(1, int(width * np.sqrt(share)))
    top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
    out = image.copy()
    out[top : top + box_h, left : left + box_w] = 128
    return out


def rotation(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A tilted phone: rotated by up to +-5..+-25 degrees, edges filled by reflection."""
    degrees = (5, 10, 15, 20, 25)[_check(severity)] * (1 if rng.random() < 0.5 else -1)
    from scipy import ndimage

    return _to_uint8(
        ndimage.rotate(image.astype(np.float64), degrees, reshape=False, order=1, mode="nearest")
    )


# -- audio (16 kHz float32) ---------------------------------------------------------------------------


def noise_snr(audio: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Background noise at 20..0 dB SNR (street, fan, crowd)."""
    snr_db = (20, 15, 10, 5, 0)[_check(severity)]
    power = float(np.mean(audio.astype(np.float64) ** 2)) or 1e-8
    noise = rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), audio.shape)
    return np.clip(audio + noise, -1, 1).astype(np.float32)


def clipping(audio: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """An overdriven microphone: the waveform clipped at a fraction of its peak."""
    keep = (0.8, 0.6, 0.4, 0.25, 0.1)[_check(severity)]
    peak = float(np.max(np.abs(audio))) or 1.0
    clipped: np.ndarray = (np.clip(audio, -peak * keep, peak * keep) / keep).clip(-1, 1).astype(np.float32)
    return clipped


def gain(audio: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A far or quiet speaker: attenuated by 6..30 dB."""
    db = (6, 12, 18, 24, 30)[_check(severity)]
    return (audio * 10 ** (-db / 20)).astype(np.float32)


def reverb(audio: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A reverberant room: the dry signal plus its late reverberation (an exponentially decaying
    noise tail, RT60 0.2 to 1.2 s) at a direct-to-reverberant ratio falling from +6 to -6 dB."""
    index = _check(severity)
    rt60 = (0.2, 0.4, 0.6, 0.9, 1.2)[index]
    drr_db = (6, 3, 0, -3, -6)[index]
    length = int(rt60 * 16000)
    t = np.arange(1, length + 1) / 16000
    tail = rng.normal(0, 1, length) * np.exp(-6.9 * t / rt60)
    dry = audio.astype(np.float64)
    from scipy import signal

    wet = signal.fftconvolve(dry, tail)[: dry.shape[0]]
    dry_rms, wet_rms = float(np.sqrt(np.mean(dry**2))) or 1e-9, float(np.sqrt(np.mean(wet**2))) or 1e-9
    mixed: np.ndarray = np.clip(dry + wet / wet_rms * dry_rms * 10 ** (-drr_db / 20), -1, 1).astype(
        np.float32
    )
    return mixed


def packet_loss(audio: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A VoIP or Bluetooth link dropping 20-ms frames (zeroed)."""
    share = (0.05, 0.1, 0.2, 0.3, 0.4)[_check(severity)]
    frame = 320  # 20 ms at 16 kHz
    out = audio.astype(np.float32).copy()
    for start in range(0, out.shape[0], frame):
        if rng.random() < share:
            out[start : start + frame] = 0.0
    return out


# -- sensor series -----------------------------------------------------------------------------------


def dropout(series: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Lost samples (radio or bus errors) held at the last good value."""
    share = (0.05, 0.1, 0.2, 0.3, 0.5)[_check(severity)]
    out = series.astype(np.float64).copy()
    lost = rng.random(series.shape[0]) < share
    for index in np.flatnonzero(lost):
        out[index] = out[index - 1] if index > 0 else 0.0
    return out.astype(series.dtype)


def drift(series: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Sensor bias drifting linearly over the window (temperature, aging)."""
    span = (0.05, 0.1, 0.2, 0.4, 0.8)[_check(severity)] * (float(np.std(series)) or 1.0)
    ramp = np.linspace(0, span, series.shape[0]).reshape((-1,) + (1,) * (series.ndim - 1))
    return (series + ramp).astype(series.dtype)


def spikes(series: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Impulsive glitches of +-5 standard deviations on a share of samples."""
    share = (0.01, 0.02, 0.05, 0.1, 0.2)[_check(severity)]
    out = series.astype(np.float64).copy()
    hits = rng.random(series.shape) < share
    out[hits] += rng.choice([-5.0, 5.0], size=int(hits.sum())) * (float(np.std(series)) or 1.0)
    return out.astype(series.dtype)


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", "image", "sensor noise in dim light or a cheap camera", gaussian_noise),
        Corruption("shot_noise", "image", "photon noise: few photons per pixel at night", shot_noise),
        Corruption("motion_blur", "image", "hand shake or a moving subject", motion_blur),
        Corruption("defocus_blur", "image", "autofocus missed, dirty lens", defocus_blur),
        Corruption("low_light", "image", "underexposure with read noise", low_light),
        Corruption("contrast", "image", "fog, glare, washed-out screens", contrast),
        Corruption("jpeg", "image", "compression by apps and streams", jpeg),
        Corruption("pixelate", "image", "digital zoom, low-resolution sensors", pixelate),
        Corruption("occlusion", "image", "fingers, stickers, shadows", occlusion),
        Corruption("rotation", "image", "a tilted phone", rotation),
        Corruption("noise_snr", "audio", "background noise at 20 to 0 dB SNR", noise_snr),
        Corruption("clipping", "audio", "an overdriven microphone", clipping),
        Corruption("gain", "audio", "a quiet or far speaker, -6 to -30 dB", gain),
        Corruption("reverb", "audio", "a reverberant room, RT60 0.2 to 1.2 s", reverb),
        Corruption("packet_loss", "audio", "VoIP/Bluetooth links dropping 20-ms frames", packet_loss),
        Corruption("dropout", "series", "lost samples held at the last value", dropout),
        Corruption("drift", "series", "slow bias drift", drift),
        Corruption("spikes", "series", "impulsive glitches", spikes),
    )
}


def corrupt(values: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Apply one corruption; the same (values, name, severity, seed) always gives the same result."""
    try:
        corruption = CORRUPTIONS[name]
    except KeyError:
        raise ValueError(f"unknown corruption '{name}' (known: {', '.join(CORRUPTIONS)})") from None
    if corruption.kind == "image" and values.dtype != np.uint8:
        raise ValueError(f"{name}: images are uint8 HxW or HxWxC, got {values.dtype}")
    result: np.ndarray = corruption.apply(
        values, severity, np.random.default_rng([seed, severity, len(name)])
    )
    return result
