"""models.yaml: every key validated, errors naming the file, the model, the field and the fix."""

from __future__ import annotations

import textwrap

import pytest

from harness.catalog import Catalog
from harness.errors import ConfigError
from harness.models.project import load_project


def write(tmp_path, text: str):
    path = tmp_path / "models.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def error_of(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as error:
        Catalog(tmp_path, write(tmp_path, text))
    return str(error.value)


def test_a_full_entry_is_read_with_paths_from_the_files_folder(tmp_path):
    project = load_project(
        write(
            tmp_path,
            """
            models:
              detector:
                path: models/detector.tflite
                description: the team's detector
                inputs: [{name: image, shape: [2, 224, 224, 3], low: -1, high: 1}]
                precisions: [fp32, int8-static]
                calibration: data/calibration.npz
                dataset:
                  path: data/val
                  format: image-folder
                  preprocess: {size: [224, 224], layout: NHWC, mean: [0.5, 0.5, 0.5], std: 0.5, color: BGR}
                corruptions: [gaussian_noise@3, jpeg]
                metric: {name: mymetrics:recall, better: higher}
                budgets:
                  default: {latency_p90_ms: 30, peak_rss_mb: 200}
                  phone: {latency_p90_ms: 20, energy_mj_per_inference: 5, accuracy_drop_points: 1.5}
              remote:
                url: https://models.example/remote.onnx
                sha256: "SHA256:AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12AB12"
                inputs: {data: data/real.npz}
                budgets: {latency_p90_ms: 10}
            """,
        )
    )
    detector = project.models["detector"]
    assert project.path_of(detector.path) == tmp_path / "models" / "detector.tflite"
    assert detector.inputs[0].shape == (2, 224, 224, 3) and detector.metric.name == "mymetrics:recall"
    assert detector.dataset.preprocess.color == "BGR" and detector.corruptions == ("gaussian_noise@3", "jpeg")
    # the strictest block that applies holds; other tags do not apply
    assert detector.budget_for(("phone",)) == {
        "latency_p90_ms": (20.0, "phone"),
        "peak_rss_mb": (200.0, "default"),
        "energy_mj_per_inference": (5.0, "phone"),
        "accuracy_drop_points": (1.5, "phone"),
    }
    assert detector.budget_for(("board",)) == {"latency_p90_ms": (30.0, "default"), "peak_rss_mb": (200.0, "default")}
    remote = project.models["remote"]
    assert remote.budgets == {"default": remote.budgets["default"]}  # the flat form is the default block
    assert remote.inputs.data == "data/real.npz"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "models:\n  det:\n    path: d.tflite\n    precision: [fp32]\n",
            "models.yaml: model 'det': unknown field 'precision' (did you mean 'precisions'?)",
        ),
        (
            "models:\n  det:\n    path: d.tflite\n    dataset: {path: v, format: npz, lables: y}\n    metric: top1\n",
            "models.yaml: model 'det': unknown field 'dataset.lables' (did you mean 'labels'?)",
        ),
        (
            "models:\n  det:\n    path: d.tflite\n    budgets: {phone: {latency_p99_ms: 3}}\n",
            "models.yaml: model 'det': unknown field 'budgets.phone.latency_p99_ms' (did you mean 'latency_p90_ms'?)",
        ),
        (
            "modles:\n  det: {path: d.tflite}\n",
            "models.yaml: unknown top-level key(s) ['modles'] (did you mean 'models'?); only 'models' is read",
        ),
        (
            "models:\n  det: {path: d.tflite, url: 'https://x/d.tflite', sha256: "
            + "a" * 64
            + "}\n",
            "models.yaml: model 'det': give exactly one of 'path' (a file) or 'url' (with its 'sha256')",
        ),
        (
            "models:\n  det: {url: 'https://x/d.tflite'}\n",
            "models.yaml: model 'det': field 'sha256' is required with 'url'",
        ),
        (
            "models:\n  det: {url: 'https://x/d.tflite', sha256: abc}\n",
            "models.yaml: model 'det': field 'sha256': 64 hexadecimal characters (got 'abc')",
        ),
        (
            "models:\n  det: {url: 'ftp://x/d.tflite', sha256: " + "a" * 64 + "}\n",
            "models.yaml: model 'det': field 'url': only http:// and https:// are downloaded",
        ),
        (
            "models:\n  silero_vad: {path: mine.onnx}\n",
            "models.yaml: model 'silero_vad' has the name of a zoo model; rename it",
        ),
        (
            "models:\n  'my model': {path: m.onnx}\n",
            "models.yaml: model 'my model': a name is 1-64 letters, digits",
        ),
        (
            "models:\n  det: {path: d.tflite, metric: top1}\n",
            "models.yaml: model 'det': field 'metric' needs a 'dataset' to score",
        ),
        (
            "models:\n  det: {path: d.tflite, dataset: {path: v.npz, format: npz}}\n",
            "models.yaml: model 'det': field 'dataset' needs a 'metric'",
        ),
        (
            "models:\n  det: {path: d.tflite, dataset: {path: v.npz, format: parquet}, metric: top1}\n",
            "models.yaml: model 'det': field 'dataset.format': Input should be 'npz', 'image-folder' or 'csv'",
        ),
        (
            "models:\n  det: {path: d.tflite, precisions: [int4]}\n",
            "models.yaml: model 'det': field 'precisions': Input should be 'fp32', 'fp16', 'int8', 'int8-dynamic'",
        ),
        (
            "models:\n  det: {path: d.tflite, inputs: {name: x}}\n",
            "models.yaml: model 'det': field 'inputs': give a list of overrides",
        ),
        (
            "models:\n  det: {path: d.tflite, inputs: [{name: x, low: 2, high: 1}]}\n",
            "models.yaml: model 'det': field 'inputs.x': low 2.0 must be below high 1.0",
        ),
        (
            "models:\n  det: {path: d.tflite, budgets: {latency_p90_ms: 5, phone: {peak_rss_mb: 9}}}\n",
            "models.yaml: model 'det': field 'budgets': ['latency_p90_ms'] sit beside tag blocks",
        ),
        (
            "models:\n  det: {path: d.tflite, budgets: {default: {latency_p90_ms: -1}}}\n",
            "models.yaml: model 'det': field 'budgets.default.latency_p90_ms': Input should be greater than 0",
        ),
        (
            "models:\n  det: {path: d.tflite, dataset: {path: v, format: npz}, metric: tpo1}\n",
            "models.yaml: model 'det': field 'metric': unknown metric 'tpo1' (did you mean 'top1'?)",
        ),
        (
            "models:\n  det: {path: d.tflite, dataset: {path: v, format: npz}, metric: 'a b:c'}\n",
            "models.yaml: model 'det': field 'metric': 'a b:c' is not module:function",
        ),
        (
            "models:\n  det: {path: d, dataset: {path: v, format: csv}, metric: top1, corruptions: [gausian_noise@3]}\n",
            "models.yaml: model 'det': field 'corruptions': unknown corruption 'gausian_noise' (did you mean "
            "'gaussian_noise'?)",
        ),
        (
            "models:\n  det: {path: d, dataset: {path: v, format: csv}, metric: top1, corruptions: [jpeg@9]}\n",
            "models.yaml: model 'det': field 'corruptions': 'jpeg@9': the severity after @ is 1-5",
        ),
        ("models:\n  det: [path, d]\n", "models.yaml: model 'det': expected a mapping of fields, got list"),
        ("models: [1, 2]\n", "models.yaml: expected a top-level mapping 'models: {NAME: {path: ...}}'"),
        ("models:\n  det: {path: [unclosed\n", "models.yaml: line 3, column 1: not valid YAML"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else value,
)
def test_every_bad_entry_names_the_file_the_model_the_field_and_the_fix(tmp_path, text, message):
    assert message in error_of(tmp_path, text).replace(str(tmp_path) + "/", "")


def test_a_missing_file_named_explicitly_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found \(pass --models-file with an existing file\)"):
        Catalog(tmp_path, tmp_path / "nope.yaml")


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models: {}\n" + "#" * (1 << 20))
    with pytest.raises(ConfigError, match=r"models\.yaml: 1\.0 MB is more than the 1\.0 MB this file may have"):
        load_project(path)


def test_an_alias_bomb_is_refused_before_it_is_built(tmp_path):
    """models.yaml is read by the same bounded loader as devices.yaml (harness.yamlfile)."""
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    path = tmp_path / "models.yaml"
    path.write_text("\n".join(rows) + "\nmodels: {}\n")
    with pytest.raises(ConfigError, match=r"models\.yaml: line \d+: more than 100000 values"):
        load_project(path)


def test_an_empty_file_has_no_models(tmp_path):
    assert load_project(write(tmp_path, "")).models == {}
