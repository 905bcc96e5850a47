"""``edgelab report --history``: one small chart per result identity across stored runs, by date,
with the regressions the runs recorded and the step changes a penalized fit finds in each series.

Reads the runs through harness.results (the database, else the run folders); verdicts shown are
the records' own. Steps are listed at the top with the commit range each happened in.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.record import ResultIdentity, RunInfo
from harness.report.data import policy_of, short_test, test_without_variant
from harness.report.files import write_text
from harness.report.html import (
    BASELINE_COLOUR,
    FRONT_COLOUR,
    RUN_COLOUR,
    axis_spec,
    environment,
    layout_spec,
    plotly_bundle,
)
from harness.results import iter_runs
from harness.step_detect import Step, detect_steps


@dataclass(frozen=True)
class Point:
    run: RunInfo
    median_ms: float
    ci_low: float | None
    ci_high: float | None
    verdict: str | None


@dataclass(frozen=True)
class Series:
    identity: ResultIdentity
    points: tuple[Point, ...]
    steps: tuple[Step, ...]

    @property
    def variant(self) -> str:
        threads = f" x{self.identity.threads}" if self.identity.threads is not None else ""
        return f"{self.identity.model} {self.identity.runtime}/{self.identity.precision}{threads}"

    @property
    def test(self) -> str:
        i = self.identity
        return f"{short_test(test_without_variant(i.test_id, i.model, i.runtime, i.precision))} ({i.kind})"

    @property
    def title(self) -> str:
        return f"{self.identity.device} · {self.variant} · {self.test}"


@dataclass(frozen=True)
class StepRow:
    series: Series
    step: Step
    anchor: str

    @property
    def before(self) -> RunInfo:
        return self.series.points[self.step.index - 1].run

    @property
    def after(self) -> RunInfo:
        return self.series.points[self.step.index].run


def commit_url(repo_url: str | None, commit: str | None) -> str | None:
    return f"{repo_url.rstrip('/')}/commit/{commit}" if repo_url and commit else None


def compare_url(repo_url: str | None, before: str | None, after: str | None) -> str | None:
    if not (repo_url and before and after):
        return None
    return f"{repo_url.rstrip('/')}/compare/{before}...{after}"


def collect(
    reports_dir: Path, results_db: str | None, *, branch: str | None, last: int
) -> tuple[list[RunInfo], list[Series]]:
    """Runs (oldest first) and one series per identity with a median latency."""
    runs: list[RunInfo] = []
    points: dict[ResultIdentity, list[Point]] = defaultdict(list)
    for loaded in iter_runs(reports_dir, results_db, last=last, branch=branch):
        runs.append(loaded.run)
        seen: dict[ResultIdentity, Point] = {}
        for record in loaded.records:
            latency = record.latency_ms
            if record.status != "passed" or latency is None:
                continue
            verdict = str(record.comparison.verdict) if record.comparison is not None else None
            seen[record.identity()] = Point(
                loaded.run, latency.median, latency.median_ci_low, latency.median_ci_high, verdict
            )
        for identity, point in seen.items():  # a rerun within one run: its last result
            points[identity].append(point)
    series = []
    for identity, values in sorted(points.items(), key=lambda pair: _sort_key(pair[0])):
        floor = policy_of(values[-1].run).floor(identity.device)
        steps = detect_steps([p.median_ms for p in values], floor=floor)
        series.append(Series(identity, tuple(values), tuple(steps)))
    return runs, series


def _sort_key(identity: ResultIdentity) -> tuple[str, str, str, str, str, int, str]:
    return (
        identity.device,
        identity.test_id,
        identity.model,
        identity.runtime,
        identity.precision,
        identity.threads or 0,
        identity.kind,
    )


def series_figure(series: Series, repo_url: str | None) -> dict[str, Any]:
    points = series.points
    dates = [p.run.started_at for p in points]
    hover = [
        f"run {p.run.id}<br>commit {(p.run.git_commit or 'not recorded')[:12]}<br>{p.median_ms:.4g} ms"
        + (f"<br>{p.verdict}" if p.verdict else "")
        for p in points
    ]
    upper = [None if p.ci_high is None else p.ci_high - p.median_ms for p in points]
    lower = [None if p.ci_low is None else p.median_ms - p.ci_low for p in points]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "median (95% CI)",
            "x": dates,
            "y": [p.median_ms for p in points],
            "error_y": {"type": "data", "symmetric": False, "array": upper, "arrayminus": lower},
            "line": {"color": RUN_COLOUR},
            "marker": {"color": RUN_COLOUR, "size": 6},
            "text": hover,
            "hoverinfo": "text",
            "customdata": [commit_url(repo_url, p.run.git_commit) for p in points],
        }
    ]
    regressed = [p for p in points if p.verdict == "regressed"]
    if regressed:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "regressed vs its baseline",
                "x": [p.run.started_at for p in regressed],
                "y": [p.median_ms for p in regressed],
                "marker": {"color": "#b00020", "symbol": "x", "size": 12},
                "hoverinfo": "skip",
            }
        )
    if series.steps:
        bounds = [0, *(s.index for s in series.steps), len(points)]
        levels = [series.steps[0].before, *(s.after for s in series.steps)]
        x: list[str | None] = []
        y: list[float | None] = []
        for (begin, end), level in zip(itertools.pairwise(bounds), levels, strict=True):
            x += [points[begin].run.started_at, points[end - 1].run.started_at, None]
            y += [level, level, None]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "detected levels",
                "x": x,
                "y": y,
                "line": {"color": FRONT_COLOUR, "width": 3, "dash": "dot"},
                "hoverinfo": "skip",
            }
        )
    return {
        "data": data,
        "layout": layout_spec(
            260,
            axis_spec("run date (UTC)", type="date"),
            axis_spec("median latency (ms)", rangemode="tozero"),
            showlegend=len(data) > 1,
            legend={"orientation": "h", "y": -0.45, "yanchor": "top", "font": {"size": 10}},
        ),
    }


def render_history(
    reports_dir: Path,
    results_db: str | None = None,
    *,
    branch: str | None = None,
    last: int = 30,
    repo_url: str | None = None,
) -> str:
    runs, series = collect(reports_dir, results_db, branch=branch, last=last)
    figures = {f"series-{index}": series_figure(s, repo_url) for index, s in enumerate(series)}
    steps = [StepRow(s, step, f"series-{index}") for index, s in enumerate(series) for step in s.steps]
    steps.sort(key=lambda row: -abs(row.step.change))
    by_device: dict[str, dict[str, list[tuple[int, Series]]]] = defaultdict(lambda: defaultdict(list))
    for index, s in enumerate(series):
        by_device[s.identity.device][s.test].append((index, s))
    return (
        environment()
        .get_template("history.html.j2")
        .render(
            runs=list(reversed(runs)),
            branch=branch,
            steps=steps,
            by_device={device: dict(tests) for device, tests in sorted(by_device.items())},
            series_count=len(series),
            regressions=sum(1 for s in series for p in s.points if p.verdict == "regressed"),
            figures=figures,
            repo_url=repo_url,
            commit_url=commit_url,
            compare_url=compare_url,
            plotly_bundle=plotly_bundle(),
            colours={"run": RUN_COLOUR, "baseline": BASELINE_COLOUR},
        )
    )


def write_history(
    reports_dir: Path,
    path: Path,
    results_db: str | None = None,
    *,
    branch: str | None = None,
    last: int = 30,
    repo_url: str | None = None,
) -> Path:
    text = render_history(reports_dir, results_db, branch=branch, last=last, repo_url=repo_url)
    return write_text(path, text)
