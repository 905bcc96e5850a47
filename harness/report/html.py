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
from pathlib import Path
from typing import Any

import jinja2

from harness.record import ResultRecord
from harness.report import files
from harness.report.data import (
    Grid,
    Pareto,
    RunReport,
    accuracy_paretos,
    distribution,
    energy_paretos,
    matrices,
    short_test,
    slice_tables,
)

TEMPLATES = Path(__file__).parent / "templates"
RUN_COLOUR = "#2f6fd0"
BASELINE_COLOUR = "#8a8f99"
FRONT_COLOUR = "#d0602f"
# Axis titles carry the unit; every chart has both (tests/report checks it).
AXIS_FONT = {"size": 12}


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


@functools.cache
def environment() -> jinja2.Environment:
    """One per process: compiling the templates costs more than rendering a run."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json_island"] = json_island
    env.filters["short_test"] = short_test
    env.filters["ms"] = format_ms
    return env


def format_ms(value: float | None) -> str:
    """Milliseconds with 3-4 significant digits whatever the scale: 0.0641, 9.99, 11.0, 1523."""
    if value is None:
        return "-"
    for bound, digits in ((100, 0), (10, 1), (1, 2), (0.01, 3)):
        if abs(value) >= bound:
            return f"{value:.{digits}f}"
    return f"{value:.2g}"


def axis_spec(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title, "font": AXIS_FONT}, "automargin": True, **extra}


def layout_spec(height: int, x: dict[str, Any], y: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "xaxis": x,
        "yaxis": y,
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "font": {"size": 11}},
        **extra,
    }


def _row_label(record: ResultRecord) -> str:
    threads = f" x{record.threads}" if record.threads is not None else ""
    return f"{record.model}<br>{record.runtime}/{record.precision}{threads}"


def distribution_figure(report: RunReport, grid: Grid) -> dict[str, Any] | None:
    """One row per result with its latency distribution, and its baseline's right under it:
    quartile box with p1..p99 whiskers from the samples, or a median with a min..p99 bar where
    only a summary exists (an interleaved baseline, a runner without per-iteration samples)."""
    rows: list[tuple[str, str]] = []
    traces: dict[str, dict[str, Any]] = {}

    def add_box(name: str, colour: str, row: str, stats: dict[str, float]) -> None:
        trace = traces.setdefault(
            name,
            {
                "type": "box",
                "name": name,
                "orientation": "h",
                "marker": {"color": colour},
                "boxpoints": False,
                "hoverinfo": "x+name",
                "y": [],
                "q1": [],
                "median": [],
                "q3": [],
                "lowerfence": [],
                "upperfence": [],
                "mean": [],
            },
        )
        trace["y"].append(row)
        for key, source in (
            ("q1", "q1"),
            ("median", "median"),
            ("q3", "q3"),
            ("lowerfence", "p1"),
            ("upperfence", "p99"),
            ("mean", "mean"),
        ):
            trace[key].append(stats[source])

    def add_summary(name: str, colour: str, row: str, median: float, span: tuple[float, float]) -> None:
        low, high = span
        trace = traces.setdefault(
            name,
            {
                "type": "scatter",
                "mode": "markers",
                "name": name,
                "marker": {"color": colour, "symbol": "diamond", "size": 9},
                "x": [],
                "y": [],
                "error_x": {"type": "data", "symmetric": False, "array": [], "arrayminus": []},
            },
        )
        trace["x"].append(median)
        trace["y"].append(row)
        trace["error_x"]["array"].append(max(0.0, high - median))
        trace["error_x"]["arrayminus"].append(max(0.0, median - low))

    for model in grid.models:
        for column in grid.columns:
            cell = grid.cells.get((model, column))
            if cell is None or cell.record.latency_ms is None:
                continue
            record = cell.record
            row = cell.anchor
            stats = distribution(record.latency_samples_ms)
            latency = record.latency_ms
            assert latency is not None
            if stats is not None:
                add_box("this run: box = quartiles, whiskers = p1..p99", RUN_COLOUR, row, stats)
            else:
                add_summary(
                    "this run: median, bar = min..p99 (no per-iteration samples)",
                    RUN_COLOUR,
                    row,
                    latency.median,
                    (latency.min, latency.p99),
                )
            rows.append((row, _row_label(record)))
            comparison = record.comparison
            if comparison is None:
                continue
            if comparison.interleaved is not None:
                summary = comparison.interleaved.baseline_latency_ms
                baseline_row = f"{row}-baseline"
                add_summary(
                    "baseline, interleaved rounds: median, bar = min..p99",
                    BASELINE_COLOUR,
                    baseline_row,
                    summary.median,
                    (summary.min, summary.p99),
                )
                rows.append((baseline_row, "↳ baseline<br>(interleaved)"))
                continue
            baseline = report.baselines.get(record.identity())
            base_stats = distribution(baseline.latency_samples_ms) if baseline is not None else None
            if baseline is not None and base_stats is not None:
                baseline_row = f"{row}-baseline"
                add_box(
                    "baseline run: box = quartiles, whiskers = p1..p99",
                    BASELINE_COLOUR,
                    baseline_row,
                    base_stats,
                )
                rows.append((baseline_row, f"↳ baseline<br>{baseline.run_id[:20]}"))
    if not rows:
        return None
    height = 90 + 34 * len(rows)
    return {
        "data": list(traces.values()),
        "layout": layout_spec(
            height,
            axis_spec("latency per inference (ms, log scale)", type="log"),
            axis_spec(
                "result",
                type="category",
                categoryorder="array",
                categoryarray=[r for r, _ in rows],
                tickmode="array",
                tickvals=[r for r, _ in rows],
                ticktext=[label for _, label in rows],
                autorange="reversed",
                tickfont={"size": 10},
            ),
            showlegend=True,
        ),
    }


def pareto_figure(pareto: Pareto, x_title: str = "median latency (ms)") -> dict[str, Any]:
    front = pareto.front
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": "Pareto front",
                "line": {
                    "color": FRONT_COLOUR,
                    "dash": "dot",
                    "shape": "hv" if pareto.higher_is_better else "linear",
                },
                "x": [p.latency_ms for p in front],
                "y": [p.score for p in front],
                "hoverinfo": "skip",
            },
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": "variants",
                "x": [p.latency_ms for p in pareto.points],
                "y": [p.score for p in pareto.points],
                "text": [p.label for p in pareto.points],
                "textposition": _text_sides([p.latency_ms for p in pareto.points]),
                "textfont": {"size": 10},
                "marker": {
                    "size": 10,
                    "color": [FRONT_COLOUR if p.on_front else BASELINE_COLOUR for p in pareto.points],
                },
                "cliponaxis": False,
            },
        ],
        "layout": layout_spec(340, axis_spec(x_title), axis_spec(pareto.y_title), showlegend=True),
    }


def _text_sides(xs: list[float]) -> list[str]:
    """Labels point inwards, so the ones at the edges of the chart are not cut."""
    low, high = min(xs), max(xs)
    middle = (low + high) / 2
    return ["top center" if high == low else "top right" if x < middle else "top left" for x in xs]


def timeline_figure(record: ResultRecord) -> dict[str, Any] | None:
    """What was measured over time, and only that: latency per window (sustained runs) in a top
    panel, the hottest zone and the cpufreq ceiling below when sensors gave them. None when
    nothing was."""
    latency: list[float] | None = None
    if record.sustained is not None and record.sustained.points:
        points = record.sustained.points
        x_values = [p.offset_s for p in points]
        latency = [p.median_ms for p in points]
        temps, ceilings = [p.hottest_c for p in points], [p.ceiling_ratio for p in points]
    elif record.thermal_trace is not None and record.thermal_trace.samples:
        trace = record.thermal_trace
        x_values = [s.offset_s for s in trace.samples]
        temps = [trace.hottest_c(s) for s in trace.samples]
        ceilings = [trace.ceiling_ratio(s) for s in trace.samples]
    else:
        return None
    panels: list[tuple[str, str, list[Any], dict[str, Any]]] = []  # (name, axis title, values, style)
    if latency is not None:
        panels.append(("median latency per window", "latency (ms)", latency, {"color": RUN_COLOUR}))
    if any(t is not None for t in temps):
        panels.append(("hottest zone", "hottest zone (°C)", temps, {"color": FRONT_COLOUR}))
    if any(c is not None for c in ceilings):
        style = {"color": BASELINE_COLOUR, "dash": "dot"}
        panels.append(("cpufreq ceiling", "cpufreq ceiling (share of max)", ceilings, style))
    if not panels:
        return None
    thermal = [p for p in panels if p[0] != "median latency per window"]
    split = latency is not None and bool(thermal)
    traces: list[dict[str, Any]] = []
    axes: dict[str, dict[str, Any]] = {}
    for index, (name, title, values, style) in enumerate(panels):
        key = "yaxis" if index == 0 else f"yaxis{index + 1}"
        extra: dict[str, Any] = {}
        if name == "cpufreq ceiling":
            extra |= {"range": [0, 1.05], "tickformat": ".0%", "dtick": 0.25}
        if split:
            extra["domain"] = [0.58, 1.0] if name == "median latency per window" else [0.0, 0.42]
        first_thermal = bool(thermal) and thermal[0][0] == name
        if index > 0 and not first_thermal:  # the second thermal line shares the lower panel
            extra |= {"overlaying": f"y{index}" if index > 1 else "y", "side": "right"}
        elif index > 0:
            extra["anchor"] = "x"
        axes[key] = axis_spec(title, **extra)
        traces.append(
            {"type": "scatter", "mode": "lines", "name": name, "x": x_values, "y": values, "line": style}
            | ({"yaxis": f"y{index + 1}"} if index else {})
        )
    layout = layout_spec(
        380 if split else 300,
        axis_spec("time from the start of the timed phase (s)", **({"anchor": "y2"} if split else {})),
        axes.pop("yaxis"),
        showlegend=True,
    )
    return {"data": traces, "layout": layout | axes}


def figures(report: RunReport, grids: list[Grid] | None = None) -> dict[str, dict[str, Any]]:
    """Plotly figure specs by element id: distributions per grid, Pareto fronts, timelines."""
    figs: dict[str, dict[str, Any]] = {}
    for index, grid in enumerate(grids if grids is not None else matrices(report)):
        figure = distribution_figure(report, grid)
        if figure is not None:
            figs[f"dist-{index}"] = figure
    for index, pareto in enumerate(accuracy_paretos(report)):
        figs[f"pareto-accuracy-{index}"] = pareto_figure(pareto)
    for index, pareto in enumerate(energy_paretos(report)):
        if len(pareto.points) >= 2:
            figs[f"pareto-energy-{index}"] = pareto_figure(pareto)
    for record in timeline_records(report):
        figure = timeline_figure(record)
        if figure is not None:
            figs[f"timeline-{report.anchor(record)}"] = figure
    return figs


def timeline_records(report: RunReport) -> list[ResultRecord]:
    """Sustained runs, and runs the device throttled (their trace shows when and why)."""
    return [
        r
        for r in report.records
        if r.sustained is not None
        or (r.throttle is not None and r.throttle.throttled and r.thermal_trace is not None)
    ]


def render_html(report: RunReport) -> str:
    grids = matrices(report)
    figs = figures(report, grids)
    warnings = sorted({w for r in report.records for w in r.warnings})
    paretos = [p for p in accuracy_paretos(report)]
    energy = [p for p in energy_paretos(report) if len(p.points) >= 2]
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            run=report.run,
            run_json=report.run.to_json(),
            records=report.records,
            regressions=report.regressions,
            compared=report.compared,
            baseline=report.baseline_spec,
            grids=grids,
            figures=figs,
            accuracy_paretos=paretos,
            energy_paretos=energy,
            slice_tables=slice_tables(report),
            timelines=[r for r in timeline_records(report) if f"timeline-{report.anchor(r)}" in figs],
            warnings=warnings,
            plotly_bundle=plotly_bundle(),
        )
    )


def write_html(report: RunReport, path: Path) -> Path:
    return files.write_text(path, render_html(report))
