"""Reports: the HTML page in a real headless Chromium (offline, no console errors, charts drawn,
injected markup stays text), the markdown table, comparisons and baselines."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from harness.probes.thermal import CurvePoint, SustainedCurve
from harness.record import RunInfo
from harness.report import write_reports
from harness.report.data import build
from harness.report.html import json_island, render_html
from harness.report.markdown import MARKER, render_markdown
from tests.factories import energy, make_record, write_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned=2">'


def record(device: str, model: str, median: float, seed: int, n: int = 400, **extra):
    return make_record(
        extra.pop("run_id", "cand"),
        device=device,
        model=model,
        median_ms=median,
        seed=seed,
        n=n,
        energy=energy(median * 4),
        warnings=("VIRTUAL-DEVICE: sensors are simulated",),
        **extra,
    )


def test_markdown_is_a_table_with_arrows_and_escaped_cells(tmp_path):
    base = [record("pixel8", "ppocr_det", 11.0, 1, run_id="base")]
    cand = [record("pixel8", "ppocr_det", 12.1, 2), record("pixel8|x", "m", 1.0, 3)]
    write_results(tmp_path, "base", base)
    report = build(RunInfo(id="cand", started_at="x"), cand, baseline=str(tmp_path / "base"))
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
    html = render_html(build(RunInfo(id="big", started_at="x"), records))
    assert len(html.encode()) < 5_000_000


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)")
def test_html_in_headless_chromium_offline_charts_and_escaping(tmp_path):
    from playwright.sync_api import sync_playwright

    base = [record("virtual-pixel8", "ppocr_det", 11.0, 1, run_id="base")]
    sustained = SustainedCurve(
        window_s=1.0,
        points=tuple(CurvePoint(float(t), 11.0 + t, 10, 40.0 + t, 1.0) for t in range(5)),
        time_to_first_throttle_s=None,
        steady_over_initial=None,
    )
    cand = [
        record("virtual-pixel8", "ppocr_det", 13.0, 2),
        record(HOSTILE, HOSTILE, 2.0, 3, sustained=sustained),
    ]
    write_results(tmp_path, "base", base)
    write_results(tmp_path, "cand", cand)
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
