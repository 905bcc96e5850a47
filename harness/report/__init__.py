"""Reports of a run: a self-contained HTML page, a markdown table for PR comments, a trend page."""

from __future__ import annotations

import json
from pathlib import Path

from harness.store.db import ResultsStore
from harness.store.results_json import RESULTS_FILE

HTML_FILE = "index.html"
SUMMARY_FILE = "summary.md"


def write_reports(
    reports_dir: Path,
    run_id: str,
    store: ResultsStore | None,
    baseline: str | None = None,
    baseline_label: str | None = None,
) -> tuple[Path, Path] | None:
    """Write ``index.html`` and ``summary.md`` next to the run's results.json (None: no results)."""
    from harness.report.data import build
    from harness.report.html import write_html
    from harness.report.markdown import render_markdown

    run_dir = reports_dir / run_id
    file = run_dir / RESULTS_FILE
    if not file.exists():
        return None
    document = json.loads(file.read_text(encoding="utf-8"))
    report = build(document["run"], document["results"], baseline=baseline, store=store)
    if baseline is None:
        report.baseline_spec = baseline_label
    html = write_html(report, run_dir / HTML_FILE)
    summary = run_dir / SUMMARY_FILE
    summary.write_text(render_markdown(report), encoding="utf-8")
    return html, summary
