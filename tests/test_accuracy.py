"""The host fp32 reference: computed one sample at a time into arrays allocated once, it is the
same as stacking every output (what it was before it streamed), value for value."""

from __future__ import annotations

import numpy as np
import onnxruntime

from harness.accuracy import host_reference
from harness.datasets.tasks import task_for
from harness.models import zoo


def stacked_reference(model_file, evalset) -> dict[str, np.ndarray]:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = [session.run(None, evalset.float_inputs(i)) for i in range(evalset.size)]
    return {name: np.stack([np.asarray(o[k]) for o in outputs]) for k, name in enumerate(names)}


def test_the_streamed_reference_equals_the_stacked_one(tmp_path):
    for model in ("ppocr_cls", "silero_vad"):
        evalset = task_for(model).build(["gaussian_noise" if model == "ppocr_cls" else "gain"], (3,), 0)
        model_file = zoo.fetch(zoo.get(model))
        streamed = host_reference(model_file, evalset, tmp_path / f"{model}.npz")
        expected = stacked_reference(model_file, evalset)
        assert streamed.keys() == expected.keys()
        for name, values in expected.items():
            assert streamed[name].dtype == values.dtype and np.array_equal(streamed[name], values)
        with np.load(tmp_path / f"{model}.npz") as archive:  # and so is what the cache keeps
            assert all(np.array_equal(archive[name], values) for name, values in expected.items())
