"""The plugin on a team's own project, through pytester: model files named by path, models.yaml,
the team's data and metric, budgets; and each bad input failing with one clear line."""

from __future__ import annotations

import json
import shutil
import textwrap

import numpy as np
import pytest

from tests.fixtures.project_models import WAKEWORD_INPUT, wakeword_file, write_classifier, write_project

FAST = ["--warmup-iters=1", "--warmup-s=0", "--min-iters=5", "--min-s=0", "--max-s=5", "-p", "no:cacheprovider"]


def records_of(pytester) -> list[dict]:
    return json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())["results"]


def test_a_fresh_project_runs_every_variant_and_scores_the_teams_data(pytester):
    """Done-means: a folder with a third-party int8 streaming .tflite, a dynamic-batch .onnx,
    models.yaml and one test file runs on local and records every variant, accuracy included."""
    write_project(pytester.path)
    run = pytester.runpytest(*FAST, "--device=local", "-rs")
    run.assert_outcomes(passed=10)
    records = records_of(pytester)
    ids = sorted(r["test"] for r in records)
    assert ids == sorted(
        f"test_project.py::test_{kind}[local-{variant}]"
        for kind in ("latency", "accuracy")
        for variant in (
            "wakeword-litert-int8",
            "classifier-onnxruntime-fp32",
            "classifier-onnxruntime-fp16",
            "classifier-onnxruntime-int8-dynamic",
            "classifier-onnxruntime-int8-static",
        )
    )
    assert {r["model_source"] for r in records} == {"models.yaml"}
    by_id = {(r["kind"], r["model"], r["precision"]): r for r in records}
    wake = by_id[("accuracy", "wakeword", "int8")]
    assert wake["format"] == "tflite" and wake["model_path"] == str(pytester.path / "models" / "okay_nabu.tflite")
    assert wake["accuracy"]["metric"] == "metrics:detection_rate" and wake["accuracy"]["clean"] == 1.0
    assert wake["accuracy"]["max_drop_vs_fp32_points"] is None
    assert wake["accuracy"]["fp32_missing"].startswith("wakeword ships int8 tflite and has no fp32 variant")
    assert wake["accuracy"]["slices"]["clean"]["samples"] == 12
    for precision in ("fp32", "fp16", "int8-dynamic", "int8-static"):
        scored = by_id[("accuracy", "classifier", precision)]["accuracy"]
        assert scored["metric"] == "top1" and scored["slices"]["clean"]["fp32"] == {"top1": 1.0}
        assert scored["clean"] >= 0.75  # labels are fp32's answers: quantized variants may differ a little
    assert by_id[("accuracy", "classifier", "fp32")]["accuracy"]["max_drop_vs_fp32_points"]["points"] == 0.0
    latency = by_id[("latency", "classifier", "fp32")]
    assert latency["latency_ms"]["samples"] >= 5
    assert [(b["metric"], b["ok"]) for b in latency["budgets"]] == [("latency_p90_ms", True), ("accuracy_drop_points", None)]
    assert [(b["metric"], b["ok"]) for b in by_id[("accuracy", "classifier", "int8-static")]["budgets"]] == [
        ("latency_p90_ms", None),
        ("accuracy_drop_points", True),
    ]


def test_a_model_file_in_the_marker_runs_by_its_stem_and_evaluate_says_why_it_cannot(pytester):
    (pytester.path / "models").mkdir()
    shutil.copyfile(wakeword_file(), pytester.path / "models" / "okay_nabu.tflite")
    pytester.makepyfile(
        test_file="""
import pytest

@pytest.mark.edge(model="models/okay_nabu.tflite")
def test_latency(edge):
    assert edge.benchmark().latency_ms.samples >= 5

@pytest.mark.edge(model="models/okay_nabu.tflite")
def test_accuracy(edge):
    edge.evaluate()
"""
    )
    run = pytester.runpytest(*FAST, "-rs")
    run.assert_outcomes(passed=1, skipped=1)
    run.stdout.fnmatch_lines(
        ["*SKIPPED*model 'okay_nabu' has no dataset to evaluate on: declare the file * in models.yaml with dataset*"]
    )
    (record,) = [r for r in records_of(pytester) if r["status"] == "passed"]
    assert record["test"] == "test_file.py::test_latency[local-okay_nabu-litert-int8]"
    assert record["test_id"] == "test_file.py::test_latency[okay_nabu-litert-int8]"
    assert (record["model_source"], record["format"], record["runtime"]) == ("file", "tflite", "litert")
    assert record["model_sha256"] == "d89128c4d16a72de429119fb2254ce46649553c2a24f5dd840175c80d7b9d094"


@pytest.mark.parametrize(
    ("setup", "marker", "message"),
    [
        (None, "models/detector.tflite", "model file 'models/detector.tflite' not found (looked at *"),
        ("garbage", "models/detector.tflite", "model file */models/detector.tflite: neither a TFLite flatbuffer*"),
        (None, "detektor", "unknown model 'detektor' (zoo models and project models: *"),
    ],
    ids=["unknown-path", "neither-format", "unknown-name"],
)
def test_a_bad_model_reference_fails_collection_in_one_line(pytester, setup, marker, message):
    if setup == "garbage":
        (pytester.path / "models").mkdir()
        (pytester.path / "models" / "detector.tflite").write_bytes(b"PK\x03\x04 not a model at all")
    pytester.makepyfile(
        test_bad=f"""
import pytest

@pytest.mark.edge(model="{marker}")
def test_x(edge):
    pass
"""
    )
    run = pytester.runpytest(*FAST)
    assert run.ret == pytest.ExitCode.INTERRUPTED  # a collection error stops the run
    run.stdout.fnmatch_lines([f"edgelab: test_bad.py::test_x: {message}"])
    assert "Traceback" not in run.stdout.str()


def test_a_shape_override_the_model_refuses_fails_collection_naming_the_input(pytester):
    write_classifier(pytester.path / "classifier.onnx")
    pytester.makefile(
        ".yaml", models="models:\n  classifier:\n    path: classifier.onnx\n    inputs: [{name: features, shape: [2, 15]}]\n"
    )
    pytester.makepyfile(test_c="import pytest\n\n@pytest.mark.edge(model='classifier')\ndef test_x(edge):\n    pass\n")
    run = pytester.runpytest(*FAST)
    assert (
        f"edgelab: test_c.py::test_x: {pytester.path}/models.yaml: model 'classifier': field 'inputs.features.shape': "
        "the model refuses [2, 15]: dim 1 is 16 in its signature [?, 16]; only free dims (?) can take another size"
    ) in run.stdout.lines
    assert "During handling" not in run.stdout.str()


def test_a_bad_models_yaml_is_a_usage_error_before_any_test(pytester):
    pytester.makefile(".yaml", teammodels="models:\n  det:\n    path: d.tflite\n    metrc: top1\n")
    run = pytester.runpytest("--models-file=teammodels.yaml")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*edgelab: teammodels.yaml: model 'det': unknown field 'metrc' (did you mean 'metric'?)"])


TEAM_TEST = """
import pytest

@pytest.mark.edge(model="classifier", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()

@pytest.mark.edge(model="classifier", precisions=["fp32"])
def test_accuracy(edge):
    edge.evaluate()
"""


def classifier_project(pytester, entry: str, data: dict[str, np.ndarray]) -> None:
    write_classifier(pytester.path / "classifier.onnx")
    np.savez(pytester.path / "val.npz", **data)
    pytester.makefile(".yaml", models=textwrap.dedent(entry).lstrip())
    pytester.makepyfile(test_team=TEAM_TEST)


def test_a_missed_budget_fails_the_test_with_the_evidence(pytester):
    features = np.random.default_rng(0).normal(0, 1, (4, 16)).astype(np.float32)
    classifier_project(
        pytester,
        """
        models:
          classifier:
            path: classifier.onnx
            dataset: {path: val.npz, format: npz}
            metric: top1
            budgets: {default: {latency_p90_ms: 0.000001}, never: {latency_p90_ms: 0.0000001}}
        """,
        {"features": features, "labels": np.zeros(4, np.int64)},
    )
    run = pytester.runpytest(*FAST, "--min-iters=60")  # enough per-iteration samples for a CI of p90
    run.assert_outcomes(failed=1, passed=1)  # the accuracy pass does not judge latency
    run.stdout.fnmatch_lines(["*EdgeLab budget missed: latency p90 * ms (95% CI *) over the budget of 1e-06 ms*"])
    latency = next(r for r in records_of(pytester) if r["kind"] == "latency")
    assert latency["status"] == "failed" and latency["budgets"][0]["ok"] is False
    assert latency["budgets"][0]["limit"] == 1e-06  # the tag block 'never' matches no device here


@pytest.mark.parametrize(
    ("metric", "data", "message"),
    [
        (
            "teammetric:boom",
            {"labels": np.zeros(4, np.int64)},
            "*models.yaml: model 'classifier': metric 'teammetric:boom' raised ZeroDivisionError: division by zero "
            "(outputs {'probs': (4, 1, 4)}, labels (4,)); fix the metric or the data",
        ),
        (
            "teammissing:f",
            {"labels": np.zeros(4, np.int64)},
            "*models.yaml: model 'classifier': metric 'teammissing:f' cannot be imported: ModuleNotFoundError: No "
            "module named 'teammissing'*",
        ),
        (
            "top1",
            {"labels": np.zeros(5, np.int64)},
            "*models.yaml: model 'classifier': dataset */val.npz: 4 samples but 5 labels in 'labels'; one label per "
            "sample",
        ),
        (
            "top1",
            {"feature": np.zeros((4, 16), np.float32), "labels": np.zeros(4, np.int64)},
            "*models.yaml: model 'classifier': dataset */val.npz: arrays ['feature', 'features', 'labels'] do not "
            "match the model's inputs ['features'] plus 'labels' (not inputs: feature)*",
        ),
    ],
    ids=["metric-raises", "metric-import", "label-count", "arrays"],
)
def test_the_teams_data_or_metric_not_fitting_fails_evaluate_in_one_line(pytester, metric, data, message):
    (pytester.path / "teammetric.py").write_text("def boom(outputs, labels):\n    return 1 / 0\n")
    features = np.random.default_rng(0).normal(0, 1, (4, 16)).astype(np.float32)
    classifier_project(
        pytester,
        f"""
        models:
          classifier:
            path: classifier.onnx
            dataset: {{path: val.npz, format: npz}}
            metric: {metric}
        """,
        {"features": features, **data},
    )
    run = pytester.runpytest(*FAST, "-k", "accuracy")
    run.assert_outcomes(failed=1, deselected=1)
    run.stdout.fnmatch_lines([message.replace("[", "[[]")])  # brackets are literal here
    assert "Traceback" not in run.stdout.str() and "During handling" not in run.stdout.str()


def test_quantized_inputs_reach_the_model_in_their_real_range(pytester):
    """The wake-word model's int8 input gets values standing for real features in [low, high)."""
    (pytester.path / "models").mkdir()
    shutil.copyfile(wakeword_file(), pytester.path / "models" / "okay_nabu.tflite")
    pytester.makefile(
        ".yaml",
        models=f'models:\n  wake:\n    path: models/okay_nabu.tflite\n    inputs: [{{name: "{WAKEWORD_INPUT}", low: 2, high: 3}}]\n',
    )
    pytester.makepyfile(
        test_w=f"""
import numpy as np, pytest

@pytest.mark.edge(model="wake")
def test_inputs(edge):
    from harness.models import zoo
    path = edge.lab.catalog.benchmark_inputs(edge.variant, zoo.cache_dir())
    values = np.load(path)[{WAKEWORD_INPUT!r}].astype(np.float32)
    real = (values + 128) * 0.10196078
    assert real.min() >= 1.94 and real.max() <= 3.06
    edge.benchmark()
"""
    )
    pytester.runpytest(*FAST).assert_outcomes(passed=1)
