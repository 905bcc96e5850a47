"""Real data sources: rendered text with exact labels, photos, speech (the team's own data is
tests/datasets/test_userdata.py's)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from harness.datasets import sources
from harness.datasets.sources import photos, speech, text_lines, text_pages


def test_text_lines_are_deterministic_and_black_on_white():
    first, again, other = text_lines(5, seed=1), text_lines(5, seed=1), text_lines(5, seed=2)
    assert [t for t, _ in first] == [t for t, _ in again] != [t for t, _ in other]
    _text, image = first[0]
    assert image.shape[0] == 48 and image.shape[2] == 3 and image.dtype == np.uint8
    assert image.max() == 255 and image.min() < 64  # ink on paper
    assert all(1 <= len(t.split()) <= 3 for t, _ in first)


def test_pages_mark_where_text_was_drawn():
    page = text_pages(1, 320, seed=0)[0]
    assert page.image.shape == (320, 320, 3) and page.mask.shape == (320, 320)
    ink = (page.image < 128).any(axis=2)
    assert ink.sum() > 0 and ink[~page.mask].sum() == 0  # every dark pixel lies inside a text box
    assert 0.02 < page.mask.mean() < 0.5


def test_photos_are_rgb_uint8():
    found = dict(photos())
    assert set(found) >= {"astronaut", "coffee", "camera", "page", "text"}
    assert all(
        image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 for image in found.values()
    )


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)
def test_speech_has_labels_per_chunk():
    clip = speech(seed=0)
    assert clip.audio.dtype == np.float32 and clip.audio.size == clip.labels.size * 512
    assert 0.2 < clip.labels.mean() < 0.8  # speech and silence both present
    energy = np.sqrt((clip.audio.reshape(-1, 512) ** 2).mean(axis=1))
    assert energy[clip.labels].mean() > 5 * energy[~clip.labels].mean()


def test_faces_are_half_faces_and_evaluation_never_shares_a_crop_with_calibration():
    evaluation = sources.faces(24, part=0, seed=3)
    calibration = sources.faces(100, part=1, seed=3)
    assert sum(is_face for is_face, _ in evaluation) == 12 and len(calibration) == 100
    assert evaluation[0][1].shape == (25, 25) and evaluation[0][1].dtype == np.uint8
    seen = {crop.tobytes() for _, crop in calibration}
    assert not any(crop.tobytes() in seen for _, crop in evaluation)
    assert [c.tobytes() for _, c in sources.faces(24, 0, 3)] == [c.tobytes() for _, c in evaluation]
    with pytest.raises(sources.DatasetError, match="at most 100 crops per part"):
        sources.faces(101, part=0)
