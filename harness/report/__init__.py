"""Reports of a run: a self-contained HTML page, a markdown summary for PR comments, a history page."""

from __future__ import annotations

from pathlib import Path

from harness.compare import VerdictPolicy
from harness.store.db import ResultsStore
from harness.store.results_json import ResultsFile

HTML_FILE = "index.html"
SUMMARY_FILE = "summary.md"


def write_reports(
    reports_dir: Path,
    run_id: str,
    store: ResultsStore | None,
    *,
    baseline: str | None = None,
    policy: VerdictPolicy | None = None,
    report_url: str | None = None,
) -> tuple[Path, Path] | None:
    """Write ``index.html`` and ``summary.md`` next to the run's results.json (None: no results).
    With ``baseline`` every result is compared again, under ``policy`` (default: the policy the
    run recorded), exactly as the pytest run would have."""
    from harness.report.data import build
    from harness.report.files import write_text
    from harness.report.html import write_html
    from harness.report.markdown import render_markdown

    file = ResultsFile(reports_dir, run_id)
    if not file.path.exists():
        return None
    run, records = file.load()
    report = build(run, records, baseline=baseline, store=store, policy=policy, reports_dir=reports_dir)
    html = write_html(report, file.run_dir / HTML_FILE)
    summary = write_text(file.run_dir / SUMMARY_FILE, render_markdown(report, report_url=report_url))
    return html, summary


def write_merged_reports(reports_dir: Path, run_ids: list[str], store: ResultsStore) -> tuple[Path, Path]:
    """One ``index.html`` and ``summary.md`` over runs made together on several lab hosts (one
    run id per host), read from the shared results database, in ``<reports_dir>/<id>+<id>...``."""
    from harness.errors import EdgeLabError
    from harness.report.data import RunReport, merged
    from harness.report.html import write_html
    from harness.report.markdown import render_markdown

    reports = []
    for run_id in run_ids:
        info = store.run_info(run_id)
        if info is None:
            raise EdgeLabError(
                f"run {run_id}: not in the results database; check the run id and --results-db"
            )
        reports.append(RunReport(info, store.records(run_id)))
    try:
        report = merged(reports)
    except ValueError as exc:
        raise EdgeLabError(f"edgelab report --merge: {exc}") from None
    folder = reports_dir / report.run.id
    html = write_html(report, folder / HTML_FILE)
    summary = folder / SUMMARY_FILE
    summary.write_text(render_markdown(report), encoding="utf-8")
    return html, summary
