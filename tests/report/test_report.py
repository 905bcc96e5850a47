"""Reports: the matrix, Pareto fronts, slices and distributions computed from records; the PR
comment; and the pages in a real headless Chromium (offline, no console errors, every chart drawn
with data and titled axes, no empty section, no sideways scroll at phone width), with screenshots."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from harness.record import BudgetCheck, RunInfo
from harness.report import write_reports
from harness.report.data import build, matrices, pareto_front, slice_tables
from harness.report.history import render_history, write_history
from harness.report.html import figures, json_island, render_html
from harness.report.markdown import GITHUB_LIMIT, MARKER, render_markdown
from harness.store.results_json import ResultsFile
from tests.factories import make_record, write_results
from tests.report import scenario

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned=2">'
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)"
)


@pytest.fixture
def lab(tmp_path):
    folder, base, cand = scenario.write_lab(tmp_path)
    return folder, base, cand


def compared_report(folder: Path):
    file = ResultsFile(folder, "cand")
    return build(file.run(), file.records(), baseline=str(folder / "base"))


def grid_of(grids, device, test_part, kind="latency"):
    return next(g for g in grids if g.device == device and test_part in g.test and g.kind == kind)


# -- the matrix ---------------------------------------------------------------------------------------


def test_matrix_is_per_device_test_and_kind_with_speedups_budgets_and_accuracy(lab):
    folder, _, _ = lab
    report = compared_report(folder)
    grids = matrices(report)
    # one grid per (device, test, kind): the accuracy pass and the sustained run never share one
    assert {(g.device, g.kind) for g in grids} >= {
        (scenario.PHONE, "latency"),
        (scenario.PHONE, "accuracy"),
        (scenario.PHONE, "sustained"),
    }
    vision = grid_of(grids, scenario.PHONE, "test_vision")
    assert vision.columns[:2] == ["litert/fp16", "onnxruntime/fp32"]  # runtime, then fp32 first
    fp32 = vision.cells[("ppocr_det", "onnxruntime/fp32")]
    int8 = vision.cells[("ppocr_det", "onnxruntime/int8-static")]
    assert fp32.speedup == pytest.approx(1.0)
    assert int8.speedup == pytest.approx(2.0, rel=0.03)  # 11 ms -> 5.5 ms
    # litert's fp16 has no litert fp32 to compare with: no speed-up rather than a made-up one
    assert vision.cells[("face_detection", "litert/fp16")].speedup is None
    # fp32 is over its budgets (RSS 180 MB > 150, p90 > 10 ms); the best within budget is int8-static
    assert fp32.budget == "failed" and not fp32.best
    assert int8.best and int8.budget == "ok"
    assert "within every budget" in vision.best_rule
    # face_detection has no budgets: the fastest median, and the grid says so for such rows
    best_face = [c for (m, _), c in vision.cells.items() if m == "face_detection" and c.best]
    assert [c.record.precision for c in best_face] == ["int8-static"]
    accuracy = grid_of(grids, scenario.PHONE, "test_accuracy", "accuracy")
    drop = accuracy.cells[("ppocr_cls", "onnxruntime/int8-static")].accuracy
    assert drop is not None and drop.points == pytest.approx(3.5)
    assert drop.ci_low < 3.5 < drop.ci_high  # a binomial CI around the drop, in points
    assert "not budgets" not in accuracy.best_rule and "no budgets" in accuracy.best_rule
    # without an accuracy budget, a variant that lost 3.5 points is never starred, however fast
    assert "within 1 point of fp32's accuracy" in accuracy.best_rule
    row = {column: cell for (model, column), cell in accuracy.cells.items() if model == "ppocr_cls"}
    assert not row["onnxruntime/int8-static"].best
    (best,) = [cell for cell in row.values() if cell.best]
    assert best.accuracy is not None and best.accuracy.points <= 1.0


def test_matrix_never_mixes_two_tests_of_one_variant(tmp_path):
    a = make_record(test="suites/a.py::test_a[local-m-onnxruntime-fp32]", model="m", median_ms=1.0)
    b = make_record(test="suites/b.py::test_b[local-m-onnxruntime-fp32]", model="m", median_ms=9.0, seed=1)
    grids = matrices(build(RunInfo(id="r", started_at="x"), [a, b]))
    assert [(g.test, g.cells[("m", "onnxruntime/fp32")].record.median_ms) for g in grids] == [
        ("suites/a.py::test_a", a.median_ms),
        ("suites/b.py::test_b", b.median_ms),
    ]


def test_a_budget_not_judged_does_not_count_against_a_cell():
    judged = BudgetCheck(
        metric="energy_mj_per_inference", limit=1.0, value=None, ok=None, evidence="not measured"
    )
    fast = make_record(model="m", precision="int8-dynamic", median_ms=1.0, budgets=(judged,))
    slow = make_record(model="m", precision="fp32", median_ms=2.0, seed=3, budgets=(judged,))
    (grid,) = matrices(build(RunInfo(id="r", started_at="x"), [slow, fast]))
    assert grid.cells[("m", "onnxruntime/int8-dynamic")].best
    assert grid.cells[("m", "onnxruntime/int8-dynamic")].budget == "unjudged"


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 80.0), (2.0, 90.0), (3.0, 85.0), (2.0, 70.0), (4.0, 95.0)]
    assert pareto_front(points, higher_is_better=True) == [True, True, False, False, True]
    assert pareto_front([(1.0, 5.0), (2.0, 4.0), (3.0, 6.0)], higher_is_better=False) == [True, True, False]


def test_slice_table_has_every_slice_the_worst_and_the_drop_vs_fp32(lab):
    folder, _, _ = lab
    table = next(t for t in slice_tables(compared_report(folder)) if t.device == scenario.PHONE)
    assert table.columns == (
        "onnxruntime/fp32",
        "onnxruntime/fp16",
        "onnxruntime/int8-dynamic",
        "onnxruntime/int8-static",
    )
    assert table.rows[0] == "clean" and table.rows[1:4] == (
        "gaussian_noise@1",
        "gaussian_noise@3",
        "gaussian_noise@5",
    )
    assert len(table.rows) == 10
    assert table.worst["onnxruntime/int8-static"][0] == "gaussian_noise@5"
    assert table.max_drop["onnxruntime/int8-static"] == ("gaussian_noise@5", pytest.approx(8.75))
    cell = table.cells[("gaussian_noise@5", "onnxruntime/int8-static")]
    assert cell.worst and cell.drop_points == pytest.approx(8.75)


# -- charts ---------------------------------------------------------------------------------------------


def assert_chart_has_data_and_titled_axes(name, figure):
    assert figure["data"], name
    for trace in figure["data"]:
        values = trace.get("x") or trace.get("median") or []
        assert any(v is not None for v in values), f"{name}: trace {trace.get('name')} has no data"
    layout = figure["layout"]
    for axis in [k for k in layout if re.fullmatch(r"[xy]axis\d*", k)] or ["xaxis", "yaxis"]:
        title = layout.get(axis, {}).get("title", {}).get("text", "")
        assert title.strip(), f"{name}: {axis} has no title"
    assert layout.get("xaxis") and layout.get("yaxis"), name


def test_every_chart_has_data_and_titled_axes_on_every_page(lab, tmp_path):
    folder, _, _ = lab
    report = compared_report(folder)
    figs = figures(report)
    kinds = {name.rsplit("-", 1)[0] for name in figs}
    assert {"dist", "pareto-accuracy", "pareto-energy"} <= kinds
    assert sum(1 for name in figs if name.startswith("timeline-")) == 2  # the sustained and the throttled run
    for name, figure in figs.items():
        assert_chart_has_data_and_titled_axes(name, figure)
    history = tmp_path / "history"
    scenario.write_history(history)
    html = render_history(history, "none")
    island = re.search(r'id="edgelab-figures">(.*?)</script>', html, re.S)
    assert island is not None
    history_figures = json.loads(island.group(1))
    assert len(history_figures) == 9
    for name, figure in history_figures.items():
        assert_chart_has_data_and_titled_axes(name, figure)


def test_distributions_put_each_baseline_beside_its_result(lab):
    folder, _, _ = lab
    report = compared_report(folder)
    grids = matrices(report)
    index = grids.index(grid_of(grids, scenario.PHONE, "test_vision"))
    figure = figures(report, grids)[f"dist-{index}"]
    rows = figure["layout"]["yaxis"]["categoryarray"]
    labels = dict(zip(rows, figure["layout"]["yaxis"]["ticktext"], strict=True))
    # every result is a row of its own, and its baseline's row follows it
    results = [r for r in rows if not r.endswith("-baseline")]
    assert len(results) == len(set(results)) == 9  # 4 ppocr_det and 5 face_detection variants
    for row in results:
        assert rows[rows.index(row) + 1] == f"{row}-baseline"
    names = {trace["name"] for trace in figure["data"]}
    assert any(name.startswith("baseline run") for name in names)
    interleaved = next(t for t in figure["data"] if t["name"].startswith("baseline, interleaved"))
    assert len(interleaved["x"]) == 1 and labels[interleaved["y"][0]].startswith(
        "↳ baseline<br>(interleaved)"
    )


def test_timelines_show_only_what_was_measured(lab):
    folder, _, _ = lab
    report = compared_report(folder)
    figs = figures(report)
    throttled = next(r for r in report.records if r.model == "hand_landmark")
    drifted = next(r for r in report.records if r.model == "silero_vad")
    board = figs[f"timeline-{report.anchor(throttled)}"]
    assert [t["name"] for t in board["data"]] == ["hottest zone", "cpufreq ceiling"]
    assert f"timeline-{report.anchor(drifted)}" not in figs  # no sensor: no thermal chart at all


def test_a_sustained_run_without_sensors_charts_latency_alone():
    from harness.probes.thermal import CurvePoint, SustainedCurve

    points = tuple(CurvePoint(float(t), 10.0 + t, 50, None, None) for t in range(6))
    curve = SustainedCurve(window_s=1.0, points=points, time_to_first_throttle_s=None, steady_over_initial=1.4)
    record = make_record(kind="sustained", sustained=curve)
    report = build(RunInfo(id="r", started_at="x"), [record])
    figure = figures(report)[f"timeline-{report.anchor(record)}"]
    assert [t["name"] for t in figure["data"]] == ["median latency per window"]
    assert_chart_has_data_and_titled_axes("sustained", figure)


# -- the PR comment ---------------------------------------------------------------------------------


def test_pr_comment_leads_with_counts_and_regressions_and_folds_unchanged(lab):
    folder, _, _ = lab
    text = render_markdown(compared_report(folder), report_url="https://ci.example/run/1")
    assert text.startswith(MARKER + "\n### EdgeLab: 🔺 2 regressed · ❔ 1 inconclusive · ⚪ 26 unchanged")
    assert "[HTML report](https://ci.example/run/1)" in text
    regressions = text.index("#### 🔺 Regressions")
    assert regressions < text.index("#### ❔ Inconclusive") < text.index("<details><summary>⚪ 26 unchanged")
    before_details = text[: text.index("<details>")]
    rows = [line for line in before_details.splitlines() if line.startswith("| ") and "---" not in line]
    header = "| change | 99% CI | metric | baseline → now | test | device |"
    assert rows.count(header) == 2  # the regressions' table and the inconclusive one
    body = [row for row in rows if row != header]
    assert (
        len(body) == 4
    )  # 2 regressed results (latency on both devices, energy on the phone) + 1 inconclusive
    assert all("test_latency_and_memory[" in row for row in body)  # each row names its test
    assert "unchanged" not in before_details.split("#### 🔺")[1]
    assert body[0].startswith("| **+12.")
    assert (
        "**1 test(s) failed or errored:** `test_ocr_latency[ppocr_rec-onnxruntime-fp32]` on virtual-rpi5"
        in text
    )


def test_pr_comment_stays_within_githubs_limit_and_counts_what_it_left_out():
    run = RunInfo(id="big", started_at="x")
    records = [
        make_record(
            "big",
            model=f"model_with_a_long_name_{i}",
            median_ms=1.0,
            seed=i,
            n=20,
            test=f"suites/vision/test_vision.py::test_latency_and_memory[local-model_with_a_long_name_{i}-onnxruntime-fp32]",
        )
        for i in range(1500)
    ]
    baseline = {r.identity(): r for r in records}
    from harness.compare import VerdictPolicy, compare_runs

    compared = [
        r.model_copy(update={"comparison": compare_runs(r, baseline[r.identity()], VerdictPolicy())})
        for r in records
    ]
    text = render_markdown(build(run, compared), report_url="https://ci.example/r")
    assert len(text) <= GITHUB_LIMIT
    shown = sum(1 for line in text.splitlines() if line.startswith("| ") and "`test_latency" in line)
    left_out = int(re.search(r"…(\d+) row\(s\) left out", text).group(1))
    assert shown + left_out == 1500 and left_out > 0
    assert text.rstrip().endswith("every row is in the [HTML report](https://ci.example/r).")


def test_first_run_without_a_baseline_gets_the_matrix_in_markdown(lab):
    folder, _, _ = lab
    write_reports(folder, "base", None)
    text = (folder / "base" / "summary.md").read_text()
    assert "### EdgeLab: not compared" in text and "the runtime x precision matrix" in text
    header = next(line for line in text.splitlines() if line.startswith("| model | litert/fp16 |"))
    assert "onnxruntime/int8-dynamic" in header
    row = next(line for line in text.splitlines() if line.startswith("| ppocr_det |") and "(2.00x)" in line)
    assert "★" in row


def test_markdown_cells_cannot_break_the_table(tmp_path):
    base = [make_record("base", device="pixel8|x", model="m", median_ms=1.0)]
    cand = [make_record("cand", device="pixel8|x", model="m", median_ms=2.0, seed=2)]
    write_results(tmp_path, "base", base)
    text = render_markdown(build(RunInfo(id="cand", started_at="x"), cand, baseline=str(tmp_path / "base")))
    (row,) = [line for line in text.splitlines() if line.startswith("| **+")]
    assert row.count("|") - row.count("\\|") == 7 and "pixel8\\|x" in row


def test_json_island_cannot_close_its_script_tag():
    island = json_island({"name": "</script><script>alert(1)</script>"})
    assert "</script" not in island and json.loads(island)["name"].startswith("</script>")


def test_report_files_are_readable_by_everyone(lab):
    folder, _, _ = lab
    html, summary = write_reports(folder, "cand", None, baseline=str(folder / "base"))
    history = write_history(folder, folder / "history.html", "none")
    for path in (html, summary, history):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_report_size_for_many_results():
    records = [
        make_record(device=f"dev{i % 4}", model=f"model{i}", median_ms=1.0 + i, seed=i, n=1000)
        for i in range(200)
    ]
    html = render_html(build(RunInfo(id="big", started_at="x"), records))
    assert len(html.encode()) < 5_000_000


# -- in a real browser --------------------------------------------------------------------------------

CHECK_PAGE = """() => {
  const charts = [...document.querySelectorAll('.js-plotly-plot')].map((el) => ({
    id: el.id,
    points: el.data.reduce((n, t) => n + ((t.x || t.median || []).filter((v) => v !== null).length), 0),
    xtitle: [...el.querySelectorAll('.xtitle, .g-xtitle text')].map((t) => t.textContent).join(''),
    ytitle: [...el.querySelectorAll('.ytitle, .g-ytitle text')].map((t) => t.textContent).join(''),
  }));
  const empty = [...document.querySelectorAll('section')]
    .filter((s) => s.innerText.replace(s.querySelector('h2')?.innerText || '', '').trim().length < 20)
    .map((s) => s.id);
  return {charts, empty, scroll: document.documentElement.scrollWidth, width: window.innerWidth};
}"""


WIDTH_SETTLED = """() => document.documentElement.scrollWidth <= window.innerWidth
  && [...document.querySelectorAll('.js-plotly-plot')].every((el) => el.offsetWidth <= window.innerWidth)"""


def open_page(browser, path: Path, shots: Path, name: str) -> dict[int, dict]:
    """The page at desktop width, then narrowed to a phone's (plotly re-lays its charts out)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_function("window.edgelabChartsRendered !== undefined", timeout=120_000)
    results = {}
    for width in (1280, 390):
        if width != 1280:
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_function(f"window.innerWidth === {width}")
            # plotly's responsive relayout runs on a resize timer, late on a loaded host; if the
            # page stays wider than the window, the assertion below names it
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_function(WIDTH_SETTLED, timeout=30_000)
        result = page.evaluate(CHECK_PAGE)
        result |= {
            "rendered": page.evaluate("window.edgelabChartsRendered"),
            "errors": list(errors),
            "requests": list(requests),
            "pwned": page.evaluate("window.pwned"),
            "body": page.inner_text("body"),
        }
        page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
        results[width] = result
    page.close()
    return results


@pytest.fixture
def screenshots(tmp_path):
    """Where the screenshots go: EDGELAB_SCREENSHOTS to keep them, else the test's folder."""
    folder = Path(os.environ.get("EDGELAB_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@needs_chromium
def test_pages_in_headless_chromium_with_screenshots(lab, screenshots):
    from playwright.sync_api import sync_playwright

    folder, _, _ = lab
    hostile = make_record("cand", device=HOSTILE, model=HOSTILE, median_ms=2.0, seed=3)
    file = ResultsFile(folder, "cand")
    write_results(folder, "cand", [*file.records(), hostile], **file.run().model_dump(exclude={"id"}))
    write_reports(folder, "base", None)  # a first run: no baseline
    compared, _ = write_reports(folder, "cand", None, baseline=str(folder / "base"))
    first = folder / "base" / "index.html"
    history_dir = folder / "nightly"
    scenario.write_history(history_dir)
    history = write_history(
        history_dir, history_dir / "history.html", "none", repo_url="https://github.com/acme/edge"
    )
    pages = {"run": first, "compared": compared, "history": history}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        results = {
            (name, width): result
            for name, path in pages.items()
            for width, result in open_page(browser, path, screenshots, name).items()
        }
        browser.close()
    for (name, width), result in results.items():
        where = f"{name} at {width} px"
        assert result["errors"] == [], where
        assert result["requests"] == [pages[name].as_uri()], where  # offline: nothing but the file
        assert result["rendered"] == len(result["charts"]) > 0, where
        for chart in result["charts"]:
            assert chart["points"] > 0, f"{where}: {chart['id']} has no data"
            assert chart["xtitle"].strip() and chart["ytitle"].strip(), f"{where}: {chart['id']} axes"
        assert result["empty"] == [], where
        assert result["scroll"] <= result["width"], f"{where} scrolls sideways"
    compared_page = results[("compared", 1280)]
    assert compared_page["pwned"] is None and "<script>window.pwned = 1</script>" in compared_page["body"]
    assert "2 regressed" in compared_page["body"] and "Accuracy per slice" in compared_page["body"]
    assert len(results[("run", 1280)]["charts"]) >= 6  # distributions, Pareto fronts, timelines
    assert "+15.2%" in results[("history", 1280)]["body"]  # the step, listed at the top
    assert sorted(p.name for p in screenshots.glob("*.png")) == sorted(
        f"{name}-{width}.png" for name in pages for width in (1280, 390)
    )
