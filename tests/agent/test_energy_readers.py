"""The agent's energy readers and environment snapshot on sysfs trees laid out like the real
devices' (Pixel ODPM, RAPL, Jetson INA3221, power_supply), and its fixed-rate timed loop."""

from __future__ import annotations

import importlib.util
import time

import pytest

from harness.runners.python_agent import AGENT_FILE

spec = importlib.util.spec_from_file_location("edgelab_agent_energy", AGENT_FILE)
assert spec is not None and spec.loader is not None
agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def sysfs(tmp_path):
    root = tmp_path / "sys"
    write(
        root / "bus/iio/devices/iio:device0/energy_value",
        "t=100\nCH0(T=100)[S2M_VDD_CPUCL2], 1000\nCH1(T=100)[S5M_VDD_INT], 250\n",
    )
    write(root / "bus/iio/devices/iio:device1/energy_value", "t=100\nCH0(T=100)[VSYS_PWR_DISPLAY], 50\n")
    write(root / "class/powercap/intel-rapl:0/energy_uj", "5000\n")
    write(root / "class/powercap/intel-rapl:0/max_energy_range_uj", "262143328850\n")
    write(root / "class/powercap/intel-rapl:0:0/energy_uj", "999\n")  # a sub-zone: not added again
    hwmon = root / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    for channel, (label, mv, ma) in enumerate(
        (("VDD_CPU_GPU_CV", 5000, 100), ("VDD_IN", 5000, 900)), start=1
    ):
        write(hwmon / f"in{channel}_label", label + "\n")
        write(hwmon / f"in{channel}_input", f"{mv}\n")
        write(hwmon / f"curr{channel}_input", f"{ma}\n")
    battery = root / "class/power_supply/battery"
    write(battery / "type", "Battery\n")
    write(battery / "voltage_now", "3900000\n")
    write(battery / "current_now", "-500000\n")
    write(battery / "capacity", "21\n")
    write(battery / "status", "Discharging\n")
    write(root / "devices/system/cpu/cpufreq/policy0/scaling_governor", "schedutil\n")
    return str(root)


def test_sources_are_found_best_first(sysfs):
    assert agent.energy_sources(sysfs) == ["odpm", "rapl", "ina3221", "battery"]


def test_each_reader_returns_the_right_quantity(sysfs):
    assert agent.EnergyReader("odpm", sysfs).read() == 1300.0  # uJ summed over rails and devices
    rapl = agent.EnergyReader("rapl", sysfs)
    assert rapl.read() == 5000.0 and rapl.max_range_uj == 262143328850 and rapl.kind == "counter"
    ina = agent.EnergyReader("ina3221", sysfs)
    assert ina.read() == 5000 * 900 and ina.kind == "power"  # VDD_IN chosen: mV x mA = uW
    assert agent.EnergyReader("battery", sysfs).read() == pytest.approx(1.95e6)  # 3.9 V x 0.5 A in uW


def test_missing_source_is_an_agent_failure(tmp_path):
    with pytest.raises(agent.AgentFailure, match="energy source 'odpm' is not present"):
        agent.EnergyReader("odpm", str(tmp_path))


def test_environment_snapshot(sysfs):
    found = agent.environment(sysfs)
    assert found["governors"] == {"policy0": "schedutil"}
    assert found["battery"] == {"capacity_pct": 21, "status": "Discharging"}
    assert found["loadavg_1m"] is not None and found["cpu_count"] >= 1


def test_sampler_carries_energy_readings(sysfs):
    sampler = agent.ThermalSampler(0.02, sysfs=sysfs, energy=agent.EnergyReader("rapl", sysfs)).start()
    time.sleep(0.1)
    document = sampler.stop()
    assert document["energy"] == {"source": "rapl", "kind": "counter", "max_range_uj": 262143328850}
    assert all(sample[4] == 5000.0 for sample in document["samples"])


def test_fixed_rate_spaces_request_starts():
    offsets, _durations, stopped_by = agent.timed_loop(
        lambda i: None, 1, min_iters=20, min_s=0.0, max_s=10.0, max_iters=20, rate_hz=100.0
    )
    assert len(offsets) == 20 and stopped_by in {"min_reached", "max_iters"}
    # a schedule, not a pause: request i never starts before i x 10 ms (a late one is not made up for
    # by shifting the rest)
    assert all(offset >= index * 10_000_000 - 500_000 for index, offset in enumerate(offsets))
    assert offsets[-1] >= 19 * 10_000_000


def test_idle_baseline_window():
    idle = agent.idle_baseline(0.05)
    assert idle["end_ns"] - idle["start_ns"] >= 50_000_000
    assert idle["cpu_busy_pct"] is None or 0 <= idle["cpu_busy_pct"] <= 100
