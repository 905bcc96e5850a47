"""Reports: the HTML page in a real headless Chromium (offline, no console errors, charts drawn,
injected markup stays text), the markdown table, comparisons and baselines."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.compare import BaselineSource, compare_records
from harness.errors import ConfigError
from harness.report import write_reports
from harness.report.data import build
from harness.report.html import json_island, render_html
from harness.report.markdown import MARKER, render_markdown

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned=2">'


def record(device: str, model: str, median: float, seed: int, n: int = 400, **extra) -> dict:
    samples = list(np.random.default_rng(seed).normal(median, median * 0.02, n))
    return {
        "run_id": extra.pop("run_id", "cand"),
        "test": f"suites/t.py::test[{device}-{model}]",
        "status": "passed",
        "device": device,
        "model": model,
        "format": "onnx",
        "runtime": "onnxruntime",
        "precision": "fp32",
        "threads": 1,
        "model_sha256": "0" * 64,
        "latency_ms": {
            "median": float(np.median(samples)),
            "p90": float(np.percentile(samples, 90)),
            "samples": n,
        },
        "latency_samples_ms": samples,
        "peak_rss_mb": 100.0,
        "energy": {"mj_per_inference": median * 4, "uncertainty_mj_per_inference": 0.1, "source": "odpm"},
        "warnings": ["VIRTUAL-DEVICE: sensors are simulated"],
        **extra,
    }


def results_file(folder: Path, run_id: str, records: list[dict]) -> Path:
    (folder / run_id).mkdir(parents=True, exist_ok=True)
    path = folder / run_id / "results.json"
    run = {
        "id": run_id,
        "git_branch": "main",
        "git_commit": "abc",
        "devices": sorted({r["device"] for r in records}),
        "complete": True,
    }
    path.write_text(json.dumps({"schema_version": 1, "run": run, "results": records}))
    return path


def test_comparisons_flag_direction_and_size(tmp_path):
    base = [
        record("virtual-pixel8", "ppocr_det", 11.0, 1, run_id="base"),
        record("virtual-pixel8", "silero_vad", 0.06, 2, run_id="base"),
    ]
    cand = [record("virtual-pixel8", "ppocr_det", 22.0, 3), record("virtual-pixel8", "silero_vad", 0.06, 4)]
    source = BaselineSource(str(results_file(tmp_path, "base", base)), store=None)
    slower = compare_records(cand[0], source.find(cand[0]))
    assert slower.verdict == "regressed" and slower.baseline_run == "base"
    latency = slower.metrics[0]
    assert latency.metric == "latency_median_ms" and latency.ratio == pytest.approx(2.0, rel=0.02)
    assert "(+100.0%" in latency.evidence or "(+99." in latency.evidence or "(+100." in latency.evidence
    energy = next(m for m in slower.metrics if m.metric == "energy_mj_per_inference")
    assert energy.verdict == "regressed"
    assert compare_records(cand[1], source.find(cand[1])).verdict == "unchanged"
    other = record("virtual-rpi5", "ppocr_det", 22.0, 5)
    assert compare_records(other, source.find(other)).verdict == "new"  # no baseline for that device


def test_baseline_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="needs the results database"):
        BaselineSource("branch:main", store=None)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="not a readable results.json"):
        BaselineSource(str(bad), store=None)


def test_markdown_is_a_table_with_arrows_and_escaped_cells(tmp_path):
    base = [record("pixel8", "ppocr_det", 11.0, 1, run_id="base")]
    cand = [record("pixel8", "ppocr_det", 12.1, 2), record("pixel8|x", "m", 1.0, 3)]
    report = build({"id": "cand"}, cand, baseline=str(results_file(tmp_path, "base", base)))
    text = render_markdown(report)
    assert text.startswith(MARKER)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| | device"))
    assert re.fullmatch(r"\|(---\|){5}(---:\|){3}---\|", lines[header + 1])
    table = [line for line in lines[header + 2 :] if line.startswith("|")]
    assert all(line.count("|") - line.count("\\|") == 10 for line in table)
    assert table[0].startswith("| 🔺 regressed | pixel8 | ppocr_det | onnxruntime/fp32 | latency_median_ms |")
    assert "+10." in table[0]
    assert "pixel8\\|x" in text  # a pipe in a name cannot break the table


def test_json_island_cannot_close_its_script_tag():
    island = json_island({"name": "</script><script>alert(1)</script>"})
    assert "</script" not in island and json.loads(island)["name"].startswith("</script>")


def test_report_size_for_many_results(tmp_path):
    records = [record(f"dev{i % 4}", f"model{i}", 1.0 + i, i, n=1000) for i in range(200)]
    html = render_html(build({"id": "big"}, records))
    assert len(html.encode()) < 5_000_000


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)")
def test_html_in_headless_chromium_offline_charts_and_escaping(tmp_path):
    from playwright.sync_api import sync_playwright

    base = [record("virtual-pixel8", "ppocr_det", 11.0, 1, run_id="base")]
    sustained = {
        "points": [
            {"offset_s": t, "median_ms": 11 + t, "samples": 10, "hottest_c": 40 + t, "ceiling_ratio": 1.0}
            for t in range(5)
        ]
    }
    cand = [
        record("virtual-pixel8", "ppocr_det", 13.0, 2),
        record(HOSTILE, HOSTILE, 2.0, 3, sustained=sustained),
    ]
    results_file(tmp_path, "base", base)
    results_file(tmp_path, "cand", cand)
    html_path, summary = write_reports(tmp_path, "cand", store=None, baseline=str(tmp_path / "base"))
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(html_path.as_uri())
        page.wait_for_function("window.edgelabChartsRendered !== undefined", timeout=60_000)
        rendered = page.evaluate("window.edgelabChartsRendered")
        plots = page.locator(".js-plotly-plot").count()
        pwned = page.evaluate("window.pwned")
        body = page.inner_text("body")
        regressions = page.inner_text("#regressions")
        browser.close()
    assert errors == []
    assert requests == [html_path.as_uri()]  # nothing but the file itself
    assert rendered == plots >= 4  # 2 distributions, 2 Pareto, 1 sustained timeline
    assert pwned is None and "<script>window.pwned = 1</script>" in body
    assert "ppocr_det" in regressions and "median 10.99 -> 13 ms" in regressions
    assert summary.read_text().startswith(MARKER)
