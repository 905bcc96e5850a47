"""A model reference resolved: a zoo name, a models.yaml name, a path; overrides checked against the
model's signature; URL models downloaded once from a real HTTP server and verified."""

from __future__ import annotations

import hashlib
import shutil
import textwrap

import numpy as np
import pytest

from harness.cachefile import _hashes as hashed_files
from harness.errors import ConfigError, ModelError
from harness.models.project import load_project
from harness.models.resolve import Resolver, model_ready, sample_view
from harness.models.spec import FileSource, InputSpec, UrlSource
from tests.fixtures.project_models import WAKEWORD_INPUT, wakeword_file, write_classifier


@pytest.fixture
def project_dir(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    shutil.copyfile(wakeword_file(), tmp_path / "models" / "okay_nabu.tflite")  # from the shared cache
    monkeypatch.setenv("EDGELAB_CACHE", str(tmp_path / "cache"))
    write_classifier(tmp_path / "models" / "classifier.onnx")
    return tmp_path


def resolver_with(folder, text: str) -> Resolver:
    path = folder / "models.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return Resolver(folder, load_project(path))


def test_a_path_is_relative_to_the_rootdir_and_named_by_its_stem(project_dir, monkeypatch):
    monkeypatch.chdir("/")  # not the working directory: the rootdir
    resolved = Resolver(project_dir).resolve("models/okay_nabu.tflite")
    spec = resolved.spec
    assert (spec.name, spec.format, spec.precision, spec.origin) == ("okay_nabu", "tflite", "int8", "file")
    assert spec.source == FileSource(project_dir / "models" / "okay_nabu.tflite") and resolved.path == spec.source.path
    assert spec.sha256 == hashlib.sha256(wakeword_file().read_bytes()).hexdigest()
    absolute = Resolver(project_dir / "elsewhere").resolve(str(project_dir / "models" / "classifier.onnx"))
    assert absolute.spec.inputs[0].dynamic == (0,) and absolute.spec.inputs[0].shape == (1, 16)


def test_a_file_is_hashed_once_per_session(project_dir):
    path = project_dir / "models" / "classifier.onnx"
    before = {key for key in hashed_files if key[0] == str(path.resolve())}
    resolver = Resolver(project_dir)
    first = resolver.resolve("models/classifier.onnx")
    assert Resolver(project_dir).resolve(str(path)).spec.sha256 == first.spec.sha256
    assert resolver.resolve("models/classifier.onnx") is first
    hashed = {key for key in hashed_files if key[0] == str(path.resolve())}
    assert len(hashed - before) == 1  # one entry: (path, size, mtime, ctime, inode)


def test_an_unknown_path_names_where_it_looked(project_dir):
    with pytest.raises(ModelError) as error:
        Resolver(project_dir).resolve("models/detector.tflite")
    assert str(error.value) == (
        f"model file 'models/detector.tflite' not found (looked at {project_dir}/models/detector.tflite; "
        f"relative paths start at the rootdir {project_dir}); check the path"
    )


def test_an_unknown_name_lists_the_zoo_and_the_project(project_dir):
    resolver = resolver_with(project_dir, "models:\n  wakeword: {path: models/okay_nabu.tflite}\n")
    with pytest.raises(ModelError, match=r"unknown model 'wakword' \(zoo models and project models: .*silero_vad, "
                       r"wakeword; models.yaml: .*\)\. Did you mean 'wakeword'\? Name one of them, or give the path"):
        resolver.resolve("wakword")


def test_a_file_named_like_a_zoo_model_is_refused(project_dir):
    shutil.copyfile(project_dir / "models" / "classifier.onnx", project_dir / "models" / "silero_vad.onnx")
    with pytest.raises(ModelError, match="its stem 'silero_vad' is the name of a zoo model"):
        Resolver(project_dir).resolve("models/silero_vad.onnx")


def test_a_path_that_models_yaml_names_resolves_to_its_entry(project_dir):
    resolver = resolver_with(
        project_dir,
        """
        models:
          wakeword:
            path: models/okay_nabu.tflite
            budgets: {latency_p90_ms: 5}
        """,
    )
    resolved = resolver.resolve("models/okay_nabu.tflite")
    assert resolved.name == "wakeword" and resolved.spec.origin == "models.yaml"
    assert resolved.entry is not None and resolved.entry.budgets is not None


def test_overrides_change_free_dims_and_ranges(project_dir):
    resolver = resolver_with(
        project_dir,
        f"""
        models:
          classifier:
            path: models/classifier.onnx
            inputs: [{{name: features, shape: [8, 16], low: -2, high: 2}}]
          wakeword:
            path: models/okay_nabu.tflite
            inputs: [{{name: "{WAKEWORD_INPUT}", value: 5.0, dtype: int8}}]
        """,
    )
    (features,) = resolver.resolve("classifier").spec.inputs
    assert (features.shape, features.low, features.high, features.fill) == ((8, 16), -2.0, 2.0, "uniform")
    (audio,) = resolver.resolve("wakeword").spec.inputs
    assert (audio.fill, audio.value, audio.scale) == ("constant", 5.0, pytest.approx(0.10196078))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "{name: features, shape: [1, 17]}",
            "field 'inputs.features.shape': the model refuses [1, 17]: dim 1 is 16 in its signature [?, 16]; only "
            "free dims (?) can take another size",
        ),
        (
            "{name: features, shape: [1, 4, 16]}",
            "field 'inputs.features.shape': the model refuses [1, 4, 16]: it takes 2 dims [?, 16], not 3",
        ),
        (
            "{name: feature, shape: [2, 16]}",
            "field 'inputs': the model has no input 'feature' (its inputs: features). Did you mean 'features'?",
        ),
        (
            "{name: features, dtype: float16}",
            "field 'inputs.features.dtype': the model takes float32, not float16",
        ),
    ],
    ids=["fixed-dim", "rank", "unknown-name", "dtype"],
)
def test_an_override_the_model_refuses_is_an_error_naming_the_input(project_dir, override, message):
    resolver = resolver_with(
        project_dir, f"models:\n  classifier:\n    path: models/classifier.onnx\n    inputs: [{override}]\n"
    )
    with pytest.raises(ConfigError) as error:
        resolver.resolve("classifier")
    assert str(error.value) == f"{project_dir}/models.yaml: model 'classifier': {message}" or message in str(
        error.value
    )
    assert str(error.value).startswith(f"{project_dir}/models.yaml: model 'classifier': ")


def test_a_missing_file_and_a_pin_that_does_not_match_are_config_errors(project_dir):
    resolver = resolver_with(project_dir, "models:\n  gone: {path: models/gone.onnx}\n")
    with pytest.raises(ConfigError, match=r"model 'gone': field 'path': .*models/gone\.onnx not found"):
        resolver.resolve("gone")
    resolver = resolver_with(project_dir, "models:\n  pinned: {path: models/classifier.onnx, sha256: '" + "0" * 64 + "'}\n")
    with pytest.raises(ConfigError, match=r"model 'pinned': field 'sha256': .*classifier\.onnx has sha256 [0-9a-f]{64}, "
                       r"not 0{64}; update the pin"):
        resolver.resolve("pinned")


def test_a_url_model_is_downloaded_once_into_the_cache_and_verified(project_dir, file_server):
    content = (project_dir / "models" / "okay_nabu.tflite").read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    file_server.files["/models/okay_nabu.tflite"] = content
    text = f"models:\n  remote: {{url: '{file_server.url('/models/okay_nabu.tflite')}', sha256: {digest.upper()}}}\n"
    resolved = resolver_with(project_dir, text).resolve("remote")
    assert resolved.path == project_dir / "cache" / "models" / digest / "okay_nabu.tflite"
    assert resolved.spec.source == UrlSource(file_server.url("/models/okay_nabu.tflite"))
    assert (resolved.spec.format, resolved.spec.precision, resolved.spec.origin) == ("tflite", "int8", "models.yaml")
    requests_made = len(file_server.seen)
    assert resolver_with(project_dir, text).resolve("remote").path == resolved.path
    assert len(file_server.seen) == requests_made == 1  # the second run is served by the cache


def test_a_url_model_whose_bytes_do_not_match_is_refused_and_not_kept(project_dir, file_server):
    file_server.files["/m.onnx"] = b"not the model that was pinned"
    wanted = "ab" * 32
    text = f"models:\n  remote: {{url: '{file_server.url('/m.onnx')}', sha256: {wanted}}}\n"
    with pytest.raises(ModelError) as error:
        resolver_with(project_dir, text).resolve("remote")
    got = hashlib.sha256(b"not the model that was pinned").hexdigest()
    assert f"model 'remote': {file_server.url('/m.onnx')}: sha256 mismatch: expected {wanted}, got {got}" in str(error.value)
    assert "update its sha256 in models.yaml" in str(error.value)
    kept = [p for p in (project_dir / "cache").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert kept == []


def test_real_arrays_are_checked_and_made_model_ready():
    item = InputSpec("audio", (1, 3, 40), "int8", scale=0.1, zero_point=-128)
    real = np.zeros((1, 3, 40), np.float32)
    real[0, :, 0] = [0.0, 1.0, 30.0]
    ready = model_ready(sample_view(real, item, "data"), item, "data")  # the batch axis of 1 left out
    assert ready.dtype == np.int8 and ready.shape == (1, 1, 3, 40)
    assert ready[0, 0, :, 0].tolist() == [-128, -118, 127]  # 0.0, 1.0 and 30.0 clipped at the top
    with pytest.raises(ModelError, match=r"data: 2 samples of shape \[3, 41\], but input 'audio' takes \[1, 3, 40\]"):
        sample_view(np.zeros((2, 3, 41), np.float32), item, "data")
    plain = InputSpec("ids", (1, 4), "int64")
    with pytest.raises(ModelError, match="float64 values for input 'ids', which takes int64"):
        model_ready(np.zeros((1, 1, 4)), plain, "data")
