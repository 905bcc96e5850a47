"""The catalog joins models and data: variants calibrated on real data (the zoo's task or the team's
.npz), benchmark inputs, the evaluation of a model and its fp32 reference."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from harness.catalog import Catalog, NoEvaluation
from harness.errors import ConfigError, DataError
from tests.fixtures.project_models import WAKEWORD_INPUT, wakeword_file, write_classifier


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    shutil.copyfile(wakeword_file(), tmp_path / "models" / "okay_nabu.tflite")
    monkeypatch.setenv("EDGELAB_CACHE", str(tmp_path / "cache"))
    write_classifier(tmp_path / "models" / "classifier.onnx")
    return tmp_path


def catalog_with(folder, text: str) -> Catalog:
    (folder / "models.yaml").write_text(textwrap.dedent(text).lstrip())
    return Catalog(folder, folder / "models.yaml")


def test_models_no_longer_imports_datasets():
    code = (
        "import sys, harness.models.variants, harness.models.resolve, harness.models.recipes; "
        "print(sorted(m for m in sys.modules if m.startswith('harness.datasets')))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


def test_zoo_variants_are_calibrated_on_their_task_and_team_models_on_their_npz(project):
    catalog = catalog_with(
        project,
        """
        models:
          calibrated: {path: models/classifier.onnx, calibration: data/calibration.npz}
          uncalibrated: {path: models/classifier.onnx}
        """,
    )
    (project / "data").mkdir()
    np.savez(project / "data" / "calibration.npz", features=np.ones((6, 16), np.float32))
    zoo_static = next(v for v in catalog.variants("ppocr_cls") if v.precision == "int8-static")
    assert zoo_static.unavailable is None and zoo_static.calibration is not None
    ours = {v.precision: v for v in catalog.variants("calibrated")}
    assert list(ours) == ["fp32", "fp16", "int8-dynamic", "int8-static"]
    feeds = list(ours["int8-static"].calibration())
    assert len(feeds) == 6 and feeds[0]["features"].shape == (1, 16)  # the free batch axis became 1
    bare = {v.precision: v.unavailable for v in catalog.variants("uncalibrated")}
    assert bare["int8-static"] == (
        "uncalibrated: int8-static needs calibration data: set calibration: an .npz of real inputs in its "
        "models.yaml entry (never random numbers)"
    )


def test_a_calibration_file_that_does_not_fit_is_refused(project):
    catalog = catalog_with(project, "models:\n  c: {path: models/classifier.onnx, calibration: calibration.npz}\n")
    np.savez(project / "calibration.npz", feature=np.ones((6, 16), np.float32))
    with pytest.raises(ConfigError, match=r"calibration .*calibration\.npz: arrays \['feature'\] do not match the "
                       r"model's inputs \['features'\]"):
        catalog.variants("c")


def test_a_tflite_model_lists_precisions_it_cannot_take_with_the_reason(project):
    catalog = catalog_with(project, "models:\n  wake: {path: models/okay_nabu.tflite, precisions: [int8, fp32]}\n")
    variants = {v.precision: v for v in catalog.variants("wake")}
    assert variants["int8"].unavailable is None and variants["int8"].runtime == "litert"
    assert "wake: fp32 is not available: the tflite model ships int8 and EdgeLab's precision recipes build ONNX" in (
        variants["fp32"].unavailable
    )
    assert [v.id for v in Catalog(project).variants("models/okay_nabu.tflite")] == ["okay_nabu-litert-int8"]


def test_synthetic_inputs_of_a_quantized_model_stay_in_its_real_range(project):
    catalog = catalog_with(
        project, f'models:\n  wake:\n    path: models/okay_nabu.tflite\n    inputs: [{{name: "{WAKEWORD_INPUT}", low: 1.0, high: 2.0}}]\n'
    )
    (variant,) = catalog.variants("wake")
    with np.load(catalog.benchmark_inputs(variant, project / "cache")) as archive:
        values = archive[WAKEWORD_INPUT]
    assert values.dtype == np.int8 and values.shape == (1, 1, 3, 40)
    real = (values.astype(np.float32) + 128) * 0.10196078
    assert real.min() >= 1.0 - 0.06 and real.max() <= 2.0 + 0.06  # within half a step of [1, 2)


def test_real_benchmark_inputs_are_made_model_ready_or_refused(project):
    catalog = catalog_with(project, "models:\n  wake: {path: models/okay_nabu.tflite, inputs: {data: real.npz}}\n")
    np.savez(project / "real.npz", **{WAKEWORD_INPUT: np.full((3, 3, 40), 12.95, np.float32)})
    (variant,) = catalog.variants("wake")
    with np.load(catalog.benchmark_inputs(variant, project / "cache")) as archive:
        assert archive[WAKEWORD_INPUT].shape == (3, 1, 3, 40) and set(archive[WAKEWORD_INPUT].ravel()) == {127 - 128}
    catalog = catalog_with(project, "models:\n  wake: {path: models/okay_nabu.tflite, inputs: {data: bad.npz}}\n")
    np.savez(project / "bad.npz", audio=np.zeros((3, 3, 40)))
    (variant,) = catalog.variants("wake")
    with pytest.raises(DataError, match=r"inputs\.data .*bad\.npz: arrays \['audio'\] do not match the model's inputs"):
        catalog.benchmark_inputs(variant, project / "cache")


def test_a_model_without_a_dataset_has_no_evaluation_and_says_how_to_add_one(project):
    catalog = Catalog(project)
    (variant,) = catalog.variants("models/okay_nabu.tflite")
    with pytest.raises(NoEvaluation, match=r"model 'okay_nabu' has no dataset to evaluate on: declare the file .*"
                       r"okay_nabu\.tflite in models\.yaml with dataset: \{path, format\} and metric:"):
        catalog.evaluation(variant, project / "cache")
    with pytest.raises(NoEvaluation, match="no evaluation task for 'hand_landmark'"):
        catalog.evaluation(catalog.variants("hand_landmark")[0], project / "cache")
    fp32, why = catalog.fp32_variant(variant)
    assert fp32 is None and why.startswith("okay_nabu ships int8 tflite and has no fp32 variant")
    (classifier_fp32, _) = catalog.fp32_variant(catalog.variants("models/classifier.onnx")[2])
    assert classifier_fp32 is not None and classifier_fp32.precision == "fp32"
