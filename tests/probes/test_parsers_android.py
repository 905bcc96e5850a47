"""Android parsers: dumpsys meminfo on two real captures (Android 8/9 and 14 layouts); battery,
thermalservice, ODPM, getprop and power_supply on inputs written from the formats, including
the virtual phone's own output."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ParseError
from harness.probes.parsers.android import (
    parse_dumpsys_battery,
    parse_dumpsys_meminfo,
    parse_dumpsys_thermalservice,
    parse_getprop,
    parse_odpm,
    parse_power_supply,
)

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-outputs" / "dumpsys_meminfo"


def test_meminfo_android14_with_rss_columns():
    result = parse_dumpsys_meminfo((REAL / "honor_android14_memorylab_meminfo.txt").read_text())
    assert (result.pid, result.process) == (20602, "com.androidperformance.memorylab")
    assert (result.total_pss_kb, result.total_rss_kb, result.total_swap_pss_kb) == (337790, 421296, 162)
    rows = {row.name: row.values_kb for row in result.rows}
    assert rows["TOTAL"] == {
        "pss_total": 337790,
        "private_dirty": 293788,
        "private_clean": 18924,
        "swappss_dirty": 162,
        "rss_total": 421296,
        "heap_size": 634109,
        "heap_alloc": 428404,
        "heap_free": 201098,
    }
    assert rows["Native Heap"]["heap_free"] == 4490 and rows["Dalvik Heap"]["pss_total"] == 59439
    assert "heap_size" not in rows["Stack"]  # blank heap columns stay absent
    summary = result.app_summary
    assert (summary["java_heap"].pss_kb, summary["java_heap"].rss_kb) == (69716, 84804)
    assert (summary["graphics"].pss_kb, summary["graphics"].rss_kb) == (57172, 57176)
    assert (summary["private_other"].pss_kb, summary["private_other"].rss_kb) == (72624, None)
    assert (summary["unknown"].pss_kb, summary["unknown"].rss_kb) == (None, 75752)
    assert (result.objects["views"], result.objects["activities"], result.objects["webviews"]) == (779, 1, 4)


def test_meminfo_old_layout_without_rss():
    result = parse_dumpsys_meminfo((REAL / "android_app_meminfo_a_ganktoutiao.txt").read_text())
    assert (result.pid, result.total_pss_kb, result.total_rss_kb, result.total_swap_pss_kb) == (
        8118,
        126902,
        None,
        80,
    )
    rows = {row.name: row.values_kb for row in result.rows}
    assert rows["TOTAL"]["shared_clean"] == 35452 and rows["TOTAL"]["heap_free"] == 10068
    assert rows["Native Heap"]["pss_total"] == 18071 and rows["Native Heap"]["heap_alloc"] == 22848
    assert {k: v.pss_kb for k, v in result.app_summary.items()} == {
        "java_heap": 9564,
        "native_heap": 18004,
        "code": 16612,
        "stack": 120,
        "graphics": 71200,
        "private_other": 4748,
        "system": 6654,
    }


def test_meminfo_without_a_process_header_is_refused():
    with pytest.raises(ParseError, match="dumpsys-meminfo: no '\\*\\* MEMINFO in pid"):
        parse_dumpsys_meminfo("Total RAM: 7,734,044K (status normal)\n")


# Written from the format (Android 13 BatteryService dump, charging over USB).
BATTERY = """Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  Dock powered: false
  Max charging current: 500000
  Max charging voltage: 5000000
  Charge counter: 3212000
  status: 2
  health: 2
  present: true
  level: 23
  scale: 100
  voltage: 3812
  temperature: 312
  technology: Li-ion
"""


def test_battery_charging_low_level():
    result = parse_dumpsys_battery(BATTERY)
    assert result.charging and result.usb_powered and not result.ac_powered
    assert (result.status_name, result.health_name, result.level_pct) == ("charging", "good", 23.0)
    assert (result.voltage_mv, result.temp_c, result.charge_counter_uah) == (3812, 31.2, 3212000)
    assert (result.max_charging_current_ua, result.updates_stopped) == (500000, False)


def test_battery_microvolts_and_updates_stopped():
    text = BATTERY.replace("voltage: 3812", "voltage: 3812000").replace(
        "Current Battery Service state:",
        "Current Battery Service state:\n  (UPDATES STOPPED -- use 'reset' to restart)",
    )
    result = parse_dumpsys_battery(text)
    assert result.voltage_mv == 3812 and result.updates_stopped


# Written from the format (Android 10+ ThermalManagerService dump; HAL 2.0 adds the Current section).
THERMAL = """IsStatusOverride: false
ThermalEventListeners:
	callbacks: 1
Thermal Status: 2
Cached temperatures:
	Temperature{mValue=38.0, mType=3, mName=skin, mStatus=0}
HAL Ready: true
HAL connection:
	ThermalHAL 2.0 connected: yes
Current temperatures from HAL:
	Temperature{mValue=44.5, mType=3, mName=skin, mStatus=2}
	Temperature{mValue=61.25, mType=0, mName=BIG, mStatus=0}
	Temperature{mValue=-273.1, mType=2, mName=battery_broken, mStatus=0}
Current cooling devices from HAL:
	CoolingDevice{mValue=3, mType=2, mName=cpufreq-big}
"""


def test_thermalservice_prefers_current_hal_readings():
    result = parse_dumpsys_thermalservice(THERMAL)
    assert (result.thermal_status, result.thermal_status_name, result.hal_ready) == (2, "moderate", True)
    assert [(t.name, t.type_name, t.temp_c, t.status) for t in result.temperatures[:2]] == [
        ("skin", "skin", 44.5, 2),
        ("BIG", "cpu", 61.25, 0),
    ]
    assert result.hottest_c == 61.25  # the -273.1 placeholder is not a reading
    assert [(c.name, c.value) for c in result.cooling_devices] == [("cpufreq-big", 3.0)]


def test_thermalservice_of_the_virtual_phone(tmp_path):
    from harness.lab.profiles import PIXEL8
    from harness.lab.sensors import SensorModel

    model = SensorModel(PIXEL8, tmp_path / "sys", tmp_path / "dumpsys", None)
    while not model.state.throttled:
        model.advance(1.0, cores_used=1.0)
    result = parse_dumpsys_thermalservice((tmp_path / "dumpsys" / "thermalservice").read_text())
    assert result.thermal_status == 3 and len(result.temperatures) == 7
    assert result.hottest_c == pytest.approx(model.state.temp_c, abs=0.06)
    battery = parse_dumpsys_battery((tmp_path / "dumpsys" / "battery").read_text())
    assert not battery.charging and battery.level == 78


def test_odpm_rails_with_and_without_subsystem():
    text = (
        "t=1234567\n"
        "CH0(T=1234567)[S2M_VDD_CPUCL2], 456789012\n"
        "CH1(T=1234567)[S3M_VDD_CPUCL1], 1200\n"
        "CH2(T=1234560)[VSYS_PWR_DISPLAY]:[Display], 99\n"
    )
    result = parse_odpm(text)
    assert result.timestamp_ms == 1234567 and result.total_energy_uws == 456789012 + 1200 + 99
    assert [(r.channel, r.name, r.subsystem) for r in result.rails] == [
        (0, "S2M_VDD_CPUCL2", None),
        (1, "S3M_VDD_CPUCL1", None),
        (2, "VSYS_PWR_DISPLAY", "Display"),
    ]
    with pytest.raises(ParseError, match="odpm: no 'CHn"):
        parse_odpm("t=5\n")


def test_getprop_multiline_values_and_convenience_fields():
    text = (
        "[ro.product.model]: [Pixel 8]\n[ro.build.version.sdk]: [34]\n[ro.soc.model]: [Tensor G3]\n"
        "[ro.product.cpu.abilist]: [arm64-v8a,armeabi-v7a]\n[persist.sys.banner]: [line one\nline two]\n"
        "[ro.product.manufacturer]: [Google]\n[empty.prop]: []\n"
    )
    result = parse_getprop(text)
    assert (result.model, result.sdk_int, result.soc_model, result.manufacturer) == (
        "Pixel 8",
        34,
        "Tensor G3",
        "Google",
    )
    assert result.abilist == ["arm64-v8a", "armeabi-v7a"]
    assert result.props["persist.sys.banner"] == "line one\nline two" and result.props["empty.prop"] == ""


def test_power_supply_uevent_and_grep_dumps():
    uevent = (
        "POWER_SUPPLY_NAME=battery\nPOWER_SUPPLY_STATUS=Discharging\nPOWER_SUPPLY_CAPACITY=81\n"
        "POWER_SUPPLY_VOLTAGE_NOW=3950000\nPOWER_SUPPLY_CURRENT_NOW=-512000\nPOWER_SUPPLY_TEMP=295\n"
    )
    result = parse_power_supply(uevent)
    assert (result.capacity_pct, result.charging, result.temp_c, result.voltage_mv) == (
        81,
        False,
        29.5,
        3950.0,
    )
    assert (result.current_now_ua, result.current_unit, result.power_mw) == (
        -512000,
        "ua",
        pytest.approx(2022.4),
    )
    grep = (
        "/sys/class/power_supply/battery/status:Charging\n/sys/class/power_supply/battery/current_now:850\n"
        "/sys/class/power_supply/battery/voltage_now:4100000\n"
    )
    vendor = parse_power_supply(grep)
    assert vendor.charging and vendor.current_unit == "ma" and vendor.power_mw == pytest.approx(3485.0)
    with pytest.raises(ParseError, match="power-supply: none of capacity"):
        parse_power_supply("hello: world\n")
