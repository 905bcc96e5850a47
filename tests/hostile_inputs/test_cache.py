"""The host cache as an attacker or a bad disk leaves it: every artifact EdgeLab builds or caches
(precision variants, ONNX twins, synthetic inputs, evaluation sets, fp32 references) whose bytes
changed (garbage, truncated, a valid model with altered weights) is built again, never measured;
and what a result names is the sha256 of the bytes measured."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from harness import cachefile
from harness.accuracy import host_reference
from harness.config import Fleet, parse_device
from harness.datasets.tasks import task_for
from harness.measurement import LatencyProtocol
from harness.models import recipes, zoo
from harness.models.variants import variants_for
from harness.session import Lab, RunOptions

FAST = LatencyProtocol(warmup_iters=1, warmup_s=0.0, min_iters=3, min_s=0.0, idle_s=0.0)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache holding only the zoo models these tests use (no variant, no input)."""
    folder = tmp_path / "cache"
    for name in ("ppocr_cls", "silero_vad", "face_detection"):
        spec = zoo.get(name)
        target = folder / "models" / spec.sha256 / spec.filename
        target.parent.mkdir(parents=True)
        shutil.copyfile(zoo.fetch(spec), target)
    monkeypatch.setenv("EDGELAB_CACHE", str(folder))
    return folder


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00not a model\xff" * 100)


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def altered_weights(path: Path) -> None:
    """Still a valid ONNX model that loads and runs: one float weight tensor changed (an
    initializer, or a Constant node's value where the exporter stores weights there)."""
    model = onnx.load(str(path))
    tensors = list(model.graph.initializer)
    tensors += [a.t for node in model.graph.node if node.op_type == "Constant" for a in node.attribute if a.t.dims]
    for tensor in tensors:
        values = numpy_helper.to_array(tensor)
        if values.dtype in (np.float32, np.float16) and values.size > 1:
            tensor.CopyFrom(numpy_helper.from_array(values + values.dtype.type(0.5), tensor.name))
            break
    else:
        raise AssertionError("no float weights to alter")
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))


@pytest.mark.parametrize("damage", [garbage, truncated, altered_weights])
def test_a_changed_precision_variant_is_rebuilt(cache, damage):
    spec = zoo.get("ppocr_cls")
    first = recipes.build(spec, "int8-dynamic")
    original = first.path.read_bytes()
    damage(first.path)
    assert cachefile.sha256_file(first.path) != first.sha256
    with pytest.warns(cachefile.CacheRebuiltWarning, match="differ from the sha256 in recipe.json"):
        again = recipes.build(spec, "int8-dynamic")
    assert again.path.read_bytes() == original
    assert again.sha256 == first.sha256 == cachefile.sha256_file(again.path) == again.recipe["sha256"]


def test_a_changed_onnx_twin_is_rebuilt(cache):
    spec = zoo.get("face_detection")
    first = recipes.convert_tflite(spec)
    garbage(first.path)
    damaged = cachefile.sha256_file(first.path)
    with pytest.warns(cachefile.CacheRebuiltWarning):
        again = recipes.convert_tflite(spec)
    # tflite2onnx names nodes differently on each conversion: the record follows the new bytes
    assert cachefile.sha256_file(again.path) == again.sha256 == again.recipe["sha256"] != damaged
    onnx.checker.check_model(str(again.path))


def test_a_changed_zoo_file_is_fetched_again_even_with_its_size_and_mtime_restored(cache):
    spec = zoo.get("ppocr_cls")
    path = zoo.fetch(spec)
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))  # same size; the hash remembered by this process must not hide it
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert cachefile.sha256_file(path) != spec.sha256
    assert cachefile.sha256_file(zoo.fetch(spec)) == spec.sha256


def local_lab(tmp_path: Path) -> Lab:
    device = parse_device("local", {"kind": "local", "workdir": str(tmp_path / "device")}, "test")
    options = RunOptions(
        reports_dir=tmp_path / "reports", lease_timeout_s=None, health_checks=False, speed_reference=False
    )
    return Lab(Fleet([device], "test"), options)


@pytest.mark.parametrize("damage", [garbage, truncated])
def test_changed_synthetic_inputs_are_made_again(cache, tmp_path, damage):
    lab = local_lab(tmp_path)
    variant = variants_for("silero_vad")[0]
    path = lab._default_inputs(variant)
    original = path.read_bytes()
    damage(path)
    assert lab._default_inputs(variant).read_bytes() == original
    assert cachefile.verified(path)


def test_what_a_run_names_is_the_sha256_of_the_bytes_it_measured(cache, tmp_path):
    """The fp16 variant is not the shipped file: the run names the variant's own bytes, and
    after a tampered copy is rebuilt, the rebuilt bytes (never the tampered ones)."""
    lab = local_lab(tmp_path)
    try:
        variant = next(v for v in variants_for("ppocr_cls") if v.precision == "fp16")
        measured = lab.benchmark("local", variant, FAST, energy="none")
        built = variant.build()
        assert measured.model.sha256 == built.sha256 == cachefile.sha256_file(built.path)
        assert measured.model.sha256 != variant.spec.sha256
        record = lab.record(test="t", status="passed", device="local", variant=variant, measured=measured)
        assert record.model_sha256 == built.sha256
        altered_weights(built.path)
        tampered = cachefile.sha256_file(built.path)
        with pytest.warns(cachefile.CacheRebuiltWarning):
            again = lab.benchmark("local", variant, FAST, energy="none")
        assert again.model.sha256 == built.sha256 != tampered
    finally:
        lab.close()


def test_evaluation_sets_and_references_are_checked_and_rebuilt_with_the_same_scores(cache, tmp_path):
    lab = local_lab(tmp_path)
    try:
        variant = next(v for v in variants_for("ppocr_cls") if v.precision == "fp32")
        options = {"corruptions": ["gaussian_noise"], "severities": (3,)}
        _, first = lab.evaluate("local", variant, **options)
        folder = cache / "evalsets"
        evalset_file = next(p for p in folder.glob("ppocr_cls-*.npz") if not p.name.endswith("-fp32.npz"))
        reference_file = next(folder.glob("ppocr_cls-*-fp32.npz"))
        originals = {p: p.read_bytes() for p in (evalset_file, reference_file)}
        truncated(evalset_file)
        garbage(reference_file)
        lab._evalsets.clear()
        _, second = lab.evaluate("local", variant, **options)
        assert second.record() == first.record()
        assert {p: p.read_bytes() for p in originals} == originals
    finally:
        lab.close()


def test_a_reference_with_altered_values_is_computed_again(cache, tmp_path):
    spec = zoo.get("ppocr_cls")
    evalset = task_for("ppocr_cls").build(["gaussian_noise"], (1,), 0)
    path = tmp_path / "reference.npz"
    reference = host_reference(zoo.fetch(spec), evalset, path)
    forged = {name: values + 1 for name, values in reference.items()}
    np.savez(path, **forged)  # a valid archive of other numbers
    again = host_reference(zoo.fetch(spec), evalset, path)
    assert all(np.array_equal(again[name], reference[name]) for name in reference)
