"""Fuzzed models.yaml: random documents and mutations of a real one. Loading either gives a
Project or raises ConfigError naming the file, never another exception, and its traced memory
stays within a multiple of the input's size (the bounded YAML loader devices.yaml uses)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.models.project import Project, load_project
from tests.hostile_inputs.test_devices_yaml_fuzz import (
    FUZZ,
    MEMORY_FIXED,
    MEMORY_PER_INPUT_BYTE,
    PIECES,
    edits_of,
    mutate,
    scalars,
    values,
)

MODELS_FILE = """models:
  detector:
    path: models/detector.tflite
    description: the team's detector
    inputs:
      - {name: image, shape: [4, 224, 224, 3], low: -1.0, high: 1.0}
      - {name: state, value: 0}
    precisions: [fp32, fp16, int8-dynamic, int8-static]
    calibration: data/calibration.npz
    dataset:
      path: data/val
      format: image-folder
      preprocess: {size: [224, 224], layout: NCHW, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
    corruptions: [gaussian_noise@3, motion_blur, jpeg@5]
    metric: top5
    budgets:
      default: {latency_p90_ms: 30, peak_rss_mb: 200, energy_mj_per_inference: 5, accuracy_drop_points: 1.0}
      phone: {latency_p90_ms: 20}
  keywords:
    url: https://example.com/kws.onnx
    sha256: "0000000000000000000000000000000000000000000000000000000000000000"
    dataset: {path: data/keywords.csv, format: csv, classes: [silence, "yes", "no"]}
    corruptions: default
    metric: {name: "mymetrics:f1", better: higher}
"""
MODEL_PIECES = [*PIECES, "path: ", "url: ", "sha256: ", "metric: ", "dataset: ", "budgets: ", "format: npz"]

model_fields = st.dictionaries(
    st.sampled_from(
        [
            "path",
            "url",
            "sha256",
            "inputs",
            "precisions",
            "calibration",
            "dataset",
            "metric",
            "corruptions",
            "budgets",
            "description",
            "bogus",
        ]
    ),
    st.one_of(st.sampled_from(["m.onnx", "m.tflite", "top1", "default", "npz"]), values),
    max_size=8,
)
documents = st.one_of(
    st.dictionaries(st.sampled_from(["models", "model", "x"]), values, max_size=2),
    st.fixed_dictionaries(
        {"models": st.dictionaries(st.one_of(st.text(max_size=12), scalars), model_fields, max_size=5)}
    ),
    values,
)


def load_within_bounds(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "models.yaml"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        try:
            project = load_project(path)
        except ConfigError as exc:
            assert str(path) in str(exc), str(exc)
        else:
            assert isinstance(project, Project)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= MEMORY_FIXED + MEMORY_PER_INPUT_BYTE * len(data), (peak, len(data))


def test_the_real_document_loads(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(MODELS_FILE)
    project = load_project(path)
    assert sorted(project.models) == ["detector", "keywords"]


@FUZZ
@given(document=documents)
def test_random_documents(tmp_path, document):
    load_within_bounds(tmp_path, yaml.safe_dump(document, allow_unicode=True).encode("utf-8"))


@FUZZ
@given(edits=edits_of(MODEL_PIECES))
def test_mutated_real_document(tmp_path, edits):
    load_within_bounds(tmp_path, mutate(MODELS_FILE, edits))


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes(tmp_path, data):
    load_within_bounds(tmp_path, data)


def test_an_unquoted_yes_is_explained(tmp_path):
    import pytest

    path = tmp_path / "models.yaml"
    path.write_text(MODELS_FILE.replace('"yes", "no"', "yes, no"))
    with pytest.raises(ConfigError, match=r"'dataset.classes'.*got True: YAML reads yes/no/on/off"):
        load_project(path)
