"""From what a native run left behind (the tool's output and result file, the device script's
marks, a Perfetto trace or sysfs samples) to the pieces of the agent's BenchmarkResult.

Pure functions: no device, no files. Every quantity says where it came from in the notes the
runner records, and what could not be measured is None with its reason.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import ParseError
from harness.measurement import KIB_PER_MB, LatencyProtocol, MemoryUsage
from harness.probes.cpus import CpuPlacement, parse_cpu_report, placement, strip_cpu_report
from harness.probes.energy import EnergyReport, compute
from harness.probes.environment import thermal_status
from harness.probes.parsers.android import parse_dumpsys_meminfo
from harness.probes.parsers.benchmark_tools import OrtPerfTest, OrtRunTimes, TfliteBenchmark
from harness.probes.perfetto import EnergySamples, PerfettoTrace
from harness.probes.thermal import ThermalTrace, ThrottleVerdict, judge
from harness.runners.native_script import ScriptOutput
from harness.stats import LatencySummary, ModesCheck, detect_modes, summarize_latency


@dataclass(frozen=True)
class Timing:
    """Per-iteration latency (None: not measured) and the timed phase on the boot clock."""

    samples_ns: tuple[int, ...]
    offsets_ns: tuple[int, ...]
    summary: LatencySummary
    timed: tuple[int, int] | None  # boot-clock ns: the first timed inference's start, the last's end
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolReport:
    """What the tool says about itself: its summary, memory, load and first-inference times."""

    summary: LatencySummary
    memory: MemoryUsage
    load_ms: float
    first_inference_ms: float
    notes: tuple[str, ...] = ()


def _finite(*values: float | None) -> float:
    for value in values:
        if value is not None and math.isfinite(value):
            return value
    raise ValueError("no value")


def tflite_report(parsed: TfliteBenchmark) -> ToolReport:
    """benchmark_model's printed summary (bounds stated where it prints no percentile)."""
    steady = parsed.steady
    if steady is None or (steady.avg_us is None and steady.curr_us is None):
        raise ParseError("tflite-benchmark", "no steady-state statistics line (count=... avg=...)")
    notes = []
    mean = _finite(steady.avg_us, steady.curr_us) / 1e3
    if steady.median_us is None:
        notes.append("median: benchmark_model printed no median; the mean stands in")
    if steady.p95_us is None:
        notes.append("p90/p99: not printed; the maximum stands in (an upper bound)")
    else:
        notes.append("p90/p99: benchmark_model prints p95; p90 is p95 and p99 is the maximum (bounds)")
    top = _finite(steady.max_us, steady.avg_us, steady.curr_us) / 1e3
    std = (steady.std_us or 0.0) / 1e3
    summary = LatencySummary(
        median=_finite(steady.median_us, steady.avg_us, steady.curr_us) / 1e3,
        p90=_finite(steady.p95_us, steady.max_us, steady.avg_us, steady.curr_us) / 1e3,
        p99=top,
        mean=mean,
        std=std,
        cv=std / mean if mean > 0 else 0.0,
        min=_finite(steady.min_us, steady.avg_us, steady.curr_us) / 1e3,
        max=top,
        samples=steady.count,
    )
    peak = parsed.peak_memory_monitored_mb or (
        parsed.memory_overall_mb if parsed.memory_kind == "peak" else None
    )
    if peak is None and parsed.memory_overall_mb is not None:
        notes.append("memory: only the footprint delta from the tool's start was printed; not a peak RSS")
    return ToolReport(
        summary,
        MemoryUsage(baseline_mb=None, load_peak_mb=None, peak_rss_mb=peak),
        (parsed.init_us or 0.0) / 1e3,
        (parsed.first_inference_us or 0.0) / 1e3,
        tuple(notes),
    )


def ort_report(parsed: OrtPerfTest) -> ToolReport:
    """onnxruntime_perf_test's printed summary."""
    mean = parsed.avg_ms
    if mean is None and parsed.p50_ms is None:
        raise ParseError("ort-perf-test", "no average or P50 latency")
    runs = parsed.runs or parsed.requests or 0
    center = _finite(parsed.p50_ms, mean)
    summary = LatencySummary(
        median=center,
        p90=_finite(parsed.p90_ms, parsed.max_ms, center),
        p99=_finite(parsed.p99_ms, parsed.max_ms, center),
        mean=_finite(mean, center),
        std=0.0,
        cv=0.0,
        min=_finite(parsed.min_ms, center),
        max=_finite(parsed.max_ms, center),
        samples=runs,
    )
    peak_mb = parsed.peak_working_set_bytes / 1024 / 1024 if parsed.peak_working_set_bytes else None
    return ToolReport(
        summary,
        MemoryUsage(baseline_mb=None, load_peak_mb=None, peak_rss_mb=round(peak_mb, 3) if peak_mb else None),
        parsed.session_creation_ms or 0.0,
        parsed.first_inference_ms or 0.0,
        ("std: onnxruntime_perf_test prints none; reported as 0",),
    )


def invoke_timing(trace: PerfettoTrace, pid: int | None, parsed: TfliteBenchmark) -> Timing | None:
    """The timed inferences from the interpreter's ``Invoke`` sections of the tool's pid: the last
    ``steady.count`` of them (the warm-up runs come first). None when the trace has too few."""
    assert parsed.steady is not None
    invokes = trace.inferences(pid)
    warmup = parsed.warmup.count if parsed.warmup is not None else 0
    expected = warmup + parsed.steady.count
    if len(invokes) < parsed.steady.count or parsed.steady.count < 1:
        return None
    notes = [
        "latency samples: the interpreter's Invoke sections in the phone's Perfetto trace "
        "(debug.tflite.trace=1), one per inference"
    ]
    if len(invokes) != expected:
        notes.append(
            f"latency samples: {len(invokes)} Invoke sections for the tool's {expected} runs; the last "
            f"{parsed.steady.count} taken"
        )
    steady = invokes[-parsed.steady.count :]
    first = steady[0].start_ns
    samples = tuple(s.duration_ns for s in steady)
    return Timing(
        samples,
        tuple(s.start_ns - first for s in steady),
        summarize_latency(samples),
        (first, steady[-1].end_ns),
        tuple(notes),
    )


def missing_invokes_note(trace: PerfettoTrace, pid: int | None, parsed: TfliteBenchmark) -> str:
    runs = (parsed.warmup.count if parsed.warmup else 0) + (parsed.steady.count if parsed.steady else 0)
    return (
        f"latency samples: not measured (the trace has {len(trace.inferences(pid))} Invoke sections of pid "
        f"{pid} for the tool's {runs} inferences: a benchmark_model built without LiteRT's ATrace "
        "profiler, or atrace not enabled for it); the summary is the tool's own"
    )


def summary_timing(
    parsed: TfliteBenchmark, report: ToolReport, tool_end_ns: int | None, reason: str
) -> Timing:
    """No per-inference samples: the tool's summary, and a timed window that ends at its exit."""
    assert parsed.steady is not None
    timed = None
    notes = [reason]
    if tool_end_ns is not None and parsed.steady.avg_us is not None:
        timed = (tool_end_ns - round(parsed.steady.count * parsed.steady.avg_us * 1e3), tool_end_ns)
        notes.append(
            "timed window: the tool's run count x its average, before its exit (/proc/uptime, 10 ms steps)"
        )
    return Timing((), (), report.summary, timed, tuple(notes))


def ort_timing(
    times: OrtRunTimes, parsed: OrtPerfTest, tool_end_ns: int | None, min_s: float = 0.0
) -> Timing:
    """The result file's runs; start offsets are the sums of the runs before (the tool runs them
    back to back and records no start times); the timed window ends at the tool's exit."""
    samples = tuple(round(seconds * 1e9) for seconds in times.seconds)
    offsets, total = [], 0
    for sample in samples:
        offsets.append(total)
        total += sample
    notes = [
        "latency samples: onnxruntime_perf_test's result file, one line per run; start offsets are the "
        "sums of the runs before (it runs them back to back and records no start times)"
    ]
    timed = None
    if tool_end_ns is not None:
        wall_ns = round(parsed.total_run_ms * 1e6) if parsed.total_run_ms else total
        timed = (tool_end_ns - wall_ns, tool_end_ns)
        notes.append("timed window: the tool's total run time before its exit (/proc/uptime, 10 ms steps)")
    if total / 1e9 < min_s:
        notes.append(
            f"min_s: the runs took {total / 1e9:.3g} s, short of min_s {min_s:g} (onnxruntime_perf_test ran "
            "the count its calibration asked for, faster than the calibration did)"
        )
    return Timing(samples, tuple(offsets), summarize_latency(samples), timed, tuple(notes))


def sample_offsets(output: ScriptOutput, count: int) -> tuple[int, ...]:
    """When each per-sample process started, from the script's marks."""
    start = output.marks.get("sample-0", 0)
    return tuple(output.marks.get(f"sample-{i}", start) - start for i in range(count))


def pss_mb(output: ScriptOutput, dumpsys: bool) -> tuple[float | None, str | None]:
    """The last ``dumpsys meminfo PID`` snapshot of the tool that parses (taken 0.5, 1.5, 3.5, ... s
    into its run: the last one falls in the second half of it), and a note when there is none."""
    if not dumpsys:
        return None, "pss: not measured (no dumpsys on this device)"
    names = sorted(
        (n for n in output.sections if n.startswith("meminfo.") and n[8:].isdigit()), key=lambda n: int(n[8:])
    )
    for name in reversed(names):
        try:
            meminfo = parse_dumpsys_meminfo(output.sections[name])
        except ParseError:
            continue
        if meminfo.total_pss_kb is not None and (output.pid is None or meminfo.pid == output.pid):
            return round(meminfo.total_pss_kb / KIB_PER_MB, 3), None
    if not names:
        return None, "pss: not measured (the tool ended before the first dumpsys meminfo, 0.5 s in)"
    return None, f"pss: not measured (dumpsys meminfo {output.pid} gave no table in {len(names)} tries)"


def environment(output: ScriptOutput, virtual: bool) -> dict[str, object]:
    """The agent's ``environment`` keys, from what the script read before the run."""
    battery = None
    if output.battery is not None:
        battery = {"capacity_pct": output.battery[0], "status": output.battery[1]}
    return {
        "governors": dict(output.governors),
        "battery": battery,
        "dumpsys_power": output.section("power.txt"),
        "dumpsys_thermalservice": output.section("thermal-before.txt"),
        "virtual": virtual,
    }


def status_samples(output: ScriptOutput, origin_ns: int) -> tuple[tuple[float, int], ...]:
    """Android's thermal status as the script read it while the tool ran: (seconds from
    ``origin_ns`` on the boot clock, status 0-6); lines without a status (dumpsys refused, no
    thermal HAL) are left out."""
    found = []
    for line in (output.section("status.txt") or "").split("\n"):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            continue
        try:
            at_ns = round(float(fields[0]) * 1e9)
        except ValueError:
            continue
        found.append(((at_ns - origin_ns) / 1e9, int(fields[1])))
    return tuple(found)


def status_reason(output: ScriptOutput) -> str | None:
    """Android's thermal status rose during the run (dumpsys thermalservice before and after)."""
    before = thermal_status(output.section("thermal-before.txt"))
    after = thermal_status(output.section("thermal-after.txt"))
    if after is not None and after >= 1 and (before is None or after > before):
        return f"thermal status: {before if before is not None else '?'} -> {after} (Android, 0 = none)"
    return None


def verdict(
    thermal: ThermalTrace | None, timing: Timing, output: ScriptOutput
) -> tuple[ThrottleVerdict | None, tuple[str, ...]]:
    """The agent's verdict (harness.probes.thermal.judge); None when neither a thermal trace nor
    per-iteration samples exist. Without a trace ``throttled`` stays None: never "not throttled"."""
    if thermal is None and not timing.samples_ns:
        return None, ("throttling: not judged (no thermal trace, no per-iteration samples)",)
    judged = judge(thermal, timing.samples_ns, timing.offsets_ns)
    notes: tuple[str, ...] = ()
    if thermal is None:
        notes = ("throttling: not judged (no thermal trace); latency drift judged from the samples",)
    elif not thermal.status:  # no status read during the run: the one before and the one after
        status = status_reason(output)
        if status is not None:
            judged = dataclasses.replace(judged, throttled=True, reasons=(*judged.reasons, status))
    return judged, notes


def energy_report(
    source: str,
    rails: EnergySamples | None,
    battery: EnergySamples | None,
    timing: Timing,
    output: ScriptOutput,
) -> tuple[EnergyReport | None, str | None]:
    """Energy of the timed window from the trace's power rails (counters) or battery power, the
    idle window before the run subtracted, as the agent computes it."""
    if timing.timed is None:
        return None, "energy: not measured (no timed window: the tool's exit was not marked)"
    chosen = {"auto": rails or battery, "odpm": rails, "battery": battery}.get(source)
    if chosen is None:
        wanted = "power rails or battery counters" if source == "auto" else f"{source} data"
        return None, f"energy: not measured (the recording has no {wanted})"
    idle = None
    if "idle-start" in output.marks and "idle-end" in output.marks:
        idle = (output.marks["idle-start"], output.marks["idle-end"])
    charging = (output.battery[1] or "").lower() in {"charging", "full"} if output.battery else False
    report = compute(
        source=chosen.source,
        kind=chosen.kind,
        samples=[list(row) for row in chosen.rows],
        timed=timing.timed,
        idle=idle if idle is not None and idle[1] > idle[0] else None,
        iterations=timing.summary.samples,
        charging=charging,
    )
    return report, None


def stopped_by(timing: Timing, protocol: LatencyProtocol) -> str:
    """The agent's words: min_reached, max_s (the time cap ended it first), max_iters."""
    if timing.summary.samples >= protocol.max_iters:
        return "max_iters"
    if timing.summary.samples < protocol.min_iters:
        return "max_s"
    if timing.samples_ns and timing.offsets_ns:
        span_s = (timing.offsets_ns[-1] + timing.samples_ns[-1]) / 1e9
        if span_s >= protocol.max_s:
            return "max_s"
    return "min_reached"


def tool_output(output: ScriptOutput) -> str:
    """The tool's stdout then stderr (benchmark_model logs to stderr on phones, stdout elsewhere),
    without the wrapper's core report."""
    parts = (output.section("tool.out"), output.section("tool.err"))
    return strip_cpu_report("\n".join(part for part in parts if part))


def samples_output(output: ScriptOutput) -> list[str]:
    """Each per-sample run's output, without the wrapper's core report."""
    return [strip_cpu_report(part) for part in output.samples_output()]


def cpu_placement(output: ScriptOutput, threads: int, cpus: Sequence[int] | None) -> CpuPlacement:
    """The cores the tool ran on, from the wrapper's report (CPU_REPORT_SCRIPT) before its exec."""
    text = output.section("tool.err") or output.section("tool.out") or ""
    pinned_by = "taskset" if cpus else None
    try:
        allowed, per_cpu = parse_cpu_report(text)
    except ValueError as exc:
        return placement(
            threads,
            requested=cpus,
            pinned_by=pinned_by,
            allowed=None,
            per_cpu={},
            allowed_reason=f"unreadable report: {exc}",
        )
    reason = None if allowed else "/proc/self/status has no Cpus_allowed_list on this device"
    return placement(
        threads, requested=cpus, pinned_by=pinned_by, allowed=allowed, per_cpu=per_cpu, allowed_reason=reason
    )


def modes(timing: Timing) -> ModesCheck:
    """The two-modes check on the samples, as for the agent."""
    if not timing.samples_ns:
        return ModesCheck(None, "no per-iteration samples: the native tool printed a summary only")
    return detect_modes(timing.samples_ns)


def describe(output: ScriptOutput, config: str = "") -> str:
    """Everything the script printed, for the file kept beside an error."""
    parts = [f"marks: {output.marks}", f"exit: {output.exit_code}", f"failed: {output.failed}"]
    if config:
        parts.append("== trace config ==\n" + config)
    for name, text in output.sections.items():
        parts.append(f"== {name} ==\n{text}")
    return "\n".join(parts) + "\n"


def max_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
