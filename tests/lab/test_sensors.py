"""The sensor model: RC temperature, throttling with hysteresis, energy counters, and the
sysfs / dumpsys files it writes, checked on values. The cgroup test uses the real cgroup v1."""

from __future__ import annotations

import dataclasses
import math
import os
import re

import pytest

from harness.lab.profiles import JETSON_ORIN_NANO, PIXEL8, RPI5
from harness.lab.sensors import CFS_PERIOD_US, RAPL_MAX_ENERGY_UJ, DeviceCgroup, SensorModel


def read(path) -> str:
    return path.read_text().strip()


def test_temperature_follows_the_first_order_rc_solution(tmp_path):
    model = SensorModel(PIXEL8, tmp_path / "sys", tmp_path / "dumpsys", None)
    thermal = PIXEL8.thermal
    model.advance(10.0, cores_used=0.5)  # half of the 1.0-core quota
    power = thermal.idle_w + (thermal.busy_w - thermal.idle_w) * 0.5
    target = thermal.ambient_c + power * thermal.resistance_c_per_w
    expected = target + (thermal.ambient_c - target) * math.exp(-10.0 / thermal.tau_s)
    assert model.state.temp_c == pytest.approx(expected)
    assert model.state.power_w == pytest.approx(power)
    assert int(read(tmp_path / "sys/class/thermal/thermal_zone0/temp")) == int(expected * 1000)
    assert read(tmp_path / "sys/class/thermal/thermal_zone0/type") == "BIG"


def test_throttles_past_the_trip_point_and_recovers_below_the_hysteresis(tmp_path):
    model = SensorModel(PIXEL8, tmp_path / "sys", tmp_path / "dumpsys", None)
    policy = tmp_path / "sys/devices/system/cpu/cpufreq/policy8"
    assert read(policy / "scaling_max_freq") == "2910000"
    while not model.state.throttled:
        model.advance(1.0, cores_used=1.0)
    assert model.state.temp_c >= PIXEL8.thermal.trip_c
    assert read(policy / "scaling_max_freq") == "1600000"
    assert read(policy / "cpuinfo_max_freq") == "2910000"
    assert "Thermal Status: 3" in read(tmp_path / "dumpsys/thermalservice")
    model.advance(1.0, cores_used=0.0)  # a little cooler, still inside the hysteresis band
    assert model.state.throttled
    while model.state.throttled:
        model.advance(1.0, cores_used=0.0)
    assert model.state.temp_c <= PIXEL8.thermal.trip_c - PIXEL8.thermal.hysteresis_c
    assert read(policy / "scaling_max_freq") == "2910000"
    assert model.state.throttle_events == 1


def test_odpm_and_battery_integrate_the_same_power(tmp_path):
    model = SensorModel(PIXEL8, tmp_path / "sys", tmp_path / "dumpsys", None)
    model.advance(2.0, cores_used=1.0)
    power = model.state.power_w
    text = read(tmp_path / "sys/bus/iio/devices/iio:device0/energy_value")
    rails = re.findall(r"CH(\d+)\(T=\d+\)\[(\w+)\], (\d+)", text)
    assert [name for _, name, _ in rails] == list(PIXEL8.power_rails)
    total_uws = sum(int(value) for _, _, value in rails)
    assert total_uws == pytest.approx(power * 2.0 * 1e6, rel=1e-3)
    battery = tmp_path / "sys/class/power_supply/battery"
    current_ua = int(read(battery / "current_now"))
    voltage_uv = int(read(battery / "voltage_now"))
    assert -current_ua * voltage_uv / 1e12 == pytest.approx(power, rel=1e-3)  # discharge is negative
    dumpsys = read(tmp_path / "dumpsys/battery")
    assert "level: 78" in dumpsys and "voltage: 3900" in dumpsys and "AC powered: false" in dumpsys


def test_rapl_counter_wraps_at_max_energy_range(tmp_path):
    model = SensorModel(RPI5, tmp_path / "sys", None, None)
    model.state.rapl_uj = RAPL_MAX_ENERGY_UJ - 10
    model.advance(1.0, cores_used=0.0)
    rapl = tmp_path / "sys/class/powercap/intel-rapl:0"
    assert int(read(rapl / "energy_uj")) < RAPL_MAX_ENERGY_UJ
    assert int(read(rapl / "energy_uj")) == int(RPI5.thermal.idle_w * 1e6 - 10)
    assert int(read(rapl / "max_energy_range_uj")) == RAPL_MAX_ENERGY_UJ


def test_jetson_has_ina3221_channels_named_like_the_board(tmp_path):
    model = SensorModel(JETSON_ORIN_NANO, tmp_path / "sys", None, None)
    model.advance(1.0, cores_used=0.75)
    hwmon = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    labels = [read(hwmon / f"in{n}_label") for n in (1, 2, 3)]
    assert labels == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    milliwatts = sum(
        int(read(hwmon / f"in{n}_input")) * int(read(hwmon / f"curr{n}_input")) / 1000 for n in (1, 2, 3)
    )
    assert milliwatts == pytest.approx(model.state.power_w * 1000, rel=0.01)


@pytest.mark.skipif(not DeviceCgroup.available(), reason="needs root and cgroup v1 cpu/cpuacct")
def test_throttling_lowers_the_real_cgroup_quota(tmp_path):
    profile = dataclasses.replace(PIXEL8, thermal=dataclasses.replace(PIXEL8.thermal, tau_s=1.0))
    cgroup = DeviceCgroup(f"test-{os.getpid()}")
    cgroup.create(profile.cpu_quota)
    try:
        assert int((cgroup.cpu / "cpu.cfs_period_us").read_text()) == CFS_PERIOD_US
        assert cgroup.quota_cores() == pytest.approx(1.0)
        model = SensorModel(profile, tmp_path / "sys", None, cgroup)
        while not model.state.throttled:
            model.advance(0.5, cores_used=1.0)
        assert cgroup.quota_cores() == pytest.approx(
            profile.cpu_quota * profile.throttled_quota_ratio, abs=1e-3
        )
        while model.state.throttled:
            model.advance(0.5, cores_used=0.0)
        assert cgroup.quota_cores() == pytest.approx(1.0)
    finally:
        cgroup.destroy()
    assert not cgroup.cpu.exists() and not cgroup.cpuacct.exists()


def test_the_virtual_pis_vcgencmd_reports_the_sensor_models_throttling(tmp_path):
    """get_throttled of the stand-in (one awk, as the real tool is one process) against the
    model's own state: nothing, then capped + soft limit now and both occurred, then occurred only."""
    import subprocess

    from harness.lab.device import VCGENCMD
    from harness.probes.parsers.boards import parse_vcgencmd

    model = SensorModel(RPI5, tmp_path / "sys", tmp_path / "dumpsys", None)
    tool = tmp_path / "vcgencmd"
    tool.write_text(VCGENCMD.replace("/sys/", str(tmp_path / "sys") + "/"))
    tool.chmod(0o755)

    def shown(*words: str) -> str:
        return subprocess.run([str(tool), *words], capture_output=True, text=True, check=True).stdout

    def throttled() -> int | None:
        return parse_vcgencmd(shown("get_throttled")).throttled_raw

    assert throttled() == 0
    while not model.state.throttled:
        model.advance(1.0, cores_used=RPI5.cpu_quota)
    assert throttled() == 0xA000A
    while model.state.throttled:
        model.advance(1.0, cores_used=0.0)
    assert model.state.throttle_events == 1 and throttled() == 0xA0000
    reading = parse_vcgencmd(shown("measure_temp") + shown("measure_clock", "arm"))
    zone = tmp_path / "sys/class/thermal/thermal_zone0/temp"
    assert reading.temp_c == round(int(zone.read_text()) / 1000, 1)
    policy = tmp_path / "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq"
    assert list(reading.frequencies_khz.values()) == [int(policy.read_text())]
    refused = subprocess.run([str(tool), "get_mem"], check=False, capture_output=True, text=True)
    assert (refused.returncode, refused.stderr) == (1, "Command not registered\n")
