"""From what a native run left behind to the agent's records: per-inference samples from a real
Perfetto trace (built with the ``perfetto`` package's protos), the verdict with Android's thermal
status, energy with the idle window, PSS from a real ``dumpsys meminfo`` capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.measurement import LatencyProtocol
from harness.probes import perfetto
from harness.probes.parsers.benchmark_tools import parse_tflite_benchmark
from harness.runners import native_results as results
from harness.runners.native_results import Timing
from harness.runners.native_script import ScriptOutput
from harness.stats import summarize_latency
from tests.probes.test_perfetto import BASE, S, synthetic_trace

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-outputs"
MS = 1_000_000

# benchmark_model's lines for 1 warm-up run and 2 timed runs, written from its format.
TOOL = """INFO: count=1 curr=10000 p5=10000 median=10000 p95=10000
INFO: count=2 first=20000 curr=30000 min=20000 max=30000 avg=25000 std=5000 p5=20000 median=30000 p95=30000
INFO: Inference timings in us: Init: 1500, First inference: 10000, Warmup (avg): 10000, Inference (avg): 25000
"""

THERMAL = "Thermal Status: {}\nHAL Ready: true\nCurrent temperatures from HAL:\n"


def test_the_timed_inferences_are_the_last_sections_of_the_tools_pid():
    trace = perfetto.parse_trace(synthetic_trace())
    parsed = parse_tflite_benchmark(TOOL)
    timing = results.invoke_timing(trace, 42, parsed)
    assert timing is not None
    assert timing.samples_ns == (20 * MS, 30 * MS)  # the 10 ms section was the warm-up
    assert timing.offsets_ns == (0, 25 * MS)
    assert timing.summary == summarize_latency([20 * MS, 30 * MS])
    assert timing.timed == (BASE + S + 15 * MS, BASE + S + 70 * MS)
    assert results.invoke_timing(trace, 7, parsed) is None  # another process's sections are not these
    assert "0 Invoke sections of pid 7 for the tool's 3 inferences" in results.missing_invokes_note(
        trace, 7, parsed
    )


def test_without_sections_the_summary_is_the_tools_and_the_window_ends_at_its_exit():
    parsed = parse_tflite_benchmark(TOOL)
    report = results.tflite_report(parsed)
    timing = results.summary_timing(parsed, report, BASE + 2 * S, "latency samples: not measured (x)")
    assert timing.samples_ns == () and timing.summary.samples == 2 and timing.summary.mean == 25.0
    assert timing.timed == (BASE + 2 * S - 50 * MS, BASE + 2 * S)


def output(**sections: str) -> ScriptOutput:
    return ScriptOutput(
        marks={"idle-start": BASE, "idle-end": BASE + S // 2},
        pid=20602,
        battery=(80, "Discharging"),
        sections={name.replace("_", "-").replace("-txt", ".txt"): text for name, text in sections.items()},
    )


def test_the_verdict_has_the_cap_from_the_trace_and_the_status_from_dumpsys():
    trace = perfetto.parse_trace(synthetic_trace())
    timing = Timing(
        (10 * MS,) * 3, (0, 15 * MS, 35 * MS), summarize_latency([10 * MS] * 3), (BASE + S, BASE + 3 * S)
    )
    rising = output(thermal_before_txt=THERMAL.format(0), thermal_after_txt=THERMAL.format(3))
    verdict, notes = results.verdict(trace.thermal_trace(BASE + S), timing, rising)
    assert verdict is not None and verdict.throttled is True and notes == ()
    assert verdict.reasons[0].startswith("frequency cap: policy4 ceiling 2367000 -> 1426000 kHz at 1.0 s")
    assert verdict.reasons[1] == "thermal status: 0 -> 3 (Android, 0 = none)"
    nothing, notes = results.verdict(None, Timing((), (), timing.summary, None), rising)
    assert nothing is None and notes[0].startswith("throttling: not judged")
    drift_only, _ = results.verdict(None, timing, rising)
    assert drift_only is not None and drift_only.throttled is None  # never "not throttled" untraced


def test_energy_comes_from_the_rails_with_the_idle_window_subtracted():
    trace = perfetto.parse_trace(synthetic_trace())
    timing = Timing((10 * MS,) * 4, (0,) * 4, summarize_latency([10 * MS] * 4), (BASE + S, BASE + 3 * S))
    report, note = results.energy_report("auto", trace.rails, trace.battery, timing, output())
    assert note is None and report is not None
    assert (report.source, report.kind, report.iterations) == ("odpm", "counter", 4)
    assert report.avg_power_w == pytest.approx(3.0) and report.idle_power_w == pytest.approx(3.0)
    assert report.mj_per_inference == pytest.approx(0.0, abs=1e-6)  # the rails did not rise above idle
    battery, _ = results.energy_report("battery", trace.rails, trace.battery, timing, output())
    assert battery is not None and battery.source == "battery" and battery.avg_power_w == pytest.approx(2.0)
    charging = output()
    charging = ScriptOutput(marks=charging.marks, battery=(100, "Charging"))
    refused, _ = results.energy_report("battery", None, trace.battery, timing, charging)
    assert refused is not None and refused.status.startswith("refused: the device is charging")
    missing, note = results.energy_report("odpm", None, trace.battery, timing, output())
    assert missing is None and note == "energy: not measured (the recording has no odpm data)"


def test_pss_is_the_last_meminfo_of_the_tool_that_parses():
    capture = (REAL / "dumpsys_meminfo" / "honor_android14_memorylab_meminfo.txt").read_text()
    found = output(**{"meminfo.1": capture, "meminfo.2": "No process found for: 20602\n"})
    assert results.pss_mb(found, dumpsys=True) == (round(337790 / 1024, 3), None)
    other = ScriptOutput(pid=1, sections={"meminfo.1": capture})
    assert results.pss_mb(other, dumpsys=True)[0] is None
    assert results.pss_mb(ScriptOutput(pid=1), dumpsys=True)[1].startswith(
        "pss: not measured (the tool ended"
    )
    assert (
        results.pss_mb(ScriptOutput(pid=1), dumpsys=False)[1]
        == "pss: not measured (no dumpsys on this device)"
    )


def test_stopped_by_uses_the_agents_words():
    protocol = LatencyProtocol(min_iters=3, min_s=0.0, max_s=1.0, max_iters=10)
    within = Timing((10 * MS,) * 3, (0, 10 * MS, 20 * MS), summarize_latency([10 * MS] * 3), None)
    capped = Timing((600 * MS,) * 2, (0, 600 * MS), summarize_latency([600 * MS] * 2), None)
    many = Timing((MS,) * 10, tuple(range(0, 10 * MS, MS)), summarize_latency([MS] * 10), None)
    assert [results.stopped_by(t, protocol) for t in (within, capped, many)] == [
        "min_reached",
        "max_s",
        "max_iters",
    ]
