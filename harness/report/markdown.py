"""``reports/<run>/summary.md``: the PR comment and job summary, read in a comment's width.

Verdict counts and regressions first; only regressed, inconclusive and improved rows in tables,
unchanged and new results folded into ``<details>``; without a baseline, the runtime x precision
matrix. The whole text stays under GitHub's 65,536-character comment limit, saying what it left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.record import MetricComparison, ResultRecord
from harness.report.data import Grid, RunReport, matrices
from harness.report.html import format_ms

MARKER = "<!-- edgelab-summary -->"
GITHUB_LIMIT = 65_536
RESERVE = 400  # room for the truncation note and the closing lines
ICONS = {"regressed": "🔺", "inconclusive": "❔", "improved": "🟢", "unchanged": "⚪", "new": "🆕"}
SHOWN = ("regressed", "inconclusive", "improved")  # the verdicts that get table rows
TITLES = {"regressed": "Regressions", "inconclusive": "Inconclusive", "improved": "Improvements"}
METRIC_NAMES = {
    "latency_median_ms": "latency",
    "peak_rss_mb": "peak RSS",
    "energy_mj_per_inference": "energy",
}
UNITS = {"latency_median_ms": "ms", "peak_rss_mb": "MB", "energy_mj_per_inference": "mJ"}
CHANGE_HEADER = [
    "| change | 99% CI | metric | baseline → now | test | device |",
    "|---:|---|---|---|---|---|",
]


def _cell(text: Any) -> str:
    """Table-safe: no pipes, no newlines, no HTML."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    quoted = _cell(text).replace("`", "'")
    return f"`{quoted}`"


def test_name(record: ResultRecord) -> str:
    """The test function and its parameters, without the file: short enough for a comment row."""
    return record.test_id.rsplit("::", 1)[-1]


@dataclass
class Section:
    """A part of the comment; its rows are dropped last-first when the comment is too long."""

    head: list[str]
    rows: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    kept: int = 0


def _value(metric: MetricComparison, value: float) -> str:
    unit = UNITS.get(metric.metric, "")
    number = format_ms(value) if unit == "ms" else f"{value:.4g}"
    return f"{number} {unit}".strip()


def _metric_row(record: ResultRecord, metric: MetricComparison, bold: bool) -> str:
    change = f"{metric.ratio - 1:+.1%}"
    ci = ""
    if metric.ci_low is not None and metric.ci_high is not None:
        ci = f"{metric.ci_low - 1:+.1%}..{metric.ci_high - 1:+.1%}"
    name = METRIC_NAMES.get(metric.metric, metric.metric)
    values = f"{_value(metric, metric.baseline)} → {_value(metric, metric.candidate)}"
    shown = f"**{change}**" if bold else change
    return (
        f"| {shown} | {ci} | {_cell(name)} | {values} | {_code(test_name(record))} | {_cell(record.device)} |"
    )


def _note_row(record: ResultRecord, note: str) -> str:
    return f"| | | {_cell(note)} | | {_code(test_name(record))} | {_cell(record.device)} |"


def _verdict_sections(report: RunReport) -> list[Section]:
    sections = []
    compared = [r for r in report.records if r.comparison is not None]
    for verdict in SHOWN:
        records = [r for r in compared if r.comparison and r.comparison.verdict == verdict]
        if not records:
            continue
        section = Section(
            ["", f"#### {ICONS[verdict]} {TITLES[verdict]} ({len(records)} result(s))", "", *CHANGE_HEADER]
        )
        for record in records:
            assert record.comparison is not None
            metrics = [m for m in record.comparison.metrics if m.verdict == verdict]
            if metrics:
                section.rows += [_metric_row(record, m, verdict == "regressed") for m in metrics]
            else:
                notes = record.comparison.notes or ("no metric to compare",)
                section.rows.append(_note_row(record, "; ".join(notes)))
        sections.append(section)
    return sections


def _folded_sections(report: RunReport) -> list[Section]:
    sections = []
    unchanged = [
        r for r in report.records if r.comparison is not None and r.comparison.verdict == "unchanged"
    ]
    if unchanged:
        section = Section(
            [
                "",
                f"<details><summary>{ICONS['unchanged']} {len(unchanged)} unchanged</summary>",
                "",
                *CHANGE_HEADER,
            ],
            tail=["", "</details>"],
        )
        for record in unchanged:
            assert record.comparison is not None
            first = next(iter(record.comparison.metrics), None)
            section.rows.append(
                _metric_row(record, first, False) if first is not None else _note_row(record, "unchanged")
            )
        sections.append(section)
    new = [r for r in report.records if r.comparison is not None and r.comparison.verdict == "new"]
    if new:
        section = Section(
            [
                "",
                f"<details><summary>{ICONS['new']} {len(new)} new (no baseline of the same test, device, "
                "variant and kind)</summary>",
                "",
                "| median | test | device |",
                "|---:|---|---|",
            ],
            tail=["", "</details>"],
        )
        section.rows = [
            f"| {format_ms(r.median_ms)} ms | {_code(test_name(r))} | {_cell(r.device)} |" for r in new
        ]
        sections.append(section)
    return sections


def _matrix_cell(grid: Grid, model: str, column: str) -> str:
    cell = grid.cells.get((model, column))
    if cell is None:
        return ""
    record = cell.record
    if record.median_ms is None:
        return _cell(record.status)
    text = f"{format_ms(record.median_ms)} ms"
    if cell.speedup is not None and record.precision != "fp32":
        text += f" ({cell.speedup:.2f}x)"
    if cell.accuracy is not None:
        text += f", {-cell.accuracy.points:+.1f} pts"
    return text + (" ★" if cell.best else "")


def _matrix_sections(grids: Sequence[Grid]) -> list[Section]:
    sections = []
    for grid in grids:
        head = [
            "",
            f"**{_cell(grid.title)}** (median; speed-up vs the runtime's fp32; ★ {_best_rule(grid)})",
            "",
            "| model | " + " | ".join(_cell(c) for c in grid.columns) + " |",
            "|---|" + "---:|" * len(grid.columns),
        ]
        rows = [
            f"| {_cell(model)} | " + " | ".join(_matrix_cell(grid, model, c) for c in grid.columns) + " |"
            for model in grid.models
        ]
        sections.append(Section(head, rows))
    return sections


def _best_rule(grid: Grid) -> str:
    return "fastest within budget" if "budget of" in grid.best_rule else "fastest, no budgets set"


def _fit(header: list[str], sections: list[Section], footer: list[str], limit: int) -> tuple[str, int]:
    """Keep whole sections' heads and as many rows as fit, in order; returns (text, rows left out)."""
    used = sum(len(line) + 1 for line in (*header, *footer)) + RESERVE
    left_out = 0
    for section in sections:
        frame = sum(len(line) + 1 for line in (*section.head, *section.tail))
        if used + frame > limit:
            left_out += len(section.rows)
            section.kept = -1
            continue
        used += frame
        for row in section.rows:
            if used + len(row) + 1 > limit:
                break
            used += len(row) + 1
            section.kept += 1
        left_out += len(section.rows) - section.kept
    lines = list(header)
    for section in sections:
        if section.kept >= 0:
            lines += section.head + section.rows[: section.kept] + section.tail
    return "\n".join([*lines, *footer]), left_out


def render_markdown(report: RunReport, *, report_url: str | None = None, limit: int = GITHUB_LIMIT) -> str:
    run = report.run
    counts = report.verdict_counts()
    title = " · ".join(f"{ICONS[v]} {counts[v]} {v}" for v in ICONS if v in counts) or "not compared"
    link = (
        f"[HTML report]({report_url})" if report_url else f"HTML report: `reports/{_cell(run.id)}/index.html`"
    )
    failed = [r for r in report.records if r.status in ("failed", "error")]
    statuses = ", ".join(f"{n} {status}" for status, n in report.status_counts().items())
    against = f" against `{_cell(report.baseline_spec)}`" if report.baseline_spec else ""
    header = [
        MARKER,
        f"### EdgeLab: {title}",
        "",
        f"Run `{_cell(run.id)}`{against}: {len(report.records)} result(s) ({statuses}) · {link}",
    ]
    if failed:
        header += [
            "",
            f"**{len(failed)} test(s) failed or errored:** "
            + ", ".join(_code(test_name(r)) + f" on {_cell(r.device)}" for r in failed[:10])
            + (f" and {len(failed) - 10} more" if len(failed) > 10 else ""),
        ]
    if report.compared:
        sections = _verdict_sections(report) + _folded_sections(report)
        if not any(r.comparison and r.comparison.verdict in SHOWN for r in report.records):
            header += ["", "No regression, improvement or inconclusive result."]
    else:
        header += ["", "No baseline to compare with (`--baseline`); the runtime x precision matrix:"]
        sections = _matrix_sections(matrices(report))
    footer: list[str] = []
    warnings = sorted({w.split(":")[0] for r in report.records for w in r.warnings})
    if warnings:
        footer += ["", "Environment warnings: " + ", ".join(_code(w) for w in warnings)]
    text, left_out = _fit(header, sections, footer, limit)
    if left_out:
        text += (
            f"\n\n…{left_out} row(s) left out to stay within GitHub's {limit:,}-character comment limit; "
            f"every row is in the {link if report_url else 'HTML report'}."
        )
    return text + "\n"
