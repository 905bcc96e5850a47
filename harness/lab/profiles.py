"""Device profiles of the virtual lab: what a device says about itself and how it heats up.

Values follow the real devices (props, thermal zone and rail names, cpufreq policies); the
thermal and power constants are a model chosen to throttle within a CI-sized sustained run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from harness.errors import ConfigError


@dataclass(frozen=True)
class CpuPolicy:
    """One cpufreq policy (a cluster): cpus, available max, and the frequency when throttled."""

    name: str
    cpus: str
    max_khz: int
    throttled_khz: int
    min_khz: int = 300000


@dataclass(frozen=True)
class ThermalModel:
    """First-order RC: C dT/dt = P - (T - ambient) / R, so T settles at ambient + P*R after ~3 tau."""

    ambient_c: float = 25.0
    resistance_c_per_w: float = 12.0
    tau_s: float = 20.0
    trip_c: float = 60.0
    hysteresis_c: float = 4.0
    idle_w: float = 0.4
    busy_w: float = 3.5


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    kind: Literal["android", "linux"]
    description: str
    cpu_quota: float  # fraction of one host core the device's processes may use (its speed)
    throttled_quota_ratio: float  # quota multiplier while throttled
    props: dict[str, str] = field(default_factory=dict)
    thermal_zones: tuple[str, ...] = ()  # zone types; the first is the one that trips
    cpu_policies: tuple[CpuPolicy, ...] = ()
    power_rails: tuple[str, ...] = ()  # ODPM rail names (android) or INA3221 channel labels (jetson)
    battery_mah: int = 0
    thermal: ThermalModel = field(default_factory=ThermalModel)
    cpu_model: str = ""
    # A stock phone: no Python reachable from its shell, only mksh, toybox and the phone's own
    # tools (getprop, dumpsys, perfetto); the runtimes' tools there are the lab's stand-ins.
    stock: bool = False

    @property
    def sdk(self) -> int:
        return int(self.props.get("ro.build.version.sdk", "0") or 0)


PIXEL8 = DeviceProfile(
    name="pixel8",
    kind="android",
    description="Google Pixel 8 (Tensor G3), Android 14",
    cpu_quota=1.0,
    throttled_quota_ratio=0.55,
    props={
        "ro.product.model": "Pixel 8",
        "ro.product.name": "shiba",
        "ro.product.device": "shiba",
        "ro.product.brand": "google",
        "ro.product.manufacturer": "Google",
        "ro.build.version.release": "14",
        "ro.build.version.sdk": "34",
        "ro.build.id": "AP2A.240805.005",
        "ro.build.fingerprint": "google/shiba/shiba:14/AP2A.240805.005/12025142:user/release-keys",
        "ro.build.type": "user",
        "ro.soc.manufacturer": "Google",
        "ro.soc.model": "Tensor G3",
        "ro.board.platform": "zuma",
        "ro.hardware": "shiba",
        "ro.product.cpu.abi": "arm64-v8a",
        "ro.product.cpu.abilist": "arm64-v8a",
        "ro.edgelab.virtual": "1",
        "ro.edgelab.host_abi": "x86_64",
    },
    thermal_zones=("BIG", "MID", "LITTLE", "G3D", "TPU", "battery", "skin"),
    cpu_policies=(
        CpuPolicy("policy0", "0-3", 1704000, 1197000),
        CpuPolicy("policy4", "4-7", 2367000, 1426000),
        CpuPolicy("policy8", "8", 2910000, 1600000),
    ),
    power_rails=(
        "S2M_VDD_CPUCL2",
        "S3M_VDD_CPUCL1",
        "S4M_VDD_CPUCL0",
        "S5M_VDD_INT",
        "S1M_VDD_MIF",
        "S10M_VDD_TPU",
        "S2S_VDD_G3D",
        "VSYS_PWR_DISPLAY",
    ),
    battery_mah=4575,
    thermal=ThermalModel(trip_c=55.0, busy_w=4.5),
    cpu_model="Tensor G3 (virtual: host x86_64 CPU time)",
)

# The same phone as it ships: no Python, so only the native runner measures it.
PIXEL8_STOCK = dataclasses.replace(
    PIXEL8,
    name="pixel8-stock",
    description="Google Pixel 8 (Tensor G3), Android 14, stock (no Python; mksh, toybox, perfetto)",
    stock=True,
)

RPI5 = DeviceProfile(
    name="rpi5",
    kind="linux",
    description="Raspberry Pi 5 (BCM2712, 4x Cortex-A76)",
    cpu_quota=0.5,
    throttled_quota_ratio=0.6,
    thermal_zones=("cpu-thermal",),
    cpu_policies=(CpuPolicy("policy0", "0-3", 2400000, 1500000, 1500000),),
    thermal=ThermalModel(trip_c=60.0, busy_w=6.0, resistance_c_per_w=9.0),
    cpu_model="Cortex-A76 (virtual)",
)

JETSON_ORIN_NANO = DeviceProfile(
    name="jetson-orin-nano",
    kind="linux",
    description="NVIDIA Jetson Orin Nano 8GB (6x Cortex-A78AE), JetPack 6",
    cpu_quota=0.75,
    throttled_quota_ratio=0.6,
    thermal_zones=("cpu-thermal", "gpu-thermal", "soc0-thermal", "tj-thermal"),
    cpu_policies=(
        CpuPolicy("policy0", "0-3", 1510400, 1113600),
        CpuPolicy("policy4", "4-5", 1510400, 1113600),
    ),
    power_rails=("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"),
    thermal=ThermalModel(trip_c=65.0, busy_w=7.0, resistance_c_per_w=6.0),
    cpu_model="Cortex-A78AE (virtual)",
)

PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (PIXEL8, PIXEL8_STOCK, RPI5, JETSON_ORIN_NANO)}


MAX_CPU_QUOTA = 64.0


def get_profile(name: str) -> DeviceProfile:
    """A profile by name; ``NAME@CORES`` gives it another CPU quota (``pixel8@0.2``: eight
    small phones that leave a 2-core host room for the harness itself)."""
    base, at, quota_text = name.partition("@")
    try:
        profile = PROFILES[base]
    except KeyError:
        raise ConfigError(f"unknown lab profile '{base}' (known: {', '.join(PROFILES)})") from None
    if not at:
        return profile
    try:
        quota = float(quota_text)
    except ValueError:
        quota = float("nan")
    if not 0.01 <= quota <= MAX_CPU_QUOTA:
        raise ConfigError(
            f"lab profile '{name}': the CPU quota after '@' must be a number of cores from 0.01 to "
            f"{MAX_CPU_QUOTA:g} (e.g. {base}@0.2)"
        )
    return dataclasses.replace(profile, cpu_quota=quota)
