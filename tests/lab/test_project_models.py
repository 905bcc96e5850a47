"""A team's fresh project (third-party int8 streaming .tflite, dynamic-batch .onnx, models.yaml, the
team's data and metric, one test file) on the virtual phone and the virtual board."""

from __future__ import annotations

import json

from tests.fixtures.project_models import MODELS_YAML, write_project

LAB_MODELS_YAML = MODELS_YAML.replace(
    "      default: {latency_p90_ms: 1000, peak_rss_mb: 4000}",
    "      default: {latency_p90_ms: 1000, peak_rss_mb: 4000}\n      phone: {latency_p90_ms: 900}",
)


def test_the_same_project_runs_on_the_virtual_phone_and_board(lab, pytester):
    write_project(pytester.path)
    (pytester.path / "models.yaml").write_text(LAB_MODELS_YAML.lstrip())
    run = pytester.runpytest_subprocess(
        f"--devices-file={lab.devices_file}", "--device=virtual-pixel8,virtual-rpi5", "-p", "no:cacheprovider",
        "--warmup-iters=1", "--warmup-s=0", "--min-iters=5", "--min-s=0", "--max-s=5", "--energy=none",
    )  # fmt: skip
    run.assert_outcomes(passed=20)
    records = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())["results"]
    variants = {
        "wakeword-litert-int8",
        "classifier-onnxruntime-fp32",
        "classifier-onnxruntime-fp16",
        "classifier-onnxruntime-int8-dynamic",
        "classifier-onnxruntime-int8-static",
    }
    for device in ("virtual-pixel8", "virtual-rpi5"):
        mine = [r for r in records if r["device"] == device]
        assert {f"{r['model']}-{r['runtime']}-{r['precision']}" for r in mine} == variants
        assert all(r["virtual"] and r["model_source"] == "models.yaml" for r in mine)
        accuracy = {r["model"] + "-" + r["precision"]: r["accuracy"] for r in mine if r["kind"] == "accuracy"}
        assert accuracy["wakeword-int8"]["metric"] == "metrics:detection_rate"
        assert accuracy["wakeword-int8"]["clean"] == 1.0 and accuracy["wakeword-int8"]["max_drop_vs_fp32_points"] is None
        assert accuracy["classifier-fp32"]["clean"] == 1.0  # the device's fp32 answers as the host's
        assert accuracy["classifier-fp32"]["max_drop_vs_fp32_points"]["points"] == 0.0
        wake = next(r for r in mine if r["kind"] == "latency" and r["model"] == "wakeword")
        latency_budget = next(b for b in wake["budgets"] if b["metric"] == "latency_p90_ms")
        assert latency_budget["limit"] == (900.0 if device == "virtual-pixel8" else 1000.0)  # tag 'phone'
        assert latency_budget["ok"] is True
