"""``reports/<run>/summary.md``: a GitHub-flavoured regression table small enough for a PR comment."""

from __future__ import annotations

from typing import Any

from harness.report.data import RunReport

MARKER = "<!-- edgelab-summary -->"
MAX_ROWS = 40
ARROWS = {
    "regressed": "🔺 regressed",
    "improved": "🟢 improved",
    "unchanged": "⚪ unchanged",
    "inconclusive": "❔ inconclusive",
    "new": "🆕 new",
}
ORDER = {"regressed": 0, "inconclusive": 1, "improved": 2, "new": 3, "unchanged": 4}


def _cell(text: Any) -> str:
    """Table-safe: no pipes, no newlines, no HTML."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(report: RunReport) -> str:
    run = report.run
    lines = [MARKER, f"### EdgeLab: run `{_cell(run.id)}`", ""]
    rows = [r for r in report.records if r.comparison is not None]
    failed = [r for r in report.records if r.status in ("failed", "error")]
    if not rows:
        lines.append(f"{len(report.records)} result(s); no baseline to compare with.")
    else:
        counts = {verdict: sum(1 for r in rows if r.verdict == verdict) for verdict in ORDER}
        lines.append(
            " · ".join(f"{ARROWS[v]}: {n}" for v, n in counts.items() if n)
            + f" (baseline {_cell(report.baseline_spec or 'from the run')})"
        )
        lines += [
            "",
            "| | device | model | variant | metric | baseline | now | change | 99% CI |",
            "|---|---|---|---|---|---:|---:|---:|---|",
        ]
        shown = 0
        for record in sorted(rows, key=lambda r: ORDER.get(str(r.verdict), 9)):
            assert record.comparison is not None
            metrics = record.comparison.metrics or (None,)
            for metric in metrics:
                if shown >= MAX_ROWS:
                    break
                who = f"{_cell(record.device)} | {_cell(record.model)} | {_cell(record.variant_label)}"
                if metric is None:
                    lines.append(f"| {ARROWS[record.comparison.verdict]} | {who} | | | | | |")
                else:
                    ci = ""
                    if metric.ci_low is not None and metric.ci_high is not None:
                        ci = f"{metric.ci_low - 1:+.1%} .. {metric.ci_high - 1:+.1%}"
                    lines.append(
                        f"| {ARROWS.get(metric.verdict, metric.verdict)} | {who} | "
                        f"{_cell(metric.metric)} | {metric.baseline:.4g} | {metric.candidate:.4g} | "
                        f"{metric.ratio - 1:+.1%} | {ci} |"
                    )
                shown += 1
        hidden = sum(len(r.comparison.metrics or (None,)) for r in rows if r.comparison) - shown
        if hidden > 0:
            lines.append(f"\n…and {hidden} more row(s) in the HTML report.")
    if failed:
        lines += [
            "",
            f"**{len(failed)} test(s) failed or errored:** "
            + ", ".join(f"`{_cell(r.test)}`" for r in failed[:10]),
        ]
    warnings = sorted({w.split(":")[0] for r in report.records for w in r.warnings})
    if warnings:
        lines += ["", "Environment warnings: " + ", ".join(f"`{_cell(w)}`" for w in warnings)]
    return "\n".join(lines) + "\n"
