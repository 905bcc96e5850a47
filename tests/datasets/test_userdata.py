"""The team's datasets (npz, image-folder, csv of images, .wav audio or .npy rows) built into
memory-mapped evaluation sets, and every way they can fail to fit the model."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from harness.datasets import metrics
from harness.datasets.tasks import CLEAN
from harness.datasets.userdata import DatasetTask
from harness.errors import DataError
from harness.models.project import DatasetConfig, Preprocess
from harness.models.spec import FileSource, InputSpec, ModelSpec, OutputSpec
from tests.fixtures.project_models import WAKEWORD_INPUT

TOP1 = metrics.load("top1", lower_is_better=False, output=None, rootdir=Path("."), where="test")


def spec_of(*inputs: InputSpec, outputs: tuple[OutputSpec, ...] = ()) -> ModelSpec:
    return ModelSpec(
        name="team",
        format="onnx",
        precision="fp32",
        sha256="f" * 64,
        size_bytes=1,
        inputs=inputs,
        outputs=outputs,
        source=FileSource(Path("team.onnx")),
        origin="models.yaml",
    )


WAKE = spec_of(
    InputSpec(WAKEWORD_INPUT, (1, 3, 40), "int8", scale=0.1, zero_point=-128),
    outputs=(OutputSpec("prob", (1, 1), "uint8", scale=1 / 256, zero_point=0),),
)


def task(tmp_path, spec, metric=TOP1, declared=None, **config) -> DatasetTask:
    return DatasetTask(
        spec,
        DatasetConfig(**config),
        metric,
        folder=tmp_path,
        cache=tmp_path / "cache",
        declared=declared,
        where="models.yaml: model 'team'",
    )


def test_an_npz_becomes_model_ready_memory_mapped_samples(tmp_path):
    real = np.zeros((5, 3, 40), np.float32)
    real[:, 0, 0] = [0.0, 1.0, 2.0, 12.7, 30.0]
    np.savez(tmp_path / "data.npz", **{WAKEWORD_INPUT: real, "labels": np.arange(5)})
    evalset = task(tmp_path, WAKE, path="data.npz", format="npz").build([], (), 0)
    values = evalset.inputs[WAKEWORD_INPUT]
    assert isinstance(values, np.memmap) and values.dtype == np.int8 and values.shape == (5, 1, 3, 40)
    assert values[:, 0, 0, 0].tolist() == [-128, -118, -108, -1, 127]  # real values through scale/zero point
    assert evalset.slices == [CLEAN] * 5 and list(evalset.labels) == [0, 1, 2, 3, 4]
    # built once: a second build reuses the files on disk
    again = task(tmp_path, WAKE, path="data.npz", format="npz").build([], (), 0)
    assert Path(again.inputs[WAKEWORD_INPUT].filename) == Path(values.filename)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"audio": np.zeros((3, 3, 40), np.float32), "labels": np.zeros(3)},
            "arrays ['audio', 'labels'] do not match the model's inputs ['serving_default_input_audio:0'] plus "
            "'labels' (missing: serving_default_input_audio:0) (not inputs: audio)",
        ),
        (
            {WAKEWORD_INPUT: np.zeros((3, 3, 40), np.float32), "labels": np.zeros(4)},
            "3 samples but 4 labels in 'labels'; one label per sample",
        ),
        (
            {WAKEWORD_INPUT: np.zeros((3, 3, 41), np.float32), "labels": np.zeros(3)},
            "'serving_default_input_audio:0': 3 samples of shape [3, 41], but input "
            "'serving_default_input_audio:0' takes [1, 3, 40] per sample",
        ),
        (
            {WAKEWORD_INPUT: np.zeros((3, 3, 40), np.float32)},
            "no 'labels' array; add the labels (or set dataset.labels to their name)",
        ),
        (
            {WAKEWORD_INPUT: np.zeros((3, 3, 40), np.complex64), "labels": np.zeros(3)},
            "complex64 values for input 'serving_default_input_audio:0', which takes int8",
        ),
    ],
    ids=["input-names", "label-count", "shape", "no-labels", "dtype"],
)
def test_an_npz_that_does_not_fit_the_model_names_what_differs(tmp_path, arrays, message):
    np.savez(tmp_path / "data.npz", **arrays)
    with pytest.raises(DataError) as error:
        task(tmp_path, WAKE, path="data.npz", format="npz").build([], (), 0)
    assert message in str(error.value)
    assert str(error.value).startswith("models.yaml: model 'team': ")


def test_corruptions_do_not_apply_to_model_ready_tensors(tmp_path):
    np.savez(tmp_path / "data.npz", **{WAKEWORD_INPUT: np.zeros((2, 3, 40), np.float32), "labels": np.zeros(2)})
    with pytest.raises(DataError, match="an npz dataset holds model-ready tensors, which no corruption applies to"):
        task(tmp_path, WAKE, path="data.npz", format="npz", declared=("gaussian_noise@3",))


IMAGE = spec_of(InputSpec("image", (1, 3, 8, 8), "float32"))


def make_images(folder: Path) -> None:
    for index, (name, color) in enumerate([("cat", (200, 10, 10)), ("dog", (10, 10, 200))]):
        (folder / name).mkdir(parents=True)
        for copy in range(2):
            Image.new("RGB", (16 + index, 12 + copy), color).save(folder / name / f"{copy}.png")


def test_an_image_folder_is_resized_normalised_and_corrupted_per_slice(tmp_path):
    make_images(tmp_path / "val")
    evalset = task(
        tmp_path,
        IMAGE,
        path="val",
        format="image-folder",
        preprocess=Preprocess(mean=(0.5, 0.5, 0.5), std=0.5),
        declared=("gaussian_noise@3", "jpeg@5"),
    ).build(["gaussian_noise@3", "jpeg@5"], (1, 3, 5), 0)
    assert evalset.slices == [CLEAN] * 4 + ["gaussian_noise@3"] * 4 + ["jpeg@5"] * 4
    assert list(evalset.labels) == [0, 0, 1, 1] * 3  # classes in sorted folder order
    stored = evalset.inputs["image"]
    assert stored.dtype == np.uint8 and stored.shape == (12, 1, 3, 8, 8)  # compact: uint8 plus the affine
    first = evalset.float_inputs(0)["image"]
    assert first.shape == (1, 3, 8, 8) and first.dtype == np.float32
    assert first[0, :, 0, 0] == pytest.approx([200 / 127.5 - 1, 10 / 127.5 - 1, 10 / 127.5 - 1], abs=1e-5)
    assert not np.array_equal(stored[4], stored[0])  # the noisy copy of the same image differs


def test_a_csv_of_images_maps_class_names_and_says_which_line_is_wrong(tmp_path):
    make_images(tmp_path / "img")
    (tmp_path / "val.csv").write_text("path,label\nimg/cat/0.png,cat\nimg/dog/1.png,dog\n")
    built = task(tmp_path, IMAGE, path="val.csv", format="csv", classes=("dog", "cat")).build([], (), 0)
    assert list(built.labels) == [1, 0]
    (tmp_path / "bad.csv").write_text("path,label\nimg/cat/0.png,cat\nimg/cat/9.png,cat\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 3: .*img/cat/9\.png does not exist"):
        task(tmp_path, IMAGE, path="bad.csv", format="csv").build([], (), 0)
    (tmp_path / "classes.csv").write_text("path,label\nimg/cat/0.png,bird\n")
    with pytest.raises(DataError, match=r"class 'bird' is not in dataset\.classes \(dog, cat\)"):
        task(tmp_path, IMAGE, path="classes.csv", format="csv", classes=("dog", "cat")).build([], (), 0)


def write_wav(path: Path, seconds: float, rate: int) -> None:
    samples = (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())


def test_a_csv_of_wav_files_feeds_a_waveform_input_resampled_and_corrupted(tmp_path):
    write_wav(tmp_path / "a.wav", 0.5, 8000)
    write_wav(tmp_path / "b.wav", 2.0, 16000)
    (tmp_path / "audio.csv").write_text("path,label\na.wav,1\nb.wav,0\n")
    audio = spec_of(InputSpec("waveform", (1, 16000), "float32"))
    evalset = task(tmp_path, audio, path="audio.csv", format="csv", declared="default").build(
        ["noise_snr@1"], (1,), 0
    )
    values = evalset.inputs["waveform"]
    assert values.shape == (4, 1, 16000) and evalset.slices == [CLEAN, CLEAN, "noise_snr@1", "noise_snr@1"]
    assert np.abs(values[0, 0, :8000]).max() == pytest.approx(0.5, abs=0.01)  # 8 kHz resampled to 16 kHz
    assert not values[0, 0, 8000:].any()  # 0.5 s padded to the input's 1 s
    assert list(evalset.labels) == [1, 0, 1, 0]
    wrong = spec_of(InputSpec("features", (1, 3, 40), "float32"))
    with pytest.raises(DataError, match=r"input 'features' \[1, 3, 40\] float32 is not a waveform"):
        task(tmp_path, wrong, path="audio.csv", format="csv").build([], (), 0)


def test_metrics_give_known_answers():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = np.array([1, 1, 2])
    assert metrics.top_k(probs, labels, 1) == pytest.approx(2 / 3)
    assert metrics.top_k(probs, labels, 2) == 1.0
    sequences = np.zeros((2, 3, 4))
    sequences[0, [0, 1, 2], [1, 2, 3]] = 1
    sequences[1, [0, 1, 2], [1, 1, 1]] = 1
    assert metrics.exact_match(sequences, np.array([[1, 2, 3], [1, 2, 1]])) == 0.5
    assert metrics.mse(np.ones((2, 3)), np.zeros((2, 3))) == 1.0
    assert metrics.cosine(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 0.0]])) == 1.0


def test_a_quantized_output_is_scored_in_real_values(tmp_path):
    np.savez(tmp_path / "data.npz", **{WAKEWORD_INPUT: np.zeros((2, 3, 40), np.float32), "labels": np.zeros(2)})
    seen = {}

    def remember(outputs, labels):
        seen.update(outputs)
        return 0.5

    metric = metrics.Metric("m:f", remember, False, None)
    scored = task(tmp_path, WAKE, metric, path="data.npz", format="npz").score(
        {"prob": np.array([[[0]], [[128]]], np.uint8)}, [0, 0]
    )
    assert scored == {"m:f": 0.5} and seen["prob"].ravel().tolist() == [0.0, 0.5]


def test_a_metric_that_does_not_import_raises_or_returns_nonsense_is_one_clear_line(tmp_path):
    (tmp_path / "teammetrics.py").write_text(
        "import numpy as np\n"
        "def boom(outputs, labels):\n    raise ValueError('labels must be 0 or 1')\n"
        "def text(outputs, labels):\n    return 'high'\n"
        "def nan(outputs, labels):\n    return float('nan')\n"
    )
    with pytest.raises(DataError, match=r"test: metric 'nomodule:f' cannot be imported: ModuleNotFoundError: "
                       r"No module named 'nomodule' \(looked in .* first\); put the module in the project folder"):
        metrics.load("nomodule:f", lower_is_better=False, output=None, rootdir=tmp_path, where="test")
    with pytest.raises(DataError, match=r"module 'teammetrics' \(.*teammetrics\.py\) has no function 'missing'"):
        metrics.load("teammetrics:missing", lower_is_better=False, output=None, rootdir=tmp_path, where="test")
    outputs, labels = {"y": np.zeros((2, 3))}, np.zeros(2)
    for name, message in (
        ("boom", r"metric 'teammetrics:boom' raised ValueError: labels must be 0 or 1 \(outputs \{'y': \(2, 3\)\}, "
                 r"labels \(2,\)\); fix the metric or the data"),
        ("text", r"metric 'teammetrics:text' returned str 'high', not a float"),
        ("nan", r"metric 'teammetrics:nan' returned nan .*a metric must be finite"),
    ):
        metric = metrics.load(f"teammetrics:{name}", lower_is_better=False, output=None, rootdir=tmp_path, where="w")
        with pytest.raises(DataError, match=message):
            metrics.call(metric, outputs, labels, "w")


def test_an_onnx_image_model_scores_top1_through_the_dataset(tmp_path):
    """End to end on the host: folder -> evalset -> ONNX Runtime -> top1."""
    import onnxruntime

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["colour"], axes=[2, 3], keepdims=0)],
        "mean_colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("colour", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    make_images(tmp_path / "val")
    dataset = task(tmp_path, IMAGE, path="val", format="image-folder", classes=("red", "green", "blue"))
    with pytest.raises(DataError, match=r"class 'cat' is not in dataset\.classes \(red, green, blue\)"):
        dataset.build([], (), 0)
    for name, colour in (("cat", "red"), ("dog", "blue")):
        (tmp_path / "val" / name).rename(tmp_path / "val" / colour)
    dataset = task(tmp_path, IMAGE, path="val", format="image-folder", classes=("red", "green", "blue"))
    evalset = dataset.build([], (), 0)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    outputs = np.stack([session.run(None, evalset.float_inputs(i))[0] for i in range(evalset.size)])
    assert dataset.score({"colour": outputs}, list(evalset.labels)) == {"top1": 1.0}
