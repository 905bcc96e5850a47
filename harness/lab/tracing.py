"""The virtual phone's perfetto: the real command line, a real TraceConfig, and a real Perfetto
trace (the ``perfetto`` package's generated protos) written from what the phone's sysfs shows.

Emulated data sources: ``android.power`` (ODPM rails, battery counters), ``linux.sys_stats``
(thermal zones, cpufreq), ``linux.ftrace`` (power/cpu_frequency, power/cpu_frequency_limits,
thermal/thermal_temperature, ftrace/print with atrace app sections) and ``linux.system_info``.
A config asking for anything else is refused, so a trace never silently lacks what was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import getopt
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from google.protobuf.message import DecodeError
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from harness.lab.profiles import DeviceProfile
from harness.lab.sandbox import DeviceRoot
from harness.lab.stock import PROPS_FILE, TRACES_DIR

TICK_S = 0.1  # how often the recorder looks at the sysfs (the ftrace "kernel" side)
THERMAL_POLL_MS = 250  # thermal_temperature events: one per zone per kernel poll
MIN_POLL_MS = 100  # android.power clamps battery_poll_ms to this
DEFAULT_FILE_WRITE_PERIOD_MS = 5000
BOOTTIME = 6  # perfetto.protos.BuiltinClock
MONOTONIC, REALTIME = 3, 1
SUPPORTED_SOURCES = ("android.power", "linux.sys_stats", "linux.ftrace", "linux.system_info")
SUPPORTED_FTRACE = (
    "power/cpu_frequency",
    "power/cpu_frequency_limits",
    "thermal/thermal_temperature",
    "ftrace/print",
)
UNSUPPORTED_SYS_STATS = (
    "meminfo_period_ms",
    "vmstat_period_ms",
    "stat_period_ms",
    "devfreq_period_ms",
    "buddyinfo_period_ms",
    "diskstat_period_ms",
    "psi_period_ms",
    "cpuidle_period_ms",
    "gpufreq_period_ms",
    "slab_period_ms",
)
SEQUENCE = {"service": 1, "power": 2, "sys_stats": 3, "ftrace": 4, "system_info": 5}
SHORT_OPTIONS = "hc:o:dDt:b:s:a:"
LONG_OPTIONS = [
    "help",
    "config=",
    "out=",
    "background",
    "background-wait",
    "time=",
    "buffer=",
    "size=",
    "app=",
    "txt",
    "no-guardrails",
    "no-clobber",
    "upload",
    "dropbox=",
    "detach=",
    "attach=",
    "stop",
    "is_detached=",
    "query",
    "query-raw",
    "version",
]


class Refused(Exception):
    """perfetto exits non-zero with this message on stderr."""


def _log(message: str) -> str:
    """perfetto_cmd's log line format on stderr."""
    return f"[{time.clock_gettime(time.CLOCK_BOOTTIME):10.3f}] perfetto_cmd.cc {message}\n"


def boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@dataclass
class Invocation:
    config: Any  # pb.TraceConfig
    out: str
    background: bool
    no_clobber: bool


def parse_invocation(argv: list[str], stdin: bytes | None, root: DeviceRoot, cwd: str) -> Invocation:
    """perfetto's own checks, in its order: options, then the config, then the output."""
    try:
        options, positional = getopt.gnu_getopt(argv, SHORT_OPTIONS, LONG_OPTIONS)
    except getopt.GetoptError as exc:
        raise Refused(
            f"perfetto: {exc}\nUsage: perfetto --config CONFIG_FILE [--txt] --out OUT_FILE"
        ) from None
    seen = dict(options)
    if "-h" in seen or "--help" in seen:
        raise Refused("Usage: perfetto [--txt] --config CONFIG_FILE --out OUT_FILE [--background]")
    if "--version" in seen:
        raise Refused("perfetto v47.0 (virtual lab)")
    for flag in (
        "--detach",
        "--attach",
        "--is_detached",
        "--stop",
        "--query",
        "--query-raw",
        "--upload",
        "--dropbox",
    ):
        if flag in seen:
            raise Refused(
                f"{flag} is not emulated by the virtual lab's perfetto; use --background and kill -TERM"
            )
    light = positional or any(
        flag in seen for flag in ("-t", "--time", "-b", "--buffer", "-s", "--size", "-a", "--app")
    )
    config_name = seen.get("-c", seen.get("--config"))
    if config_name is not None and light:
        raise Refused(
            _log(
                "Cannot specify both -c/--config and any of --time, --size, --buffer, --app, "
                "ATRACE_CAT, FTRACE_EVENT"
            )
        )
    if light:
        raise Refused(
            "the virtual lab's perfetto emulates config mode only: give a TraceConfig with -c "
            "(see docs/virtual-lab.md)"
        )
    if config_name is None:
        raise Refused(_log("The TraceConfig is empty"))
    if config_name == "-":
        raw = stdin or b""
    else:
        try:
            raw = root.resolve(_absolute(config_name, cwd)).read_bytes()
        except OSError as exc:
            raise Refused(_log(f"Could not open {config_name}: {exc.strerror}")) from None
    if not raw.strip():
        raise Refused(_log("The TraceConfig is empty"))
    config = pb.TraceConfig()
    if "--txt" in seen:
        try:
            text_format.Parse(raw.decode("utf-8", errors="replace"), config)
        except text_format.ParseError as exc:
            line, column = exc.GetLine() or 0, exc.GetColumn() or 0
            detail = str(exc).split(" : ", 1)[-1]
            raise Refused(
                f"{config_name}:{line}:{column} error: {detail}\n"
                + _log("The trace config is invalid, bailing out.")
            ) from None
    else:
        try:
            config.ParseFromString(raw)
        except DecodeError:
            raise Refused(_log("The trace config is invalid, bailing out.")) from None
    out = seen.get("-o", seen.get("--out"))
    if not out:
        raise Refused(_log("Either --out or --dropbox is required"))
    background = any(flag in seen for flag in ("-d", "--background", "-D", "--background-wait"))
    return Invocation(config, out, background, "--no-clobber" in seen)


def _absolute(path: str, cwd: str) -> str:
    return path if path.startswith("/") else os.path.normpath(os.path.join(cwd or "/", path))


def check_config(config: Any) -> None:
    """What the tracing service would refuse, and what this lab cannot record."""
    if len(config.buffers) == 0:
        raise Refused(
            _log("Failed to enable tracing: the config has no buffers (add buffers { size_kb: N })")
        )
    if any(buffer.size_kb == 0 for buffer in config.buffers):
        raise Refused(_log("Failed to enable tracing: a buffer has size_kb 0"))
    if not config.data_sources:
        raise Refused(_log("Failed to enable tracing: the config has no data_sources"))
    for source in config.data_sources:
        name = source.config.name
        if name not in SUPPORTED_SOURCES:
            raise Refused(
                f"perfetto: data source '{name}' is not emulated by the virtual lab "
                f"(emulated: {', '.join(SUPPORTED_SOURCES)}); remove it from the config"
            )
        if source.config.target_buffer >= len(config.buffers):
            raise Refused(_log(f"Failed to enable tracing: data source '{name}' targets a missing buffer"))
        if name == "linux.sys_stats":
            stats = source.config.sys_stats_config
            asked = [f for f in UNSUPPORTED_SYS_STATS if getattr(stats, f, 0)]
            if asked:
                raise Refused(
                    f"perfetto: linux.sys_stats {', '.join(asked)} is not emulated by the virtual lab "
                    "(emulated: thermal_period_ms, cpufreq_period_ms)"
                )


# -- the phone's sysfs, read as traced_probes would -----------------------------------------------


@dataclass(frozen=True)
class Policy:
    name: str
    cpus: tuple[int, ...]


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cpus(spec: str) -> tuple[int, ...]:
    cpus: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        cpus += range(int(first), int(last or first) + 1)
    return tuple(cpus)


class Sysfs:
    """The device's /sys as files on the host (the sensor model writes them)."""

    def __init__(self, root: Path, profile: DeviceProfile) -> None:
        self.root = root
        self.policies = tuple(Policy(p.name, _cpus(p.cpus)) for p in profile.cpu_policies)
        self.zones = tuple(profile.thermal_zones)

    def policy_dir(self, policy: Policy) -> Path:
        return self.root / "devices/system/cpu/cpufreq" / policy.name

    def zone_temps_mc(self) -> list[int | None]:
        return [
            _read_int(self.root / f"class/thermal/thermal_zone{index}/temp")
            for index in range(len(self.zones))
        ]

    def cur_khz(self, policy: Policy) -> int | None:
        return _read_int(self.policy_dir(policy) / "scaling_cur_freq")

    def limits_khz(self, policy: Policy) -> tuple[int | None, int | None]:
        folder = self.policy_dir(policy)
        return _read_int(folder / "scaling_min_freq"), _read_int(folder / "scaling_max_freq")

    def available_khz(self, policy: Policy) -> list[int]:
        try:
            text = (self.policy_dir(policy) / "scaling_available_frequencies").read_text()
            return sorted(int(v) for v in text.split())
        except (OSError, ValueError):
            values = [
                _read_int(self.policy_dir(policy) / n) for n in ("cpuinfo_min_freq", "cpuinfo_max_freq")
            ]
            return sorted(v for v in values if v is not None)

    def rails(self) -> list[tuple[str, int]]:
        """ODPM channels as the power.stats HAL reports them: (rail, energy in uWs)."""
        try:
            text = (self.root / "bus/iio/devices/iio:device0/energy_value").read_text()
        except OSError:
            return []
        rails = []
        for line in text.splitlines():
            if line.startswith("CH") and "[" in line and "," in line:
                name = line[line.index("[") + 1 : line.index("]")]
                with contextlib.suppress(ValueError):
                    rails.append((name, int(line.rsplit(",", 1)[1])))
        return rails

    def battery(self) -> dict[str, int]:
        folder = self.root / "class/power_supply/battery"
        values = {}
        for name in ("charge_counter", "capacity", "current_now", "voltage_now"):
            value = _read_int(folder / name)
            if value is not None:
                values[name] = value
        return values


def _subsystem(rail: str) -> str:
    for marker, name in (
        ("CPUCL", "CPU"),
        ("TPU", "TPU"),
        ("G3D", "GPU"),
        ("DISPLAY", "Display"),
        ("MIF", "Memory"),
    ):
        if marker in rail:
            return name
    return "System"


# -- one recording --------------------------------------------------------------------------------


@dataclass
class Sources:
    battery_poll_ms: int = 0
    battery_counters: frozenset[int] = frozenset()
    power_rails: bool = False
    thermal_period_ms: int = 0
    cpufreq_period_ms: int = 0
    ftrace_events: frozenset[str] = frozenset()
    atrace_apps: tuple[str, ...] = ()
    system_info: bool = False

    @classmethod
    def from_config(cls, config: Any) -> Sources:
        sources = cls()
        for source in config.data_sources:
            ds = source.config
            if ds.name == "android.power":
                power = ds.android_power_config
                sources.battery_poll_ms = max(MIN_POLL_MS, power.battery_poll_ms or 1000)
                sources.battery_counters = frozenset(power.battery_counters)
                sources.power_rails = sources.power_rails or power.collect_power_rails
            elif ds.name == "linux.sys_stats":
                stats = ds.sys_stats_config
                sources.thermal_period_ms = max(10, stats.thermal_period_ms) if stats.thermal_period_ms else 0
                sources.cpufreq_period_ms = max(10, stats.cpufreq_period_ms) if stats.cpufreq_period_ms else 0
            elif ds.name == "linux.ftrace":
                ftrace = ds.ftrace_config
                events = set(ftrace.ftrace_events)
                if ftrace.atrace_apps or ftrace.atrace_categories:
                    events.add("ftrace/print")  # atrace writes through trace_marker
                sources.ftrace_events = frozenset(e for e in events if e in SUPPORTED_FTRACE)
                sources.atrace_apps = tuple(ftrace.atrace_apps)
            elif ds.name == "linux.system_info":
                sources.system_info = True
        return sources

    def traces_app(self, cmdline: str) -> bool:
        """libcutils' match of debug.atrace.app_N against the process's cmdline."""
        if "ftrace/print" not in self.ftrace_events:
            return False
        for app in self.atrace_apps:
            if app in ("*", cmdline) or (app.endswith("*") and cmdline.startswith(app[:-1])):
                return True
        return False


@dataclass
class Recording:
    config: Any
    sources: Sources
    target: Path  # host path of the output file
    device_path: str
    sysfs: Sysfs
    profile: DeviceProfile
    started_ns: int = 0
    stopped_ns: int | None = None
    packets: list[bytes] = field(default_factory=list)
    buffered: int = 0
    written: int = 0
    dropped: int = 0
    full: asyncio.Event = field(default_factory=asyncio.Event)
    _previous: dict[str, Any] = field(default_factory=dict)
    _due: dict[str, int] = field(default_factory=dict)
    _pending_events: list[Any] = field(default_factory=list)

    @property
    def limit_bytes(self) -> int:
        return int(sum(buffer.size_kb for buffer in self.config.buffers)) * 1024

    def add(self, packet: Any, sequence: str) -> None:
        packet.trusted_packet_sequence_id = SEQUENCE[sequence]
        data = pb.Trace(packet=[packet]).SerializeToString()
        if self.config.write_into_file:
            self.packets.append(data)
            self.buffered += len(data)
            limit = self.config.max_file_size_bytes
            if limit and self.written + self.buffered >= limit:
                self.full.set()
            return
        policy = self.config.buffers[0].fill_policy
        if self.buffered + len(data) > self.limit_bytes:
            if policy == pb.TraceConfig.BufferConfig.DISCARD:
                self.dropped += 1
                return
            while self.packets and self.buffered + len(data) > self.limit_bytes:
                self.buffered -= len(self.packets.pop(0))
                self.dropped += 1
        self.packets.append(data)
        self.buffered += len(data)

    def flush_to_file(self) -> None:
        """write_into_file: the service appends what it has; max_file_size_bytes cuts it."""
        if not self.packets:
            return
        limit = self.config.max_file_size_bytes or 0
        with self.target.open("ab") as handle:
            for data in self.packets:
                if limit and self.written + len(data) > limit:
                    self.dropped += 1
                    continue
                handle.write(data)
                self.written += len(data)
        self.packets, self.buffered = [], 0

    def finish(self) -> int:
        if self.config.write_into_file:
            self.flush_to_file()
        else:
            blob = b"".join(self.packets)
            self.target.write_bytes(blob)
            self.written = len(blob)
        return self.written

    # -- what the data sources write --------------------------------------------------------------

    def begin(self) -> None:
        self.started_ns = boottime_ns()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.target.write_bytes(b"")
        os.chmod(self.target, 0o600)
        config_packet = pb.TracePacket(timestamp=self.started_ns)
        config_packet.trace_config.CopyFrom(self.config)
        self.add(config_packet, "service")
        self.add(self._clock_snapshot(), "service")
        info = pb.TracePacket(timestamp=self.started_ns)
        props = self.profile.props
        info.system_info.utsname.sysname = "Linux"
        info.system_info.utsname.release = platform.release()
        info.system_info.utsname.machine = "aarch64"
        info.system_info.android_build_fingerprint = props.get("ro.build.fingerprint", "")
        info.system_info.android_sdk_version = self.profile.sdk
        info.system_info.android_soc_model = props.get("ro.soc.model", "")
        info.system_info.num_cpus = sum(len(p.cpus) for p in self.sysfs.policies)
        info.system_info.page_size = 4096
        info.system_info.hz = 100
        self.add(info, "service")
        if self.sources.system_info:
            self.add(self._cpu_info(), "system_info")
        if self.sources.power_rails:
            rails = pb.TracePacket(timestamp=self.started_ns)
            for index, (name, _energy) in enumerate(self.sysfs.rails()):
                rails.power_rails.rail_descriptor.add(
                    index=index, rail_name=name, subsys_name=_subsystem(name), sampling_rate=1000
                )
            self.add(rails, "power")
        self.tick(self.started_ns)

    def _clock_snapshot(self) -> Any:
        packet = pb.TracePacket(timestamp=boottime_ns())
        snapshot = packet.clock_snapshot
        snapshot.clocks.add(clock_id=BOOTTIME, timestamp=boottime_ns())
        snapshot.clocks.add(clock_id=MONOTONIC, timestamp=time.clock_gettime_ns(time.CLOCK_MONOTONIC))
        snapshot.clocks.add(clock_id=REALTIME, timestamp=time.time_ns())
        snapshot.primary_trace_clock = BOOTTIME
        return packet

    def _cpu_info(self) -> Any:
        packet = pb.TracePacket(timestamp=self.started_ns)
        by_cpu = {cpu: policy for policy in self.sysfs.policies for cpu in policy.cpus}
        for cpu in sorted(by_cpu):
            entry = packet.cpu_info.cpus.add(processor=self.profile.cpu_model or "virtual")
            entry.frequencies.extend(self.sysfs.available_khz(by_cpu[cpu]))
        return packet

    def _due_now(self, name: str, period_ms: int, now_ns: int) -> bool:
        if period_ms <= 0:
            return False
        due = self._due.get(name, 0)
        if now_ns < due:
            return False
        self._due[name] = now_ns + period_ms * 1_000_000
        return True

    def tick(self, now_ns: int) -> None:
        sources = self.sources
        if self._due_now("battery", sources.battery_poll_ms, now_ns):
            self._power(now_ns)
        stats = None
        if self._due_now("thermal", sources.thermal_period_ms, now_ns):
            stats = stats or pb.TracePacket(timestamp=now_ns)
            for index, (zone, temp) in enumerate(
                zip(self.sysfs.zones, self.sysfs.zone_temps_mc(), strict=True)
            ):
                if temp is not None:
                    stats.sys_stats.thermal_zone.add(
                        name=f"thermal_zone{index}", temp=temp // 1000, type=zone
                    )
        if self._due_now("cpufreq", sources.cpufreq_period_ms, now_ns):
            stats = stats or pb.TracePacket(timestamp=now_ns)
            for policy in self.sysfs.policies:
                current = self.sysfs.cur_khz(policy) or 0
                stats.sys_stats.cpufreq_khz.extend([current] * len(policy.cpus))
        if stats is not None:
            stats.sys_stats.collection_end_timestamp = boottime_ns()
            self.add(stats, "sys_stats")
        self._ftrace(now_ns)

    def _power(self, now_ns: int) -> None:
        counters = self.sources.battery_counters
        if counters:
            values = self.sysfs.battery()
            packet = pb.TracePacket(timestamp=now_ns)
            battery = packet.battery
            battery.name = "battery"
            kinds = pb.AndroidPowerConfig
            if kinds.BATTERY_COUNTER_CHARGE in counters and "charge_counter" in values:
                battery.charge_counter_uah = values["charge_counter"]
            if kinds.BATTERY_COUNTER_CAPACITY_PERCENT in counters and "capacity" in values:
                battery.capacity_percent = float(values["capacity"])
            if kinds.BATTERY_COUNTER_CURRENT in counters and "current_now" in values:
                battery.current_ua = values["current_now"]
            if kinds.BATTERY_COUNTER_VOLTAGE in counters and "voltage_now" in values:
                battery.voltage_uv = values["voltage_now"]
            self.add(packet, "power")
        if self.sources.power_rails:
            packet = pb.TracePacket(timestamp=now_ns)
            for index, (_name, energy) in enumerate(self.sysfs.rails()):
                packet.power_rails.energy_data.add(
                    index=index, timestamp_ms=now_ns // 1_000_000, energy=energy
                )
            self.add(packet, "power")

    def _ftrace(self, now_ns: int) -> None:
        events = self.sources.ftrace_events
        new: list[Any] = []
        previous = self._previous
        for policy in self.sysfs.policies:
            current = self.sysfs.cur_khz(policy)
            key = f"cur:{policy.name}"
            if (
                "power/cpu_frequency" in events
                and current is not None
                and key in previous
                and previous[key] != current
            ):
                for cpu in policy.cpus:
                    new.append(
                        pb.FtraceEvent(
                            timestamp=now_ns, pid=0, cpu_frequency={"state": current, "cpu_id": cpu}
                        )
                    )
            previous[key] = current
            limits = self.sysfs.limits_khz(policy)
            key = f"limits:{policy.name}"
            if "power/cpu_frequency_limits" in events and key in previous and previous[key] != limits:
                low, high = limits
                new.append(
                    pb.FtraceEvent(
                        timestamp=now_ns,
                        pid=0,
                        cpu_frequency_limits={
                            "min_freq": low or 0,
                            "max_freq": high or 0,
                            "cpu_id": policy.cpus[0],
                        },
                    )
                )
            previous[key] = limits
        if "thermal/thermal_temperature" in events and self._due_now("thermal_poll", THERMAL_POLL_MS, now_ns):
            for index, (zone, temp) in enumerate(
                zip(self.sysfs.zones, self.sysfs.zone_temps_mc(), strict=True)
            ):
                if temp is None:
                    continue
                before = previous.get(f"temp:{index}", temp)
                new.append(
                    pb.FtraceEvent(
                        timestamp=now_ns,
                        pid=0,
                        thermal_temperature={
                            "id": index,
                            "temp": temp,
                            "temp_prev": before,
                            "thermal_zone": zone,
                        },
                    )
                )
                previous[f"temp:{index}"] = temp
        new += self._pending_events
        self._pending_events = []
        if new:
            packet = pb.TracePacket(timestamp=now_ns)
            packet.ftrace_events.cpu = 0
            packet.ftrace_events.event.extend(sorted(new, key=lambda event: event.timestamp))
            self.add(packet, "ftrace")

    def flush_events(self, now_ns: int) -> None:
        if self._pending_events:
            packet = pb.TracePacket(timestamp=now_ns)
            packet.ftrace_events.cpu = 0
            packet.ftrace_events.event.extend(sorted(self._pending_events, key=lambda event: event.timestamp))
            self._pending_events = []
            self.add(packet, "ftrace")

    def atrace_section(self, pid: int, cmdline: str, begin_ns: int, end_ns: int, name: str) -> None:
        """ATrace_beginSection/endSection of a traced app: ftrace print events at their times."""
        if not self.sources.traces_app(cmdline):
            return
        last = self.stopped_ns if self.stopped_ns is not None else boottime_ns()
        if self.started_ns <= begin_ns <= last:
            self._pending_events.append(
                pb.FtraceEvent(timestamp=begin_ns, pid=pid, print={"buf": f"B|{pid}|{name}\n"})
            )
        if self.started_ns <= end_ns <= last:
            self._pending_events.append(
                pb.FtraceEvent(timestamp=end_ns, pid=pid, print={"buf": f"E|{pid}\n"})
            )


class TracingService:
    """traced and traced_probes of one phone: the recordings running now."""

    def __init__(self, profile: DeviceProfile, root: DeviceRoot, sysfs: Path) -> None:
        self.profile = profile
        self.root = root
        self.sysfs = Sysfs(sysfs, profile)
        self.recordings: list[Recording] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def prop(self, name: str) -> str:
        try:
            for line in self.root.host_path(PROPS_FILE).read_text().splitlines():
                if line.startswith(name + "="):
                    return line.split("=", 1)[1]
        except OSError:
            pass
        return self.profile.props.get(name, "")

    def atrace_section(self, pid: int, cmdline: str, begin_ns: int, end_ns: int, name: str) -> None:
        for recording in self.recordings:
            recording.atrace_section(pid, cmdline, begin_ns, end_ns, name)

    async def stop_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def handle(self, call: Any) -> int:
        """One perfetto invocation: checks, then records until duration_ms, a stop, or a full file."""
        try:
            if 28 <= self.profile.sdk <= 29 and self.prop("persist.traced.enable") != "1":
                raise Refused(
                    _log(
                        "Could not connect to the traced service "
                        "(Android 9/10: setprop persist.traced.enable 1)"
                    )
                )
            invocation = parse_invocation(call.argv, call.stdin, self.root, call.cwd)
            check_config(invocation.config)
            device_out = _absolute(invocation.out, call.cwd)
            if self.prop("ro.build.type") == "user" and not device_out.startswith(TRACES_DIR + "/"):
                raise Refused(
                    _log(
                        f"Failed to open {invocation.out}. If you get permission denied in {TRACES_DIR}, "
                        "the file "
                        "might have been created by another user, try deleting it first.: Permission denied "
                        f"(user builds write traces only under {TRACES_DIR}/)"
                    )
                )
            target = self.root.resolve(device_out)
            if invocation.no_clobber and target.exists():
                raise Refused(_log(f"Failed to open {invocation.out}: File exists (--no-clobber)"))
        except Refused as refused:
            call.write_err(str(refused) if str(refused).endswith("\n") else f"{refused}\n")
            return 1
        config = invocation.config
        recording = Recording(
            config, Sources.from_config(config), target, device_out, self.sysfs, self.profile
        )
        duration_ms = config.duration_ms
        ttl = f"TTL: {(duration_ms + 999) // 1000}s" if duration_ms else "starting tracing"
        call.write_err(_log(f"Connected to the Perfetto traced service, {ttl}"))
        recording.begin()
        self.recordings.append(recording)
        if call.notify:
            with contextlib.suppress(OSError):
                self.root.resolve(call.notify).touch()
        try:
            await self._record(recording, call)
        finally:
            self.recordings.remove(recording)
        if call.gone.is_set():
            return 137  # killed: traced drops the session, the file keeps what reached it
        written = recording.finish()
        if config.write_into_file:
            call.write_err(_log("Trace written into the output file"))
        else:
            call.write_err(_log(f"Wrote {written} bytes into {invocation.out}"))
        return 0

    async def _record(self, recording: Recording, call: Any) -> None:
        config = recording.config
        deadline = recording.started_ns + config.duration_ms * 1_000_000 if config.duration_ms else None
        period_ns = (config.file_write_period_ms or DEFAULT_FILE_WRITE_PERIOD_MS) * 1_000_000
        next_flush = recording.started_ns + period_ns
        while True:
            now = boottime_ns()
            if deadline is not None and now >= deadline:
                break
            if call.stop.is_set() or call.gone.is_set() or recording.full.is_set():
                if call.stop.is_set():
                    call.write_err(_log("SIGINT/SIGTERM received: disabling tracing."))
                break
            recording.tick(now)
            if config.write_into_file and now >= next_flush:
                recording.flush_to_file()
                next_flush = now + period_ns
            wait = TICK_S if deadline is None else max(0.0, min(TICK_S, (deadline - now) / 1e9))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    _first(call.stop.wait(), call.gone.wait(), recording.full.wait()), wait
                )
        recording.stopped_ns = boottime_ns()
        await asyncio.sleep(0.2)  # the final flush: sections the stand-in is still reporting
        recording.flush_events(recording.stopped_ns)


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
