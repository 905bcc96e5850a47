"""``edgelab report --history``: the trend of every (device, variant) across stored runs."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2

from harness.report.html import TEMPLATES, json_island, plotly_bundle
from harness.store.db import ResultsStore


def render_history(store: ResultsStore, *, branch: str | None = None, last: int = 30) -> str:
    runs = store.runs(branch=branch, limit=last)
    # one line per result identity: a test measures a variant in one way, and only that is a trend
    series: dict[str, dict[str, list[tuple[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for run in reversed(runs):  # oldest first on the x axis
        for record in store.records(run.id, with_samples=False):
            if record.status == "passed" and record.median_ms is not None:
                label = f"{record.test_id} {record.variant_label} ({record.kind})"
                series[record.device][label].append((run.id, record.median_ms))
    figures: dict[str, dict[str, Any]] = {}
    for index, (device, variants) in enumerate(sorted(series.items())):
        figures[f"history-{index}"] = {
            "data": [
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": label,
                    "x": [run_id for run_id, _ in points],
                    "y": [value for _, value in points],
                }
                for label, points in sorted(variants.items())
            ],
            "layout": {
                "title": {"text": f"{device}: median latency (ms)"},
                "yaxis": {"type": "log", "title": {"text": "ms"}},
                "xaxis": {"type": "category", "title": {"text": "run"}},
                "height": 420,
            },
        }
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    environment.filters["json_island"] = json_island
    return environment.get_template("history.html.j2").render(
        runs=runs, branch=branch, figures=figures, plotly_bundle=plotly_bundle()
    )


def write_history(store: ResultsStore, path: Path, *, branch: str | None = None, last: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(render_history(store, branch=branch, last=last), encoding="utf-8")
    os.replace(temporary, path)
    return path
