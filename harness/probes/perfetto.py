"""Perfetto on a phone without Python: the TraceConfig the native runner sends, the commands that
start and stop the recording, and the trace it pulls back read into the agent's own records.

Read with the ``perfetto`` package's generated protos (its trace processor downloads a binary,
which an offline lab cannot). Traces above ``MAX_TRACE_BYTES`` are refused before parsing.
"""

from __future__ import annotations

import bisect
import re
import shlex
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ParseError
from harness.probes.energy import EnergyReport, compute
from harness.probes.thermal import ThermalSample, ThermalTrace

KIND = "perfetto-trace"
DEVICE_TRACE_DIR = "/data/misc/perfetto-traces"  # the one folder perfetto may write on user builds
MAX_TRACE_BYTES = 64 << 20
DEFAULT_POLL_MS = 250
DEFAULT_MAX_FILE_BYTES = 32 << 20
# The TFLite interpreter's per-inference section: "Invoke" (TF < 2.5) or "Invoke@<m>/<subgraph>"
# (tflite/profiling/atrace_profiler.cc); subgraph 0 is the model, others are control flow.
INVOKE_SECTION = re.compile(r"^Invoke(?:@-?\d+/0)?$")
FTRACE_EVENTS = (
    "power/cpu_frequency",
    "power/cpu_frequency_limits",
    "thermal/thermal_temperature",
    "ftrace/print",
)


# -- recording ------------------------------------------------------------------------------------


def trace_config(
    duration_s: float | None = None,
    *,
    poll_ms: int = DEFAULT_POLL_MS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    apps: Sequence[str] = ("*",),
) -> str:
    """TraceConfig text proto: ODPM rails and battery counters (android.power), thermal zones and
    cpufreq (linux.sys_stats and ftrace, with frequency limits: the cap), the CPUs' operating
    points (linux.system_info), and atrace app sections of ``apps`` (the TFLite interpreter's
    ``Invoke`` when ``debug.tflite.trace`` is 1). Written into the file as it records and cut
    at ``max_file_bytes``; ``duration_s`` None records until stopped."""
    if poll_ms < 100:
        raise ValueError(f"poll_ms {poll_ms}: android.power polls at 100 ms at the fastest; give >= 100")
    if max_file_bytes <= 0:
        raise ValueError(f"max_file_bytes {max_file_bytes}: give a positive size bound")
    from google.protobuf import text_format
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

    config = pb.TraceConfig()
    config.buffers.add(
        size_kb=min(max(1024, max_file_bytes // 4096), 65536), fill_policy=pb.TraceConfig.BufferConfig.DISCARD
    )
    if duration_s is not None:
        if duration_s <= 0:
            raise ValueError(f"duration_s {duration_s}: give a positive duration or None")
        config.duration_ms = int(duration_s * 1000)
    config.write_into_file = True
    config.file_write_period_ms = 1000
    config.max_file_size_bytes = max_file_bytes
    power = config.data_sources.add().config
    power.name = "android.power"
    power.android_power_config.battery_poll_ms = poll_ms
    power.android_power_config.collect_power_rails = True
    power.android_power_config.battery_counters.extend(
        [
            pb.AndroidPowerConfig.BATTERY_COUNTER_CURRENT,
            pb.AndroidPowerConfig.BATTERY_COUNTER_VOLTAGE,
            pb.AndroidPowerConfig.BATTERY_COUNTER_CHARGE,
        ]
    )
    stats = config.data_sources.add().config
    stats.name = "linux.sys_stats"
    stats.sys_stats_config.thermal_period_ms = poll_ms
    stats.sys_stats_config.cpufreq_period_ms = poll_ms
    config.data_sources.add().config.name = "linux.system_info"
    ftrace = config.data_sources.add().config
    ftrace.name = "linux.ftrace"
    ftrace.ftrace_config.ftrace_events.extend(FTRACE_EVENTS)
    ftrace.ftrace_config.atrace_apps.extend(apps)
    return str(text_format.MessageToString(config))


def start_argv(config_path: str, trace_path: str) -> list[str]:
    """Start recording in the background; stdout is the pid to stop. The config goes through
    stdin (``cat | perfetto -c -``): perfetto may not read /data/local/tmp before Android 12."""
    if not trace_path.startswith(DEVICE_TRACE_DIR + "/"):
        raise ValueError(
            f"trace_path {trace_path}: perfetto writes only under {DEVICE_TRACE_DIR}/ on user builds"
        )
    script = f"cat {shlex.quote(config_path)} | perfetto --background --txt -c - -o {shlex.quote(trace_path)}"
    return ["sh", "-c", script]


def stop_argv(pid: int) -> list[str]:
    """SIGTERM ends the recording and writes the file; returns once perfetto has exited."""
    return ["sh", "-c", f"kill -TERM {pid} 2>/dev/null; while kill -0 {pid} 2>/dev/null; do sleep 0.1; done"]


def parse_pid(stdout: str) -> int:
    """The pid ``perfetto --background`` prints."""
    for token in reversed(stdout.split()):
        if token.isdigit():
            return int(token)
    raise ParseError("perfetto-background", f"no pid in perfetto's output {stdout.strip()[:200]!r}")


# -- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    """One atrace section (``B|pid|name`` .. ``E|pid``) on the trace's clock (boot time, ns)."""

    name: str
    pid: int
    start_ns: int
    end_ns: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class EnergySamples:
    """Rows ``[t_ns, None, None, None, value]`` as ``energy.compute`` takes them: ODPM rails summed
    (a counter in uJ) or battery current x voltage (a power in uW)."""

    source: str
    kind: str
    rows: tuple[tuple[int, None, None, None, float], ...]

    def report(self, timed: tuple[int, int], idle: tuple[int, int] | None, iterations: int) -> EnergyReport:
        return compute(
            source=self.source,
            kind=self.kind,
            samples=[list(row) for row in self.rows],
            timed=timed,
            idle=idle,
            iterations=iterations,
        )


@dataclass(frozen=True)
class Series:
    """Step values of one quantity: (t_ns, value), sorted."""

    points: tuple[tuple[int, float], ...]

    def at(self, t_ns: int) -> float | None:
        times = [t for t, _ in self.points]
        index = bisect.bisect_right(times, t_ns) - 1
        return self.points[index][1] if index >= 0 else None


@dataclass(frozen=True)
class PerfettoTrace:
    first_ns: int
    last_ns: int
    zones: tuple[str, ...]
    temps_c: tuple[Series, ...]  # one per zone
    policies: tuple[str, ...]
    cpuinfo_max_khz: tuple[int | None, ...]
    cur_khz: tuple[Series, ...]  # one per policy
    max_khz: tuple[Series, ...]  # scaling_max_freq from cpu_frequency_limits; empty before the first
    sample_times_ns: tuple[int, ...]  # when the thermal state was read
    slices: tuple[Slice, ...]
    rails: EnergySamples | None
    battery: EnergySamples | None
    packets: int

    @property
    def energy(self) -> EnergySamples | None:
        """Counters first (as the agent prefers them): ODPM, then battery power."""
        return self.rails or self.battery

    def inferences(self, pid: int | None = None) -> list[Slice]:
        """The interpreter's ``Invoke`` sections of subgraph 0, one per inference, in order."""
        return [s for s in self.slices if INVOKE_SECTION.match(s.name) and (pid is None or s.pid == pid)]

    def thermal_trace(self, timed_start_ns: int) -> ThermalTrace | None:
        """The agent's ThermalTrace, offsets from ``timed_start_ns``; None without thermal data."""
        if not self.sample_times_ns:
            return None
        samples = []
        for t in self.sample_times_ns:
            samples.append(
                ThermalSample(
                    offset_s=(t - timed_start_ns) / 1e9,
                    temps_c=tuple(series.at(t) for series in self.temps_c),
                    cur_khz=tuple(_int(series.at(t)) for series in self.cur_khz),
                    max_khz=tuple(_int(series.at(t)) for series in self.max_khz),
                )
            )
        gaps = [b - a for a, b in zip(self.sample_times_ns, self.sample_times_ns[1:], strict=False)]
        return ThermalTrace(
            period_s=statistics.median(gaps) / 1e9 if gaps else 0.0,
            zones=self.zones,
            policies=self.policies,
            cpuinfo_max_khz=self.cpuinfo_max_khz,
            samples=tuple(samples),
        )


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def read_trace(path: Path, max_bytes: int = MAX_TRACE_BYTES) -> PerfettoTrace:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ParseError(KIND, f"{path}: {exc.strerror}") from None
    if size > max_bytes:
        raise ParseError(
            KIND,
            f"{path} is {size} bytes, over the {max_bytes}-byte bound; "
            "lower max_file_size_bytes in the config",
        )
    return parse_trace(path.read_bytes(), max_bytes=max_bytes)


def parse_trace(data: bytes, *, max_bytes: int = MAX_TRACE_BYTES) -> PerfettoTrace:
    """A Perfetto trace file into typed series; ParseError for anything that is not one."""
    if len(data) > max_bytes:
        raise ParseError(KIND, f"{len(data)} bytes, over the {max_bytes}-byte bound")
    if not data:
        raise ParseError(KIND, "the file is empty: the recording was killed or wrote nothing")
    from google.protobuf.message import DecodeError
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

    trace = pb.Trace()
    try:
        trace.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        raise ParseError(
            KIND, f"not a Perfetto trace (protobuf: {exc}); pull the file perfetto -o wrote"
        ) from None
    packets = [p for p in trace.packet if p.WhichOneof("data") is not None or p.HasField("timestamp")]
    if not packets or not any(p.WhichOneof("data") for p in packets):
        raise ParseError(KIND, "no trace packets: not a Perfetto trace, or an empty recording")
    return _Reader(packets).result()


class _Reader:
    def __init__(self, packets: list[Any]) -> None:
        self.packets = packets
        self.zone_names: dict[int, str] = {}
        self.temps: dict[int, list[tuple[int, float]]] = defaultdict(list)
        self.cpu_freqs: dict[int, list[int]] = {}
        self.cur: dict[int, list[tuple[int, float]]] = defaultdict(list)
        self.limits: dict[int, list[tuple[int, float]]] = defaultdict(list)
        self.sample_times: set[int] = set()  # sys_stats reads
        self.event_times: set[int] = set()  # thermal_temperature events (finer: millidegrees)
        self.rail_rows: list[tuple[int, None, None, None, float]] = []
        self.battery_rows: list[tuple[int, None, None, None, float]] = []
        self.open: dict[int, list[tuple[str, int]]] = defaultdict(list)
        self.slices: list[Slice] = []
        self.times: list[int] = []
        self.fine_temps = False

    def result(self) -> PerfettoTrace:
        for packet in self.packets:
            if packet.timestamp:
                self.times.append(packet.timestamp)
            kind = packet.WhichOneof("data")
            if kind == "sys_stats":
                self.sys_stats(packet)
            elif kind == "ftrace_events":
                for event in packet.ftrace_events.event:
                    self.ftrace(event)
            elif kind == "cpu_info":
                for index, cpu in enumerate(packet.cpu_info.cpus):
                    self.cpu_freqs[index] = list(cpu.frequencies)
            elif kind == "power_rails":
                energy = [data.energy for data in packet.power_rails.energy_data]
                if energy:
                    self.rail_rows.append((packet.timestamp, None, None, None, float(sum(energy))))
            elif kind == "battery":
                battery = packet.battery
                if battery.HasField("current_ua") and battery.HasField("voltage_uv"):
                    power_uw = abs(battery.current_ua * battery.voltage_uv) / 1e6
                    self.battery_rows.append((packet.timestamp, None, None, None, power_uw))
        return self.build()

    def sys_stats(self, packet: Any) -> None:
        stats = packet.sys_stats
        if stats.thermal_zone:
            self.sample_times.add(packet.timestamp)
            if not self.fine_temps:
                for zone in stats.thermal_zone:
                    index = (
                        int(zone.name.removeprefix("thermal_zone"))
                        if zone.name.startswith("thermal_zone")
                        else len(self.zone_names)
                    )
                    self.zone_names.setdefault(index, zone.type.strip() or zone.name)
                    self.temps[index].append((packet.timestamp, float(zone.temp)))
        for cpu, khz in enumerate(stats.cpufreq_khz):
            self.cur[cpu].append((packet.timestamp, float(khz)))

    def ftrace(self, event: Any) -> None:
        kind = event.WhichOneof("event")
        if kind == "print":
            self.print_event(event.timestamp, event.pid, event.print.buf)
        elif kind == "thermal_temperature":
            if not self.fine_temps:  # millidegree events supersede sys_stats' whole degrees
                self.fine_temps = True
                self.temps.clear()
            zone = event.thermal_temperature
            self.zone_names.setdefault(zone.id, zone.thermal_zone)
            self.temps[zone.id].append((event.timestamp, zone.temp / 1000.0))
            self.event_times.add(event.timestamp)
        elif kind == "cpu_frequency":
            self.cur[event.cpu_frequency.cpu_id].append((event.timestamp, float(event.cpu_frequency.state)))
        elif kind == "cpu_frequency_limits":
            limits = event.cpu_frequency_limits
            self.limits[limits.cpu_id].append((event.timestamp, float(limits.max_freq)))

    def print_event(self, timestamp: int, tid: int, buf: str) -> None:
        """atrace through trace_marker: ``B|pid|name`` opens, ``E|pid`` closes the innermost."""
        line = buf.rstrip("\n")
        parts = line.split("|", 2)
        if len(parts) < 2 or parts[0] not in ("B", "E") or not parts[1].lstrip("-").isdigit():
            return
        pid = int(parts[1])
        if parts[0] == "B" and len(parts) == 3:
            self.open[pid].append((parts[2], timestamp))
        elif parts[0] == "E" and self.open[pid]:
            name, start = self.open[pid].pop()
            self.slices.append(Slice(name, pid, start, timestamp))

    def policy_starts(self) -> list[int]:
        """First CPU of each cpufreq policy: CPUs with the same operating points share one
        (linux.system_info), else the CPUs frequency limits were reported for."""
        if self.cpu_freqs:
            starts, previous = [], None
            for cpu in sorted(self.cpu_freqs):
                if self.cpu_freqs[cpu] != previous:
                    starts.append(cpu)
                previous = self.cpu_freqs[cpu]
            return starts
        if self.limits:
            return sorted(self.limits)
        return sorted(self.cur)

    def build(self) -> PerfettoTrace:
        zones = sorted(self.zone_names)
        starts = self.policy_starts()
        times = sorted(self.times)

        def series(points: list[tuple[int, float]]) -> Series:
            return Series(tuple(sorted(points)))

        return PerfettoTrace(
            first_ns=times[0] if times else 0,
            last_ns=times[-1] if times else 0,
            zones=tuple(self.zone_names[z] for z in zones),
            temps_c=tuple(series(self.temps[z]) for z in zones),
            policies=tuple(f"policy{cpu}" for cpu in starts),
            cpuinfo_max_khz=tuple(
                max(self.cpu_freqs[cpu]) if self.cpu_freqs.get(cpu) else None for cpu in starts
            ),
            cur_khz=tuple(series(self.cur.get(cpu, [])) for cpu in starts),
            max_khz=tuple(series(self.limits.get(cpu, [])) for cpu in starts),
            sample_times_ns=tuple(sorted(self.event_times or self.sample_times)),
            slices=tuple(sorted(self.slices, key=lambda s: (s.start_ns, -s.end_ns))),
            rails=EnergySamples("odpm", "counter", tuple(sorted(self.rail_rows))) if self.rail_rows else None,
            battery=EnergySamples("battery", "power", tuple(sorted(self.battery_rows)))
            if self.battery_rows
            else None,
            packets=len(self.packets),
        )
