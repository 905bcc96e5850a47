"""Energy per inference from what the agent sampled: counters (ODPM, RAPL) or power readings
(battery, INA3221, tegrastats, an external meter), with the idle baseline subtracted.

Counters give energy directly (difference of two readings, RAPL wrap handled); power readings
are integrated with the trapezoid rule. The uncertainty combines the counter's resolution in
time (one update interval of average power at each end) or the standard error of the power
mean, with the same for the idle baseline.
"""

from __future__ import annotations

import itertools
import math
import shlex
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.errors import ConfigError, ParseError

PREFERENCE = ("odpm", "rapl", "ina3221", "tegrastats", "battery")


@dataclass(frozen=True)
class EnergyReport:
    source: str
    kind: str  # "counter" or "power"
    status: str  # "ok", "refused: ..." or "insufficient: ..."
    duration_s: float
    iterations: int
    avg_power_w: float | None  # during the timed phase, idle included
    idle_power_w: float | None
    net_energy_mj: float | None  # (avg - idle) x duration
    mj_per_inference: float | None
    uncertainty_mj_per_inference: float | None
    sample_rate_hz: float | None  # distinct readings per second achieved
    samples: int


def pick_source(configured: str | None, available: Sequence[str]) -> str | None:
    """``energy`` from devices.yaml: a source name, ``none``, or ``auto`` (the best available)."""
    if configured in (None, "none", ""):
        return None
    if configured == "auto":
        return next((source for source in PREFERENCE if source in available), None)
    return configured


def _series(samples: Sequence[Sequence[Any]], start_ns: int, end_ns: int) -> list[tuple[float, float]]:
    """(seconds from start, value) for samples in [start, end] with a reading."""
    series = []
    for sample in samples:
        t_ns, value = int(sample[0]), sample[4] if len(sample) > 4 else None
        if value is not None and start_ns <= t_ns <= end_ns:
            series.append(((t_ns - start_ns) / 1e9, float(value)))
    return series


def _counter_energy_uj(series: list[tuple[float, float]], max_range_uj: float | None) -> float:
    total = 0.0
    for (_, before), (_, after) in itertools.pairwise(series):
        step = after - before
        if step < 0 and max_range_uj:
            step += max_range_uj  # the RAPL counter wrapped
        total += max(step, 0.0)
    return total


def _update_interval_s(series: list[tuple[float, float]]) -> float | None:
    changes = [t for (_, prev), (t, v) in itertools.pairwise(series) if v != prev]
    if len(changes) < 2:
        return None
    return (changes[-1] - changes[0]) / (len(changes) - 1)


def _power_stats(series: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(mean W over time, duration s, standard error of the mean W) of uW readings."""
    if len(series) < 2:
        value = series[0][1] / 1e6 if series else 0.0
        return value, 0.0, float("nan")
    energy = sum((t2 - t1) * (p1 + p2) / 2 for (t1, p1), (t2, p2) in itertools.pairwise(series))
    duration = series[-1][0] - series[0][0]
    mean = energy / duration / 1e6 if duration > 0 else series[0][1] / 1e6
    values = [p / 1e6 for _, p in series]
    average = sum(values) / len(values)
    spread = math.sqrt(sum((v - average) ** 2 for v in values) / (len(values) - 1))
    return mean, duration, spread / math.sqrt(len(values))


def compute(
    *,
    source: str,
    kind: str,
    samples: Sequence[Sequence[Any]],
    timed: tuple[int, int],
    idle: tuple[int, int] | None,
    iterations: int,
    max_range_uj: float | None = None,
    charging: bool = False,
) -> EnergyReport:
    """Energy of the timed window (and the idle window) from sampler rows ``[t_ns, ..., value]``."""
    duration = (timed[1] - timed[0]) / 1e9
    empty = EnergyReport(source, kind, "ok", duration, iterations, None, None, None, None, None, None, 0)
    if source == "battery" and charging:
        return _replace(
            empty, status="refused: the device is charging, battery current is not its consumption"
        )
    run = _series(samples, *timed)
    rest = _series(samples, *idle) if idle else []
    if len(run) < 2:
        return _replace(empty, status="insufficient: fewer than 2 readings in the timed phase; run longer")
    if kind == "counter":
        run_energy = _counter_energy_uj(run, max_range_uj) / 1e6
        span = run[-1][0] - run[0][0]
        avg_w = run_energy / span if span > 0 else None
        interval = _update_interval_s(run)
        idle_w = None
        if len(rest) >= 2 and rest[-1][0] > rest[0][0]:
            idle_w = _counter_energy_uj(rest, max_range_uj) / 1e6 / (rest[-1][0] - rest[0][0])
        spread_w = 2 * (avg_w or 0.0) * (interval or 0.0) / span if span > 0 else 0.0
        idle_spread_w = 0.0
        if idle_w is not None and len(rest) >= 2:
            idle_interval = _update_interval_s(rest) or 0.0
            idle_spread_w = 2 * idle_w * idle_interval / (rest[-1][0] - rest[0][0])
        distinct = len({v for _, v in run})
        rate = (distinct - 1) / span if span > 0 else None
    else:
        avg_w, span, spread_w = _power_stats(run)
        idle_w, idle_spread_w = None, 0.0
        if len(rest) >= 2:
            idle_w, _, idle_spread_w = _power_stats(rest)
        rate = (len(run) - 1) / span if span > 0 else None
    if avg_w is None:
        return _replace(empty, status="insufficient: the counter did not advance; run longer")
    net_w = avg_w - (idle_w or 0.0)
    net_mj = net_w * duration * 1e3
    per = net_mj / iterations if iterations else None
    spread = math.sqrt((spread_w if math.isfinite(spread_w) else 0.0) ** 2 + idle_spread_w**2)
    uncertainty = spread * duration * 1e3 / iterations if iterations else None
    status = "ok" if idle_w is not None else "ok: no idle baseline (energy includes idle power)"
    return EnergyReport(
        source=source,
        kind=kind,
        status=status,
        duration_s=round(duration, 6),
        iterations=iterations,
        avg_power_w=round(avg_w, 6),
        idle_power_w=round(idle_w, 6) if idle_w is not None else None,
        net_energy_mj=round(net_mj, 6),
        mj_per_inference=round(per, 9) if per is not None else None,
        uncertainty_mj_per_inference=round(uncertainty, 9) if uncertainty is not None else None,
        sample_rate_hz=round(rate, 3) if rate is not None else None,
        samples=len(run),
    )


def _replace(report: EnergyReport, **changes: Any) -> EnergyReport:
    values = asdict(report)
    values.update(changes)
    return EnergyReport(**values)


def tegrastats_rows(lines: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Sampler-shaped rows ``[t_ns, None, None, None, uW]`` from tegrastats lines (VDD_IN)."""
    from harness.probes.parsers.boards import parse_tegrastats

    rows: list[list[Any]] = []
    for t_ns, line in lines:
        try:
            (sample,) = parse_tegrastats(str(line)).samples
        except (ParseError, ValueError):  # a partial line at kill time
            continue
        if sample.total_power_mw is not None:
            rows.append([int(t_ns), None, None, None, sample.total_power_mw * 1e3])
    return rows


def meter_rows(lines: Sequence[tuple[int, str]]) -> list[list[Any]]:
    """Rows from an external meter command: each line's first number is watts."""
    rows: list[list[Any]] = []
    for t_ns, line in lines:
        token = line.strip().split()[0] if line.strip() else ""
        try:
            rows.append([t_ns, None, None, None, float(token.rstrip("W")) * 1e6])
        except ValueError:
            continue
    return rows


class ExternalMeter:
    """A host command that prints one power reading (watts) per line, run during the benchmark;
    each line is stamped with the host's wall clock (ns) when it arrives."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.lines: list[tuple[int, str]] = []
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.lines = []
        try:
            self._process = subprocess.Popen(
                shlex.split(self.command),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise ConfigError(
                f"energy_meter command {self.command!r} cannot start ({exc.strerror}); fix energy_meter "
                "in devices.yaml"
            ) from None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append((time.time_ns(), line))

    def stop(self) -> list[tuple[int, str]]:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._thread is not None:
            self._thread.join(5)
        return list(self.lines)
