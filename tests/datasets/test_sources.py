"""Real data sources and the user's own data, with the errors for bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from harness.datasets.sources import DatasetError, load_user_data, photos, speech, text_lines, text_pages


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


def write_images(folder, names, size=(16, 8)):
    folder.mkdir(exist_ok=True)
    for name in names:
        Image.new("RGB", size, "white").save(folder / name)


def test_user_folder_with_labels(tmp_path):
    write_images(tmp_path / "data", ["a.png", "b.png"])
    (tmp_path / "data" / "labels.csv").write_text("file,label\na.png,cat\nb.png,dog\n")
    data = load_user_data(tmp_path / "data")
    assert data.inputs.shape == (2, 8, 16, 3) and data.labels == ["cat", "dog"]


@pytest.mark.parametrize(
    ("rows", "images", "message"),
    [
        (None, ["a.png"], "labels.csv is missing"),
        ("a.png\n", ["a.png"], r"line 1: expected 'file,label'"),
        ("a.png,cat\nz.png,dog\n", ["a.png"], "line 2: z.png does not exist"),
        ("file,label\n", ["a.png"], "no rows"),
    ],
)
def test_user_folder_errors(tmp_path, rows, images, message):
    write_images(tmp_path / "data", images)
    if rows is not None:
        (tmp_path / "data" / "labels.csv").write_text(rows)
    with pytest.raises(DatasetError, match=message):
        load_user_data(tmp_path / "data")


def test_user_folder_with_mixed_shapes_is_refused(tmp_path):
    write_images(tmp_path / "data", ["a.png"], (16, 8))
    write_images(tmp_path / "data", ["b.png"], (10, 10))
    (tmp_path / "data" / "labels.csv").write_text("a.png,x\nb.png,y\n")
    with pytest.raises(DatasetError, match="images differ in shape"):
        load_user_data(tmp_path / "data")


def test_user_npz(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, inputs=np.zeros((3, 4)), labels=np.array(["a", "b", "c"]))
    assert load_user_data(good).labels == ["a", "b", "c"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, inputs=np.zeros((3, 4)), labels=np.array(["a"]))
    with pytest.raises(DatasetError, match="3 inputs but 1 labels"):
        load_user_data(bad)
    missing = tmp_path / "missing.npz"
    np.savez(missing, x=np.zeros(2))
    with pytest.raises(DatasetError, match="needs arrays 'inputs' and 'labels' \\(has: x\\)"):
        load_user_data(missing)
    with pytest.raises(DatasetError, match="give a folder with labels.csv or an .npz"):
        load_user_data(tmp_path / "nothing.txt")
