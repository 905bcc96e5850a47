"""The virtual device's body: a cgroup that meters and caps its CPU, and a sensor model fed by it.

Temperature follows a first-order RC model driven by the CPU time the device's processes really
used; past the trip point the cpufreq files show the throttled frequency and the cgroup quota is
lowered, so latency really degrades. Power rails and energy counters integrate the same power.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.lab.profiles import CpuPolicy, DeviceProfile

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 4_000  # short periods: a quota slows long inferences evenly, not in 100 ms stalls
ZONE_FACTORS = (1.0, 0.92, 0.85, 0.88, 0.84, 0.5, 0.6)  # share of the heat each zone shows
BATTERY_VOLTAGE_UV = 3_900_000
RAPL_MAX_ENERGY_UJ = 262_143_328_850


def _write(path: Path, text: str) -> None:
    """Replace the file whole, so a reader never sees half a value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class DeviceCgroup:
    """cgroup v1 ``cpu`` (quota) and ``cpuacct`` (usage) groups named after the device."""

    def __init__(self, name: str, root: Path = CGROUP_ROOT) -> None:
        self.cpu = root / "cpu" / "edgelab" / name
        self.cpuacct = root / "cpuacct" / "edgelab" / name
        if not (root / "cpu").is_dir():  # a combined cpu,cpuacct hierarchy
            self.cpu = self.cpuacct = root / "cpu,cpuacct" / "edgelab" / name

    @staticmethod
    def available(root: Path = CGROUP_ROOT) -> bool:
        return os.geteuid() == 0 and ((root / "cpu").is_dir() or (root / "cpu,cpuacct").is_dir())

    def create(self, quota_cores: float) -> None:
        for path in {self.cpu, self.cpuacct}:
            path.mkdir(parents=True, exist_ok=True)
        _write_cgroup(self.cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        self.set_quota(quota_cores)

    def set_quota(self, cores: float) -> None:
        _write_cgroup(self.cpu / "cpu.cfs_quota_us", str(max(1000, int(cores * CFS_PERIOD_US))))

    def quota_cores(self) -> float:
        return int((self.cpu / "cpu.cfs_quota_us").read_text()) / CFS_PERIOD_US

    def usage_ns(self) -> int:
        return int((self.cpuacct / "cpuacct.usage").read_text())

    def enter(self) -> None:
        """Move the calling process in; used as a preexec hook by the device's launchers."""
        for path in {self.cpu, self.cpuacct}:
            with contextlib.suppress(OSError):
                (path / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> list[int]:
        pids: set[int] = set()
        for path in {self.cpu, self.cpuacct}:
            with contextlib.suppress(OSError):
                pids.update(int(line) for line in (path / "cgroup.procs").read_text().split())
        return sorted(pids)

    def destroy(self) -> None:
        """Kill what is left inside, then remove the groups (rmdir fails while a task remains)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        for path in {self.cpu, self.cpuacct}:
            for _ in range(50):
                if not path.exists():
                    break
                try:
                    path.rmdir()
                except OSError:
                    time.sleep(0.05)


def _write_cgroup(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


@dataclass
class SensorState:
    """Everything the model integrates; serialised into sysfs-like files each step."""

    temp_c: float
    throttled: bool = False
    throttle_events: int = 0
    energy_uws: dict[str, float] = field(default_factory=dict)
    rapl_uj: float = 0.0
    power_w: float = 0.0
    utilization: float = 0.0
    battery_level: int = 78
    boot_time: float = field(default_factory=time.monotonic)


class SensorModel:
    """Advances one device's thermal, DVFS and power state from its metered CPU time."""

    def __init__(
        self, profile: DeviceProfile, sysfs: Path, dumpsys: Path | None, cgroup: DeviceCgroup | None
    ) -> None:
        self.profile = profile
        self.sysfs = sysfs
        self.dumpsys = dumpsys
        self.cgroup = cgroup
        self.model = profile.thermal
        # A powercap counter for boards without an on-board power monitor (Jetsons have INA3221).
        self.has_rapl = profile.kind != "android" and not profile.power_rails
        self.state = SensorState(temp_c=self.model.ambient_c)
        self.state.energy_uws = {rail: 0.0 for rail in profile.power_rails}
        self._last_usage = cgroup.usage_ns() if cgroup else 0
        self._last_time = time.monotonic()
        self._written: dict[Path, str] = {}
        self.write_static()
        self.write_dynamic()

    # -- model ---------------------------------------------------------------------------------

    def step(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._last_time, 1e-6)
        usage = self.cgroup.usage_ns() if self.cgroup else self._last_usage
        cores_used = (usage - self._last_usage) / 1e9 / elapsed
        self._last_usage, self._last_time = usage, now
        self.advance(elapsed, cores_used)

    def advance(self, elapsed_s: float, cores_used: float) -> None:
        """One explicit step of C dT/dt = P - (T - ambient)/R, exact for constant power."""
        model = self.model
        quota = self.profile.cpu_quota * (self.profile.throttled_quota_ratio if self.state.throttled else 1.0)
        utilization = min(1.0, max(0.0, cores_used / quota)) if quota > 0 else 0.0
        frequency_ratio = self.frequency_ratio()
        power = model.idle_w + (model.busy_w - model.idle_w) * utilization * frequency_ratio**2
        target = model.ambient_c + power * model.resistance_c_per_w
        self.state.temp_c = target + (self.state.temp_c - target) * math.exp(-elapsed_s / model.tau_s)
        self.state.power_w, self.state.utilization = power, utilization
        share = power / max(len(self.state.energy_uws), 1)
        for rail in self.state.energy_uws:
            self.state.energy_uws[rail] += share * elapsed_s * 1e6
        self.state.rapl_uj = (self.state.rapl_uj + power * elapsed_s * 1e6) % RAPL_MAX_ENERGY_UJ
        self.update_throttle()
        self.write_dynamic()

    def frequency_ratio(self) -> float:
        if not self.state.throttled or not self.profile.cpu_policies:
            return 1.0
        top = self.profile.cpu_policies[-1]
        return top.throttled_khz / top.max_khz

    def update_throttle(self) -> None:
        model = self.model
        if not self.state.throttled and self.state.temp_c >= model.trip_c:
            self.state.throttled = True
            self.state.throttle_events += 1
            if self.cgroup:
                self.cgroup.set_quota(self.profile.cpu_quota * self.profile.throttled_quota_ratio)
        elif self.state.throttled and self.state.temp_c <= model.trip_c - model.hysteresis_c:
            self.state.throttled = False
            if self.cgroup:
                self.cgroup.set_quota(self.profile.cpu_quota)

    # -- files ---------------------------------------------------------------------------------

    def _put(self, path: Path, text: str) -> None:
        """Write a changing value, skipping it when it is what this model last wrote there (ten
        times a second for ~30 files a device: most of them stay put between steps)."""
        if self._written.get(path) != text:
            _write(path, text)
            self._written[path] = text

    def write_static(self) -> None:
        base = self.sysfs
        cpus = sum(_count_cpus(policy.cpus) for policy in self.profile.cpu_policies) or 1
        _write(base / "devices/system/cpu/online", f"0-{cpus - 1}\n")
        for index, zone in enumerate(self.profile.thermal_zones):
            folder = base / f"class/thermal/thermal_zone{index}"
            _write(folder / "type", zone + "\n")
            _write(folder / "trip_point_0_temp", f"{int(self.model.trip_c * 1000)}\n")
            _write(folder / "trip_point_0_type", "passive\n")
        for policy in self.profile.cpu_policies:
            folder = base / f"devices/system/cpu/cpufreq/{policy.name}"
            for name, value in (
                ("cpuinfo_max_freq", policy.max_khz),
                ("cpuinfo_min_freq", policy.min_khz),
                ("scaling_min_freq", policy.min_khz),
                ("related_cpus", _expand_cpus(policy.cpus)),
                ("affected_cpus", _expand_cpus(policy.cpus)),
                ("scaling_available_frequencies", " ".join(str(f) for f in _frequencies(policy))),
                ("scaling_governor", "schedutil"),
                ("scaling_available_governors", "schedutil performance powersave"),
            ):
                _write(folder / name, f"{value}\n")
        if self.profile.kind == "android":
            _write(base / "bus/iio/devices/iio:device0/name", "odpm\n")
        if self.profile.name.startswith("jetson"):
            hwmon = base / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
            for channel, rail in enumerate(self.profile.power_rails, start=1):
                _write(hwmon / f"in{channel}_label", rail + "\n")
        if self.has_rapl:
            _write(base / "class/powercap/intel-rapl:0/name", "package-0\n")
            _write(base / "class/powercap/intel-rapl:0/max_energy_range_uj", f"{RAPL_MAX_ENERGY_UJ}\n")

    def write_dynamic(self) -> None:
        state, base = self.state, self.sysfs
        ambient = self.model.ambient_c
        for index, _zone in enumerate(self.profile.thermal_zones):
            factor = ZONE_FACTORS[index % len(ZONE_FACTORS)]
            zone_temp = ambient + (state.temp_c - ambient) * factor
            self._put(base / f"class/thermal/thermal_zone{index}/temp", f"{int(zone_temp * 1000)}\n")
        for policy in self.profile.cpu_policies:
            current = policy.throttled_khz if state.throttled else policy.max_khz
            folder = base / f"devices/system/cpu/cpufreq/{policy.name}"
            self._put(folder / "scaling_max_freq", f"{current}\n")
            self._put(folder / "scaling_cur_freq", f"{current}\n")
        current_ua = int(state.power_w / (BATTERY_VOLTAGE_UV / 1e6) * 1e6)
        if self.profile.kind == "android":
            self.write_android(current_ua)
        if self.profile.name.startswith("jetson"):
            hwmon = base / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
            for channel, _rail in enumerate(self.profile.power_rails, start=1):
                share = state.power_w / len(self.profile.power_rails)
                self._put(hwmon / f"in{channel}_input", "5000\n")
                self._put(hwmon / f"curr{channel}_input", f"{int(share / 5.0 * 1000)}\n")
        if self.has_rapl:
            self._put(base / "class/powercap/intel-rapl:0/energy_uj", f"{int(state.rapl_uj)}\n")
        self._put(base / "edgelab/state", self.describe())

    def write_android(self, current_ua: int) -> None:
        state, base = self.state, self.sysfs
        uptime_ms = int((time.monotonic() - state.boot_time) * 1000)
        lines = [f"t={uptime_ms}"]
        for channel, (rail, energy) in enumerate(state.energy_uws.items()):
            lines.append(f"CH{channel}(T={uptime_ms})[{rail}], {int(energy)}")
        self._put(base / "bus/iio/devices/iio:device0/energy_value", "\n".join(lines) + "\n")
        battery_temp = int((self.model.ambient_c + (state.temp_c - self.model.ambient_c) * 0.5) * 10)
        supply = base / "class/power_supply/battery"
        self._put(supply / "type", "Battery\n")
        values = {
            "capacity": state.battery_level,
            "status": "Discharging",
            "voltage_now": BATTERY_VOLTAGE_UV,
            "current_now": -current_ua,  # Pixel kernels report discharge as negative
            "temp": battery_temp,
            "charge_counter": int(self.profile.battery_mah * 1000 * state.battery_level / 100),
        }
        for name, value in values.items():
            self._put(supply / name, f"{value}\n")
        self._put(supply / "uevent", "".join(f"POWER_SUPPLY_{k.upper()}={v}\n" for k, v in values.items()))
        if self.dumpsys is not None:
            self._put(self.dumpsys / "battery", self.render_battery(battery_temp))
            self._put(self.dumpsys / "thermalservice", self.render_thermalservice())
            # A lab phone sits with its screen off, as a benchmark wants it.
            self._put(
                self.dumpsys / "power",
                "POWER MANAGER (dumpsys power)\n  mWakefulness=Asleep\nDisplay Power: state=OFF\n",
            )

    def render_battery(self, battery_temp: int) -> str:
        level = self.state.battery_level
        return (
            "Current Battery Service state:\n"
            "  AC powered: false\n  USB powered: false\n  Wireless powered: false\n  Dock powered: false\n"
            "  Max charging current: 0\n  Max charging voltage: 0\n"
            f"  Charge counter: {int(self.profile.battery_mah * 1000 * level / 100)}\n"
            f"  status: 3\n  health: 2\n  present: true\n  level: {level}\n  scale: 100\n"
            f"  voltage: {BATTERY_VOLTAGE_UV // 1000}\n  temperature: {battery_temp}\n  technology: Li-ion\n"
        )

    def render_thermalservice(self) -> str:
        ambient = self.model.ambient_c
        status = 3 if self.state.throttled else (1 if self.state.temp_c > self.model.trip_c - 10 else 0)
        kinds = {"BIG": 0, "MID": 0, "LITTLE": 0, "G3D": 1, "TPU": 9, "battery": 2, "skin": 3}
        lines = [
            "IsStatusOverride: false",
            f"ThermalEventListeners:\n\tcallbacks: 1\nThermal Status: {status}",
        ]
        lines.append("Cached temperatures:")
        lines.append("HAL Ready: true\nHAL connection:\n\tThermalHAL AIDL 1  connected: yes")
        lines.append("Current temperatures from HAL:")
        for index, zone in enumerate(self.profile.thermal_zones):
            value = ambient + (self.state.temp_c - ambient) * ZONE_FACTORS[index % len(ZONE_FACTORS)]
            kind = kinds.get(zone, 0)
            zone_status = status if kind == 3 else 0
            lines.append(
                f"\tTemperature{{mValue={value:.1f}, mType={kind}, mName={zone}, mStatus={zone_status}}}"
            )
        lines.append("Current cooling devices from HAL:")
        lines.append(f"\tCoolingDevice{{mValue={1 if self.state.throttled else 0}, mType=2, mName=cpufreq}}")
        return "\n".join(lines) + "\n"

    def describe(self) -> str:
        state = self.state
        return (
            f"temp_c={state.temp_c:.3f}\nthrottled={int(state.throttled)}\nthrottle_events={state.throttle_events}\n"
            f"power_w={state.power_w:.3f}\nutilization={state.utilization:.3f}\n"
        )


def _count_cpus(spec: str) -> int:
    return len(_expand_cpus(spec).split())


def _expand_cpus(spec: str) -> str:
    cpus: list[str] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        cpus += [str(n) for n in range(int(first), int(last or first) + 1)]
    return " ".join(cpus)


def _frequencies(policy: CpuPolicy) -> list[int]:
    """The operating points the model uses: its minimum, the throttled ceiling and the maximum."""
    return sorted({policy.min_khz, policy.throttled_khz, policy.max_khz})
