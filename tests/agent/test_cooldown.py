"""The agent's cooldown: it waits on the device, reading the thermal zones' sysfs files, before it
loads the model. The zones here are real files in a sysfs-shaped folder that a thread changes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from onnx import TensorProto, helper, save

from harness.agent.edgelab_agent import cool_down, hottest_zone_c
from tests.agent.test_agent import FAST, agent


def zone(sysfs: Path, index: int, text: str) -> Path:
    folder = sysfs / "class" / "thermal" / f"thermal_zone{index}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "temp").write_text(text)
    return folder / "temp"


def test_the_wait_ends_when_the_hottest_zone_falls_below_the_threshold(tmp_path):
    zone(tmp_path, 0, "30000\n")
    hot = zone(tmp_path, 1, "52000\n")
    zone(tmp_path, 2, "")  # a disabled sensor: unreadable, left out
    cooled = threading.Timer(0.3, lambda: hot.write_text("40000\n"))
    cooled.start()
    started = time.monotonic()
    record = cool_down(45.0, 60.0, 0.02, sysfs=str(tmp_path))
    elapsed = time.monotonic() - started
    cooled.join()
    assert (record["below_c"], record["start_c"], record["end_c"], record["reached"]) == (
        45.0,
        52.0,
        40.0,
        True,
    )
    assert 0.3 <= record["waited_s"] <= elapsed + 0.001


def test_the_wait_gives_up_after_the_longest_wait_and_says_it_did_not_cool(tmp_path):
    zone(tmp_path, 0, "61500\n")
    record = cool_down(45.0, 0.2, 0.05, sysfs=str(tmp_path))
    assert (record["start_c"], record["end_c"], record["reached"]) == (61.5, 61.5, False)
    assert record["waited_s"] >= 0.2


def test_whole_degree_drivers_and_devices_without_zones(tmp_path):
    zone(tmp_path, 0, "47\n")  # a few drivers report whole degrees
    zone(tmp_path, 1, "-5000\n")
    assert hottest_zone_c(str(tmp_path)) == 47.0
    bare = tmp_path / "bare"
    bare.mkdir()
    record = cool_down(45.0, 10.0, 0.05, sysfs=str(bare))
    assert (record["start_c"], record["end_c"], record["reached"]) == (None, None, True)


def test_a_run_with_a_threshold_records_the_wait_in_its_document(tmp_path):
    model = tmp_path / "model.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(model))
    args = ["run", "--model", str(model), "--runtime", "onnxruntime", *FAST]
    code, document = agent(*args, "--cooldown-below-c", "1000", "--cooldown-max-s", "5")
    assert code == 0
    cooldown = document["cooldown"]
    assert cooldown["below_c"] == 1000.0 and cooldown["reached"] is True
    assert cooldown["end_c"] is None or cooldown["end_c"] < 1000.0
    code, document = agent(*args)
    assert code == 0 and document["cooldown"] is None
