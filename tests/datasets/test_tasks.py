"""Task metrics on known answers, evaluation sets shaped for the models, and the accuracy report."""

from __future__ import annotations

import numpy as np
import pytest

from harness.accuracy import score, split
from harness.datasets.tasks import (
    CLEAN,
    EvalSet,
    FaceDetection,
    OcrRecognition,
    TaskError,
    TextDetection,
    TextOrientation,
    VoiceActivity,
    edit_distance,
    task_for,
)
from harness.models import zoo


def test_edit_distance_known_answers():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("same", "same") == 0


def logits_for(task: OcrRecognition, texts: list[str], steps: int = 40) -> np.ndarray:
    """CTC logits that spell ``texts``: one frame per character with blanks between repeats."""
    characters = task.characters()
    out = np.zeros((len(texts), 1, steps, len(characters) + 1), np.float32)
    for row, text in enumerate(texts):
        frame = 0
        for char in text:
            out[row, 0, frame, characters.index(char) + 1] = 10
            out[row, 0, frame + 1, 0] = 10  # blank, so doubled letters survive
            frame += 2
        out[row, 0, frame:, 0] = 10
    return out


def test_ocr_decode_and_metrics():
    task = task_for("ppocr_rec")
    assert isinstance(task, OcrRecognition)
    logits = logits_for(task, ["EDGE LAB", "2026", "int8"])
    assert task.decode(logits) == ["EDGE LAB", "2026", "int8"]
    metrics = task.score({"y": logits}, ["EDGE LAB", "2025", "int8"])
    assert metrics["exact_match"] == pytest.approx(2 / 3)
    assert metrics["cer"] == pytest.approx((0 + 1 / 4 + 0) / 3)
    other = logits_for(task, ["EDGE LAB", "2026", "fp16"])
    assert task.agreement({"y": logits}, {"y": other}) == pytest.approx(2 / 3)


def test_orientation_detection_and_vad_metrics():
    orientation = TextOrientation(zoo.get("ppocr_cls"))
    probabilities = np.array([[[0.9, 0.1]], [[0.2, 0.8]], [[0.6, 0.4]]], np.float32)
    assert orientation.score({"p": probabilities}, [0, 1, 1])["accuracy"] == pytest.approx(2 / 3)
    detection = TextDetection(zoo.get("ppocr_det"))
    truth = np.zeros((320, 320), bool)
    truth[:160] = True
    half = np.zeros((1, 1, 1, 320, 320), np.float32)
    half[..., :80, :] = 0.9  # finds half of the text rows
    assert detection.score({"m": half}, [truth])["iou"] == pytest.approx(0.5)
    vad = VoiceActivity(zoo.get("silero_vad"))
    predicted = np.array([0.9, 0.9, 0.1, 0.9, 0.1], np.float32).reshape(5, 1, 1)
    metrics = vad.score({"output": predicted}, [True, True, True, False, False])
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))


def test_face_detection_decides_on_the_best_anchor_at_mediapipe_threshold():
    task = task_for("face_detection")
    assert isinstance(task, FaceDetection)
    logits = np.full((4, 896, 1), -8.0, np.float32)
    logits[0, 17, 0] = 3.0  # one anchor sure of a face
    logits[1, 5, 0] = 0.1  # sigmoid 0.525: a face at MediaPipe's 0.5
    logits[3, 900 % 896, 0] = 2.0  # a face where there is none
    boxes = np.zeros((4, 896, 16), np.float32)
    metrics = task.score({"regressors": boxes, "classificators": logits}, [True, True, True, False])
    assert metrics == pytest.approx({"accuracy": 0.5, "recall": 2 / 3, "false_positive_rate": 1.0})
    flipped = np.full_like(logits, -8.0)
    flipped[2, 0, 0] = 5.0  # every decision the other way round
    assert task.agreement({"classificators": logits}, {"classificators": flipped}) == 0.0
    assert task.agreement({"classificators": logits}, {"classificators": logits}) == 1.0
    assert "false_positive_rate" in task.lower_is_better


def test_face_evaluation_runs_the_real_detector_on_real_faces():
    from harness.accuracy import host_runner

    task = task_for("face_detection")
    evalset = task.build(["low_light"], (5,), seed=0)
    assert evalset.inputs["input"].shape == (task.crops * 2, 1, 128, 128, 3)
    assert sum(evalset.labels[: task.crops]) == task.crops // 2  # half faces
    run = host_runner(zoo.fetch(zoo.get("face_detection")), "tflite")
    outputs = [run(evalset.float_inputs(i)) for i in range(evalset.size)]
    stacked = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    report = score(task, evalset, stacked, None, "fp16", fp32_missing="shipped in fp16")
    # MediaPipe's short-range detector finds LFW faces and rejects the subset's other crops
    assert report.value() >= 0.85 and report.slices[CLEAN].metrics["recall"] >= 0.9
    assert report.max_drop_vs_fp32() is None and report.record().fp32_missing == "shipped in fp16"


def test_evalset_matches_the_model_inputs_and_slices():
    task = task_for("ppocr_cls")
    evalset = task.build(["gaussian_noise", "jpeg"], (1, 5), seed=0)
    assert (
        evalset.inputs["x"].shape == (task.lines * 5, 1, 3, 48, 192) and evalset.inputs["x"].dtype == np.uint8
    )
    assert evalset.slices[: task.lines] == [CLEAN] * task.lines
    assert evalset.slices.count("jpeg@5") == task.lines
    feed = evalset.float_inputs(0)
    assert feed["x"].shape == (1, 3, 48, 192) and feed["x"].dtype == np.float32
    assert float(feed["x"].min()) >= -1.0 and float(feed["x"].max()) <= 1.0
    assert evalset.labels[:4] == [0, 1, 0, 1]


def test_wrong_corruptions_and_unknown_models_are_clear_errors():
    with pytest.raises(TaskError, match=r"do not apply to image \(use: gaussian_noise"):
        task_for("ppocr_rec").build(["reverb"], (1,), 0)
    with pytest.raises(TaskError, match="no evaluation task for 'hand_landmark'"):
        task_for("hand_landmark")


def test_accuracy_report_drop_and_worst_slice():
    task = TextOrientation(zoo.get("ppocr_cls"))

    evalset = EvalSet("ppocr_cls", "text_orientation", {}, [CLEAN, CLEAN, "jpeg@5", "jpeg@5"], [0, 1, 0, 1])

    right = np.array([[[1, 0]], [[0, 1]], [[1, 0]], [[0, 1]]], np.float32)
    wrong_once = np.array([[[1, 0]], [[0, 1]], [[1, 0]], [[1, 0]]], np.float32)
    report = score(task, evalset, {"p": wrong_once}, {"p": right}, "int8-dynamic")
    assert report.value() == 1.0 and report.value("jpeg@5") == 0.5
    assert report.worst_slice() == ("jpeg@5", 0.5)
    assert report.drop_vs_fp32("jpeg@5") == pytest.approx(50.0)
    assert report.max_drop_vs_fp32() == ("jpeg@5", pytest.approx(50.0))
    assert report.slices["jpeg@5"].agreement == 0.5
    assert split({"p": right}, evalset.slices)["jpeg@5"][0] == [2, 3]
    with pytest.raises(ValueError, match="outputs for 4 inputs"):
        score(task, evalset, {"p": right[:3]}, {"p": right}, "fp32")
