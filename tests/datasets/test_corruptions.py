"""Every corruption: shape and dtype kept, deterministic by seed, worse with severity."""

from __future__ import annotations

import numpy as np
import pytest

from harness.datasets.corruptions import CORRUPTIONS, SEVERITIES, corrupt

rng = np.random.default_rng(7)
IMAGE = np.clip(rng.normal(128, 50, (64, 96, 3)), 0, 255).astype(np.uint8)
IMAGE[20:40, 30:70] = 255  # an edge for the blurs to smear
GRAY = IMAGE[..., 0].copy()
t = np.arange(16000) / 16000
AUDIO = (0.5 * np.sin(2 * np.pi * 220 * t) * (t > 0.3)).astype(np.float32)
SERIES = np.cumsum(rng.normal(0, 1, (500, 3)), axis=0).astype(np.float32)
INPUTS = {"image": IMAGE, "audio": AUDIO, "series": SERIES}


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_shape_dtype_and_determinism(name):
    values = INPUTS[CORRUPTIONS[name].kind]
    for severity in SEVERITIES:
        out = corrupt(values, name, severity, seed=3)
        assert out.shape == values.shape and out.dtype == values.dtype
        assert np.array_equal(out, corrupt(values, name, severity, seed=3))
    if CORRUPTIONS[name].kind == "image":
        assert corrupt(GRAY, name, 3, seed=1).shape == GRAY.shape  # grayscale too


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_severity_makes_it_worse(name):
    values = INPUTS[CORRUPTIONS[name].kind]
    # averaged over seeds, the distance from the clean input grows from severity 1 to 3 to 5
    mean = [
        np.mean([distance(corrupt(values, name, s, seed), values) for seed in range(4)]) for s in (1, 3, 5)
    ]
    assert mean[0] < mean[1] < mean[2], mean


def test_seeds_differ_for_random_corruptions():
    assert not np.array_equal(corrupt(IMAGE, "gaussian_noise", 3, 1), corrupt(IMAGE, "gaussian_noise", 3, 2))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="severity must be 1-5, got 6"):
        corrupt(IMAGE, "jpeg", 6, 0)
    with pytest.raises(ValueError, match="unknown corruption 'fog' .*gaussian_noise"):
        corrupt(IMAGE, "fog", 1, 0)
    with pytest.raises(ValueError, match="jpeg: images are uint8"):
        corrupt(IMAGE.astype(np.float32), "jpeg", 1, 0)


def test_every_corruption_says_what_it_models():
    assert all(c.models for c in CORRUPTIONS.values())
    assert {c.kind for c in CORRUPTIONS.values()} == {"image", "audio", "series"}
    assert sum(c.kind == "image" for c in CORRUPTIONS.values()) == 10
