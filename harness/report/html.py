"""``reports/<run>/index.html``: one self-contained page that opens offline.

plotly.js is embedded once, gzip-compressed and base64-encoded (1.5 of its 4.8 MB), and
unpacked in the browser with DecompressionStream; charts are small JSON specs (box plots carry
precomputed quartiles, not samples), so a run of 200 variants x 1,000 samples stays small.
Every user-supplied string is escaped by Jinja2; JSON islands escape ``<``, ``>`` and ``&``.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2

from harness.record import ResultRecord
from harness.report.data import RunReport, distribution

TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def plotly_bundle() -> str:
    """plotly.js, gzip + base64, cached on disk per plotly version (compressing takes ~0.3 s)."""
    import plotly
    from plotly.offline import get_plotlyjs

    cache_root = Path(os.environ.get("EDGELAB_CACHE", Path.home() / ".cache" / "edgelab"))
    cached = cache_root / "report" / f"plotly-{plotly.__version__}.js.gz.b64"
    if cached.exists():
        return cached.read_text()
    encoded = base64.b64encode(gzip.compress(get_plotlyjs().encode(), compresslevel=9, mtime=0)).decode()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(encoded)
    except OSError:
        pass
    return encoded


def json_island(value: Any) -> str:
    """JSON safe inside <script type="application/json">: no way to close the tag."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _label(record: ResultRecord) -> str:
    return f"{record.model} {record.variant_label} ({record.kind})"


def figures(report: RunReport) -> dict[str, dict[str, Any]]:
    """Plotly figure specs by id: distributions, Pareto, thermal timelines."""
    figs: dict[str, dict[str, Any]] = {}
    by_device: dict[str, list[ResultRecord]] = defaultdict(list)
    for record in report.records:
        if record.latency_ms is not None:
            by_device[record.device].append(record)
    for index, (device, records) in enumerate(sorted(by_device.items())):
        boxes = []
        for record in records:
            stats = distribution(record.latency_samples_ms)
            if stats is None:
                continue
            boxes.append(
                {
                    "type": "box",
                    "name": _label(record),
                    "q1": [stats["q1"]],
                    "median": [stats["median"]],
                    "q3": [stats["q3"]],
                    "lowerfence": [stats["p1"]],
                    "upperfence": [stats["p99"]],
                    "mean": [stats["mean"]],
                    "boxpoints": False,
                    "orientation": "h",
                }
            )
        if boxes:
            figs[f"dist-{index}"] = {
                "data": boxes,
                "layout": {
                    "title": {"text": f"{device}: latency (ms), box = quartiles, whiskers = p1..p99"},
                    "xaxis": {"type": "log", "title": {"text": "ms"}},
                    "height": 120 + 28 * len(boxes),
                    "showlegend": False,
                    "margin": {"l": 240},
                },
            }
        points = [r for r in records if r.energy is not None and r.energy.mj_per_inference]
        if points:
            figs[f"pareto-{index}"] = {
                "data": [
                    {
                        "type": "scatter",
                        "mode": "markers+text",
                        "x": [r.median_ms for r in points],
                        "y": [r.energy.mj_per_inference for r in points if r.energy],
                        "error_y": {
                            "type": "data",
                            "array": [
                                (r.energy.uncertainty_mj_per_inference or 0) if r.energy else 0
                                for r in points
                            ],
                        },
                        "text": [_label(r) for r in points],
                        "textposition": "top center",
                    }
                ],
                "layout": {
                    "title": {"text": f"{device}: energy vs latency (lower left is better)"},
                    "xaxis": {"type": "log", "title": {"text": "median latency (ms)"}},
                    "yaxis": {"type": "log", "title": {"text": "mJ per inference"}},
                    "height": 420,
                },
            }
        for serial, record in enumerate(r for r in records if r.sustained is not None):
            assert record.sustained is not None
            curve = record.sustained.points
            figs[f"sustained-{index}-{serial}"] = {
                "data": [
                    {
                        "type": "scatter",
                        "name": "median latency (ms)",
                        "x": [p.offset_s for p in curve],
                        "y": [p.median_ms for p in curve],
                    },
                    {
                        "type": "scatter",
                        "name": "hottest zone (C)",
                        "yaxis": "y2",
                        "x": [p.offset_s for p in curve],
                        "y": [p.hottest_c for p in curve],
                    },
                    {
                        "type": "scatter",
                        "name": "cpufreq ceiling (x max)",
                        "yaxis": "y3",
                        "line": {"dash": "dot"},
                        "x": [p.offset_s for p in curve],
                        "y": [p.ceiling_ratio for p in curve],
                    },
                ],
                "layout": {
                    "title": {"text": f"{device}: sustained {_label(record)}"},
                    "xaxis": {"title": {"text": "s"}, "domain": [0, 0.85]},
                    "yaxis": {"title": {"text": "ms"}},
                    "yaxis2": {"title": {"text": "C"}, "overlaying": "y", "side": "right"},
                    "yaxis3": {
                        "overlaying": "y",
                        "side": "right",
                        "position": 0.95,
                        "range": [0, 1.05],
                        "anchor": "free",
                    },
                    "height": 380,
                },
            }
    return figs


def matrix(report: RunReport) -> dict[str, dict[str, Any]]:
    """(device, test, kind) -> {models, variants, cells[(model, variant)] -> record}: one grid per
    test and protocol, so a cell never mixes a latency run with an accuracy or sustained one."""
    grid: dict[str, dict[str, Any]] = {}
    for record in report.records:
        title = f"{record.device} · {record.test_id.split('[')[0]} ({record.kind})"
        table = grid.setdefault(title, {"models": [], "variants": [], "cells": {}})
        if record.model not in table["models"]:
            table["models"].append(record.model)
        if record.variant_label not in table["variants"]:
            table["variants"].append(record.variant_label)
        table["cells"][(record.model, record.variant_label)] = record
    return grid


def render_html(report: RunReport) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["json_island"] = json_island
    figs = figures(report)
    warnings = sorted({w for r in report.records for w in r.warnings})
    return environment.get_template("report.html.j2").render(
        run=report.run,
        run_json=report.run.to_json(),
        records=report.records,
        regressions=report.regressions,
        compared=report.compared,
        baseline=report.baseline_spec,
        matrix=matrix(report),
        figures=figs,
        warnings=warnings,
        plotly_bundle=plotly_bundle(),
        accuracy=[r for r in report.records if r.accuracy is not None],
    )


def write_html(report: RunReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(render_html(report), encoding="utf-8")
    os.replace(temporary, path)
    return path
