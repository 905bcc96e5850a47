"""What a model file is, from its bytes: format, inputs (quantization, free dims), precision."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.errors import ModelError
from harness.models import recipes, signature, zoo
from harness.models.spec import FileSource, ModelSpec
from tests.fixtures.project_models import WAKEWORD_INPUT, wakeword_file, with_free_batch, write_classifier


def test_the_format_comes_from_the_content_not_the_extension(tmp_path):
    tflite = tmp_path / "model.onnx"  # a TFLite file under the other extension
    shutil.copyfile(wakeword_file(), tflite)
    onnx_file = write_classifier(tmp_path / "model.tflite")
    assert signature.detect_format(tflite) == "tflite"
    assert signature.detect_format(onnx_file) == "onnx"


@pytest.mark.parametrize(
    "content",
    [b"hello, this is a text file\n", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), b""],
    ids=["text", "random-bytes", "empty"],
)
def test_a_file_that_is_neither_format_is_refused_naming_both(tmp_path, content):
    path = tmp_path / "weights.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelError) as error:
        signature.detect_format(path)
    message = str(error.value)
    assert str(path) in message
    assert "neither a TFLite flatbuffer (no 'TFL3' identifier at bytes 4-8) nor an ONNX model" in message
    assert message.endswith("give a .tflite or .onnx model file")


def test_onnx_inputs_skip_initializers_and_free_dims_run_at_1(tmp_path):
    weights = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["y"]),
            helper.make_node("Cast", ["ids"], ["ids_out"], to=TensorProto.INT64),
        ],
        "io",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("ids", TensorProto.INT16, [1, None]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2]),  # IR < 4: weights listed as input
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("ids_out", TensorProto.INT64, [1, None]),
        ],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "io.onnx"
    onnx.save(model, str(path))
    described = signature.read(path)
    assert [(i.name, i.shape, i.dtype, i.dynamic) for i in described.inputs] == [
        ("x", (1, 3), "float32", (0,)),
        ("ids", (1, 1), "int16", (1,)),
    ]
    assert described.signature == {"x": (None, 3), "ids": (1, None)}
    assert [(o.name, o.dtype) for o in described.outputs] == [("y", "float32"), ("ids_out", "int64")]
    assert described.format == "onnx" and described.precision == "fp32"


def test_a_quantized_tflite_input_carries_its_scale_zero_point_and_real_range():
    described = signature.read(wakeword_file())
    (item,) = described.inputs
    assert (item.name, item.shape, item.dtype) == (WAKEWORD_INPUT, (1, 3, 40), "int8")
    assert item.scale == pytest.approx(0.10196078, rel=1e-6) and item.zero_point == -128
    assert (item.low, item.high) == pytest.approx((0.0, 255 * 0.10196078), rel=1e-6)  # real values 0..26
    (output,) = described.outputs
    assert output.dtype == "uint8" and output.scale == pytest.approx(1 / 256)
    assert described.precision == "int8"  # its weights are int8


def test_a_tflite_free_batch_dim_is_read_from_the_shape_signature(tmp_path):
    hand = zoo.fetch(zoo.get("hand_landmark"))
    dynamic = with_free_batch(hand, tmp_path / "hand_dynamic.tflite")
    (item,) = signature.read(dynamic).inputs
    assert item.shape == (1, 224, 224, 3) and item.dynamic == (0,)
    assert signature.read(dynamic).signature == {"input_1": (None, 224, 224, 3)}


def test_precision_as_shipped_comes_from_the_weights(tmp_path):
    assert signature.read(zoo.fetch(zoo.get("face_detection"))).precision == "fp16"  # mediapipe's fp16 weights
    classifier = write_classifier(tmp_path / "classifier.onnx")
    assert signature.read(classifier).precision == "fp32"
    described = signature.read(classifier)
    spec = ModelSpec(
        name="classifier",
        format="onnx",
        precision="fp32",
        sha256=described.sha256,
        size_bytes=described.size_bytes,
        inputs=described.inputs,
        source=FileSource(classifier),
        origin="file",
    )
    assert signature.read(recipes.build(spec, "int8-dynamic").path).precision == "int8"
    assert signature.read(recipes.build(spec, "fp16").path).precision == "fp16"


def test_weight_counts_pick_the_majority_family():
    from collections import Counter

    assert signature.precision_of(Counter({"int8": 900, "float32": 100, "int32": 5000})) == "int8"
    assert signature.precision_of(Counter({"float16": 10, "float32": 5})) == "fp16"
    assert signature.precision_of(Counter({"int64": 4})) == "fp32"  # shapes only: no float weights
