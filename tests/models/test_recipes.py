"""Variant recipes on real models: each builds a loadable model that is recorded and cached,
and what a model cannot take is refused with the reason (never a silent copy)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest

from harness.datasets.tasks import task_for
from harness.models import zoo
from harness.models.recipes import RecipeRefused, build, refusal
from harness.models.variants import select_variants, variants_for


def initializer_types(path) -> set[int]:
    return {t.data_type for t in onnx.load(str(path)).graph.initializer}


def test_fp16_keeps_io_types_and_falls_back_for_control_flow():
    built = build(zoo.get("silero_vad"), "fp16")
    model = onnx.load(str(built.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # io kept fp32
    settings = built.recipe["settings"]
    assert "If" in settings["kept_in_fp32"]  # the first try does not load: mistyped If subgraphs
    # silero keeps its weights inside the If branches, so its "fp16" variant stays mostly fp32,
    # and the recipe says so
    assert settings["fp16_weight_share"] < 0.5
    rec = build(zoo.get("ppocr_rec"), "fp16").recipe["settings"]
    assert rec["fp16_weight_share"] > 0.99 and "If" not in rec["kept_in_fp32"]
    onnxruntime.InferenceSession(str(built.path), providers=["CPUExecutionProvider"])
    assert built.recipe["versions"]["onnxconverter-common"]


def test_int8_dynamic_and_static_quantize_the_weights():
    spec = zoo.get("ppocr_cls")
    dynamic = build(spec, "int8-dynamic")
    assert onnx.TensorProto.INT8 in initializer_types(dynamic.path)
    static = build(spec, "int8-static", task_for("ppocr_cls").calibration)
    ops = {node.op_type for node in onnx.load(str(static.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    settings = static.recipe["settings"]
    assert settings["per_channel"] and settings["opset"] == 13 and settings["calibration_samples"] == 48
    session = onnxruntime.InferenceSession(str(static.path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.zeros((1, 3, 48, 192), np.float32)})[0]
    assert out.shape == (1, 2)


def test_builds_are_cached_with_their_record():
    spec = zoo.get("ppocr_cls")
    first = build(spec, "int8-dynamic")
    stamp = first.path.stat().st_mtime_ns
    again = build(spec, "int8-dynamic")
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    record = json.loads((first.path.parent / "recipe.json").read_text())
    assert record["source_sha256"] == spec.sha256 and len(record["sha256"]) == 64
    assert build(spec, "fp32").path == zoo.fetch(spec)  # as shipped, not copied


def test_refusals_say_why(tmp_path, monkeypatch):
    from harness.models import recipes

    monkeypatch.setattr(recipes, "_folder", lambda spec, precision: tmp_path / precision)  # nothing cached
    face = zoo.get("face_detection")
    reason = refusal(face, "int8-dynamic")
    assert reason is not None and "ai-edge-quantizer needs a signature" in reason and "fp16 weights" in reason
    with pytest.raises(RecipeRefused, match="ships with fp16 weights and no signature"):
        build(face, "fp32")
    with pytest.raises(RecipeRefused, match="unknown precision 'int4'"):
        build(zoo.get("ppocr_cls"), "int4")
    with pytest.raises(RecipeRefused, match="int8-static needs calibration data"):
        build(zoo.get("silero_vad"), "int8-static")
    # the caller's omission is not cached as a refusal: with calibration it builds
    assert build(zoo.get("silero_vad"), "int8-static", task_for("silero_vad").calibration).path.exists()


def test_variants_list_every_precision_and_unavailable_ones_with_reasons():
    assert [v.precision for v in variants_for("ppocr_rec")] == ["fp32", "fp16", "int8-dynamic", "int8-static"]
    face = {v.precision: v.unavailable for v in variants_for("face_detection")}
    assert face["fp16"] is None and all(face[p] for p in ("fp32", "int8-dynamic", "int8-static"))
    chosen, _ = select_variants("face_detection", None, ("int8-static",))
    assert len(chosen) == 1 and chosen[0].unavailable
    none, reason = select_variants("silero_vad", ("litert",), None)
    assert none == [] and "available: onnxruntime-fp32, onnxruntime-fp16" in reason


def test_tflite_models_get_a_validated_onnx_twin_for_runtime_comparison():
    from harness.models.recipes import convert_tflite, onnx_twin

    face = zoo.get("face_detection")
    built = convert_tflite(face)
    settings = built.recipe["settings"]
    assert built.path.suffix == ".onnx" and settings["max_abs_diff_vs_litert"] < 1e-2
    assert built.recipe["versions"]["tflite2onnx"]
    session = onnxruntime.InferenceSession(str(built.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 128, 128]  # NHWC became NCHW
    assert onnx_twin(face).inputs[0].shape == (1, 3, 128, 128)
    twins = [v for v in variants_for("face_detection") if v.runtime == "onnxruntime"]
    assert [(v.format, v.precision, v.converted_from) for v in twins] == [("onnx", "fp16", "tflite")]
    with pytest.raises(RecipeRefused, match="tflite2onnx cannot convert it: .*HARD_SWISH"):
        convert_tflite(zoo.get("selfie_segmentation"))


@pytest.mark.parametrize(
    ("model", "method"), [("ppocr_cls", "Percentile (99.999)"), ("silero_vad", "MinMax (Percentile failed)")]
)
def test_streamed_calibration_gives_the_model_onnx_runtime_would(model, method, tmp_path, monkeypatch):
    """The two-pass histograms (one sample in memory at a time) quantize exactly as ONNX
    Runtime's calibrator holding every sample's outputs at once: same file, byte for byte."""
    import contextlib

    from harness.models import recipes

    spec, calibration = zoo.get(model), task_for(model).calibration
    built = {}
    for way in ("streamed", "all at once"):
        if way == "all at once":
            monkeypatch.setattr(recipes, "_streaming_histograms", contextlib.nullcontext)
        workdir = tmp_path / way.replace(" ", "-")
        workdir.mkdir()
        settings = recipes._int8_static(zoo.fetch(spec), workdir / "model.onnx", workdir, calibration)
        built[way] = ((workdir / "model.onnx").read_bytes(), settings)
    assert built["streamed"][1] == built["all at once"][1]
    assert built["streamed"][1]["calibrate_method"] == method
    assert built["streamed"][0] == built["all at once"][0]
