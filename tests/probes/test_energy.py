"""Energy per inference from counters and power readings, on constructed sampler rows."""

from __future__ import annotations

import sys

import pytest

from harness.probes.energy import ExternalMeter, compute, meter_rows, pick_source, tegrastats_rows

S = 1_000_000_000  # ns


def counter_rows(start_s: float, end_s: float, step_s: float, watts: float, offset_uj: float = 0.0):
    steps = round((end_s - start_s) / step_s)
    times = [start_s + i * step_s for i in range(steps + 1)]
    return [[round(t * S), [], [], [], offset_uj + watts * (t - start_s) * 1e6] for t in times]


def test_counter_energy_subtracts_the_idle_baseline():
    idle = counter_rows(0.0, 1.0, 0.1, 0.5)
    run = counter_rows(1.0, 3.0, 0.1, 4.5, offset_uj=0.5e6)
    report = compute(
        source="odpm",
        kind="counter",
        samples=idle + run[1:],
        timed=(1 * S, 3 * S),
        idle=(0, 1 * S),
        iterations=1000,
    )
    assert report.status == "ok"
    assert report.avg_power_w == pytest.approx(4.5) and report.idle_power_w == pytest.approx(0.5)
    assert report.net_energy_mj == pytest.approx(4.0 * 2.0 * 1e3)
    assert report.mj_per_inference == pytest.approx(8.0)
    assert report.sample_rate_hz == pytest.approx(10.0)
    # one update interval of power at each end of each window
    assert report.uncertainty_mj_per_inference == pytest.approx(
        ((2 * 4.5 * 0.1 / 2.0) ** 2 + (2 * 0.5 * 0.1 / 1.0) ** 2) ** 0.5 * 2.0 * 1e3 / 1000
    )


def test_rapl_wrap_is_added_back():
    max_range = 1_000_000.0
    rows = counter_rows(0.0, 1.0, 0.25, 3.0, offset_uj=max_range - 1_000_000 * 0.4)
    for row in rows:
        row[4] = row[4] % max_range
    report = compute(
        source="rapl",
        kind="counter",
        samples=rows,
        timed=(0, S),
        idle=None,
        iterations=10,
        max_range_uj=max_range,
    )
    assert report.avg_power_w == pytest.approx(3.0)
    assert report.status.startswith("ok: no idle baseline")


def test_power_readings_are_integrated_with_a_standard_error():
    rows = [
        [int(t * S / 10), [], [], [], (2.0 + (0.2 if i % 2 else -0.2)) * 1e6] for i, t in enumerate(range(21))
    ]
    idle = [[int(-S + i * S / 10), [], [], [], 0.5e6] for i in range(10)]
    report = compute(
        source="ina3221", kind="power", samples=idle + rows, timed=(0, 2 * S), idle=(-S, -1), iterations=100
    )
    assert report.avg_power_w == pytest.approx(2.0, abs=0.02)
    assert report.idle_power_w == pytest.approx(0.5)
    assert report.mj_per_inference == pytest.approx(1.5 * 2.0 * 1e3 / 100, rel=0.02)
    assert report.uncertainty_mj_per_inference == pytest.approx(0.2 / 21**0.5 * 2.0 * 1e3 / 100, rel=0.1)


def test_battery_is_refused_while_charging_and_short_runs_say_so():
    rows = counter_rows(0.0, 1.0, 0.1, 1.0)
    refused = compute(
        source="battery", kind="power", samples=rows, timed=(0, S), idle=None, iterations=5, charging=True
    )
    assert refused.status.startswith("refused: the device is charging") and refused.mj_per_inference is None
    short = compute(source="odpm", kind="counter", samples=rows[:1], timed=(0, S), idle=None, iterations=5)
    assert short.status.startswith("insufficient")


def test_source_choice():
    assert pick_source("auto", ["battery", "rapl"]) == "rapl"
    assert pick_source("auto", ["battery", "odpm"]) == "odpm"
    assert pick_source("auto", []) is None
    assert pick_source("none", ["odpm"]) is None
    assert pick_source("battery", ["odpm", "battery"]) == "battery"


def test_tegrastats_and_meter_lines_become_rows():
    line = "RAM 1/2MB CPU [1%@100] VDD_IN 5000mW/4800mW"
    assert tegrastats_rows([[7, line], [8, "RAM 1/2MB CPU [garbled"]]) == [[7, None, None, None, 5_000_000.0]]
    assert meter_rows([(1, "2.5\n"), (2, "3W"), (3, "n/a")]) == [
        [1, None, None, None, 2.5e6],
        [2, None, None, None, 3e6],
    ]


def test_external_meter_runs_a_real_command():
    meter = ExternalMeter(
        f'{sys.executable} -c "import time\nfor i in range(3): print(1.5 + i, flush=True); time.sleep(0.05)"'
    )
    meter.start()
    import time

    time.sleep(1.0)
    lines = meter.stop()
    assert [line.strip() for _, line in lines] == ["1.5", "2.5", "3.5"]
    assert lines[0][0] < lines[-1][0]
