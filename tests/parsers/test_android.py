"""dumpsys meminfo / battery / thermalservice and getprop."""

from __future__ import annotations

import pytest

from harness.errors import ParseError
from harness.parsers.android import (
    parse_dumpsys_battery,
    parse_dumpsys_meminfo,
    parse_dumpsys_thermalservice,
    parse_getprop,
)
from tests.parsers.samples import (
    BATTERY_ANDROID13,
    BATTERY_OLD_VENDOR,
    GETPROP_PIE,
    GETPROP_PIXEL,
    MEMINFO_KITKAT,
    MEMINFO_NO_PROCESS,
    MEMINFO_SYSTEM_WIDE,
    THERMAL_ANDROID14,
    THERMAL_CACHED_ONLY,
    crlf,
    logcat,
    real,
)

OLD_MEMINFO = "dumpsys_meminfo/android_app_meminfo_a_ganktoutiao.txt"
NEW_MEMINFO = "dumpsys_meminfo/honor_android14_memorylab_meminfo.txt"

# ---- dumpsys-meminfo -----------------------------------------------------------------------


def test_meminfo_android14_capture():
    result = parse_dumpsys_meminfo(real(NEW_MEMINFO))
    assert (result.pid, result.process) == (20602, "com.androidperformance.memorylab")
    assert (result.total_pss_kb, result.total_rss_kb, result.total_swap_pss_kb) == (337790, 421296, 162)
    assert result.columns == [
        "pss_total",
        "private_dirty",
        "private_clean",
        "swappss_dirty",
        "rss_total",
        "heap_size",
        "heap_alloc",
        "heap_free",
    ]
    assert result.table["TOTAL"] == {
        "pss_total_kb": 337790,
        "private_dirty_kb": 293788,
        "private_clean_kb": 18924,
        "swappss_dirty_kb": 162,
        "rss_total_kb": 421296,
        "heap_size_kb": 634109,
        "heap_alloc_kb": 428404,
        "heap_free_kb": 201098,
    }
    assert result.table["Native Heap"]["pss_total_kb"] == 80860
    assert (result.native_heap_size_kb, result.native_heap_alloc_kb, result.native_heap_free_kb) == (
        139028,
        129931,
        4490,
    )
    assert result.table["Dalvik Heap"]["pss_total_kb"] == 59439
    assert (result.dalvik_heap_size_kb, result.dalvik_heap_alloc_kb, result.dalvik_heap_free_kb) == (
        495081,
        298473,
        196608,
    )
    # Rows without heap cells have no heap keys.
    assert "heap_size_kb" not in result.table["Dalvik Other"]
    assert result.table["Dalvik Other"]["rss_total_kb"] == 29248
    # App Summary Java Heap (69716) is not the Dalvik Heap row (59439).
    assert (result.java_heap_pss_kb, result.java_heap_rss_kb) == (69716, 84804)
    assert (result.native_heap_pss_kb, result.native_heap_rss_kb) == (80824, 82336)
    assert (result.graphics_pss_kb, result.graphics_rss_kb) == (57172, 57176)
    assert (result.code_pss_kb, result.stack_pss_kb) == (30304, 2072)
    assert (result.private_other_pss_kb, result.system_pss_kb) == (72624, 25078)
    assert result.app_summary["code"].rss_kb == 119148
    assert result.app_summary["private_other"].rss_kb is None
    assert result.app_summary["unknown"].pss_kb is None and result.app_summary["unknown"].rss_kb == 75752
    graphics = sum(result.table[row]["pss_total_kb"] for row in ("EGL mtrack", "GL mtrack", "Gfx dev"))
    assert graphics == result.graphics_pss_kb
    assert (result.objects["views"], result.objects["activities"], result.objects["webviews"]) == (779, 1, 4)
    assert result.objects["proxy_binders"] == 106


def test_meminfo_old_layout_capture_without_rss():
    result = parse_dumpsys_meminfo(real(OLD_MEMINFO))
    assert (result.pid, result.process) == (8118, "com.android.hq.ganktoutiao")
    assert (result.total_pss_kb, result.total_rss_kb, result.total_swap_pss_kb) == (126902, None, 80)
    assert result.table["TOTAL"] == {
        "pss_total_kb": 126902,
        "pss_clean_kb": 16428,
        "shared_dirty_kb": 2656,
        "private_dirty_kb": 98732,
        "shared_clean_kb": 35452,
        "private_clean_kb": 21516,
        "swappss_dirty_kb": 80,
        "heap_size_kb": 36139,
        "heap_alloc_kb": 26070,
        "heap_free_kb": 10068,
    }
    assert (result.java_heap_pss_kb, result.native_heap_pss_kb, result.code_pss_kb) == (9564, 18004, 16612)
    assert (result.stack_pss_kb, result.graphics_pss_kb) == (120, 71200)
    assert (result.private_other_pss_kb, result.system_pss_kb) == (4748, 6654)
    assert result.java_heap_rss_kb is None and result.graphics_rss_kb is None
    assert result.table["Gfx dev"]["pss_total_kb"] == 14500
    assert result.table["EGL mtrack"]["pss_total_kb"] == 27744
    assert result.table["GL mtrack"]["pss_total_kb"] == 28956
    assert result.table["Native Heap"]["pss_total_kb"] == 18071
    assert (result.native_heap_size_kb, result.native_heap_alloc_kb, result.native_heap_free_kb) == (
        29696,
        22848,
        6847,
    )
    assert result.table["Dalvik Heap"]["pss_total_kb"] == 3992
    assert (result.dalvik_heap_size_kb, result.dalvik_heap_alloc_kb, result.dalvik_heap_free_kb) == (6443, 3222, 3221)
    assert (result.objects["views"], result.objects["activities"], result.objects["webviews"]) == (593, 1, 0)
    # Dalvik Details rows are not category rows.
    assert ".Heap" not in result.table


@pytest.mark.parametrize("variant", [crlf, lambda text: text.replace("\n", "\n\n")])
def test_meminfo_crlf_and_blank_lines(variant):
    for name in (OLD_MEMINFO, NEW_MEMINFO):
        assert parse_dumpsys_meminfo(variant(real(name))) == parse_dumpsys_meminfo(real(name))


def test_meminfo_kitkat_without_app_summary():
    # written from the format, not captured
    result = parse_dumpsys_meminfo(MEMINFO_KITKAT)
    assert (result.pid, result.process) == (1234, "com.example.app")
    assert result.total_pss_kb == 12681  # from the TOTAL row
    assert result.total_rss_kb is None and result.total_swap_pss_kb is None
    assert result.columns == [
        "pss_total",
        "private_dirty",
        "private_clean",
        "swapped_dirty",
        "heap_size",
        "heap_alloc",
        "heap_free",
    ]
    assert (result.native_heap_size_kb, result.dalvik_heap_free_kb) == (8192, 349)
    assert result.java_heap_pss_kb is None and result.app_summary == {}
    assert result.table["Stack"] == {
        "pss_total_kb": 148,
        "private_dirty_kb": 148,
        "private_clean_kb": 0,
        "swapped_dirty_kb": 0,
    }
    assert result.objects == {"views": 27, "viewrootimpl": 1, "appcontexts": 3, "activities": 1}


def test_meminfo_takes_the_first_process_only():
    text = real(NEW_MEMINFO) + "\n" + MEMINFO_KITKAT.split("\n", 3)[3]
    result = parse_dumpsys_meminfo(text)
    assert result.pid == 20602 and result.total_pss_kb == 337790


def test_meminfo_errors():
    with pytest.raises(ParseError, match="^dumpsys-meminfo: the input is empty"):
        parse_dumpsys_meminfo("")
    with pytest.raises(ParseError, match="^dumpsys-meminfo: .*No process found"):
        parse_dumpsys_meminfo(MEMINFO_NO_PROCESS)
    with pytest.raises(ParseError, match="^dumpsys-meminfo: this is the system-wide summary"):
        parse_dumpsys_meminfo(MEMINFO_SYSTEM_WIDE)
    with pytest.raises(ParseError, match=r"^dumpsys-meminfo: no '\*\* MEMINFO in pid.*dumpsys meminfo"):
        parse_dumpsys_meminfo(BATTERY_ANDROID13)
    truncated = "\n".join(real(NEW_MEMINFO).splitlines()[:6])
    with pytest.raises(ParseError, match="^dumpsys-meminfo: no TOTAL PSS found"):
        parse_dumpsys_meminfo(truncated)


# ---- dumpsys-battery -----------------------------------------------------------------------


def test_battery_android13():
    # written from the format, not captured
    result = parse_dumpsys_battery(BATTERY_ANDROID13)
    assert result.updates_stopped is False
    assert (result.ac_powered, result.usb_powered, result.wireless_powered, result.dock_powered) == (
        False,
        True,
        False,
        False,
    )
    assert result.plugged == ["USB"]
    assert (result.status, result.status_name) == (2, "charging")
    assert (result.health, result.health_name) == (2, "good")
    assert result.present is True
    assert (result.level, result.scale, result.level_pct) == (85, 100, 85.0)
    assert result.voltage_mv == 4215
    assert (result.temperature_raw, result.temp_c) == (285, 28.5)
    assert result.technology == "Li-ion"
    assert result.charge_counter_uah == 3863000
    assert (result.max_charging_current_ua, result.max_charging_voltage_uv) == (500000, 5000000)
    assert result.current_now_raw is None and result.current_now_ua is None
    assert result.fields["charging_policy"] == "1"


def test_battery_old_vendor_uv_voltage_negative_temp_and_current():
    # written from the format, not captured
    result = parse_dumpsys_battery(crlf(BATTERY_OLD_VENDOR))
    assert result.updates_stopped is True
    assert result.plugged == [] and result.dock_powered is None
    assert (result.status, result.status_name) == (3, "discharging")
    assert result.voltage_mv == 3791  # printed in uV
    assert result.temp_c == -5.2
    assert result.technology == "Li-poly"
    assert result.charge_counter_uah is None
    assert (result.current_now_raw, result.current_now_ua) == (-412, -412000)  # mA, sign as printed


def test_battery_logcat_prefixed():
    result = parse_dumpsys_battery(logcat(BATTERY_ANDROID13, "threadtime", "dumpsys"))
    assert result == parse_dumpsys_battery(BATTERY_ANDROID13)


def test_battery_errors():
    with pytest.raises(ParseError, match="^dumpsys-battery: the input is empty"):
        parse_dumpsys_battery(" \n")
    with pytest.raises(ParseError, match="^dumpsys-battery: no 'level:' .*dumpsys battery"):
        parse_dumpsys_battery(THERMAL_ANDROID14)


# ---- dumpsys-thermalservice ----------------------------------------------------------------


def test_thermalservice_prefers_current_hal_temperatures():
    # written from the format, not captured
    result = parse_dumpsys_thermalservice(THERMAL_ANDROID14)
    assert (result.thermal_status, result.thermal_status_name) == (1, "light")
    assert result.is_status_override is False and result.hal_ready is True
    assert result.temperatures_source == "current"
    assert [(t.name, t.type, t.type_name, t.temp_c, t.status) for t in result.temperatures] == [
        ("skin", 3, "skin", 41.5, 1),
        ("battery", 2, "battery", 33.0, 0),
        ("cpu0", 0, "cpu", 55.25, 0),
        ("npu", 9, "npu", None, 0),  # mValue=NaN
    ]
    assert [(c.name, c.type, c.type_name, c.value) for c in result.cooling_devices] == [
        ("thermal-cpufreq-0", 2, "cpu", 0),
        ("fan", 0, "fan", 2),
    ]
    assert result.max_temp_c == 55.25
    assert result.max_sensor_status == 1
    assert result.throttling is True


def test_thermalservice_cached_only():
    # written from the format, not captured
    result = parse_dumpsys_thermalservice(crlf(THERMAL_CACHED_ONLY))
    assert result.thermal_status == 0 and result.thermal_status_name == "none"
    assert result.hal_ready is False
    assert result.temperatures_source == "cached"
    assert [(t.name, t.temp_c) for t in result.temperatures] == [("skin", 29.5)]
    assert result.cooling_devices == []
    assert result.throttling is False


def test_thermalservice_errors():
    with pytest.raises(ParseError, match="^dumpsys-thermalservice: the input is empty"):
        parse_dumpsys_thermalservice("")
    with pytest.raises(ParseError, match="^dumpsys-thermalservice: no 'Thermal Status:'.*thermalservice"):
        parse_dumpsys_thermalservice(BATTERY_ANDROID13)


# ---- getprop -------------------------------------------------------------------------------


def test_getprop_pixel():
    # written from the format, not captured
    result = parse_getprop(GETPROP_PIXEL)
    assert result.props["vendor.multiline.note"] == "first line\nsecond line"
    assert result.props["persist.sys.locale"] == ""
    assert len(result.props) == 19
    assert (result.model, result.manufacturer, result.brand, result.device) == (
        "Pixel 7 Pro",
        "Google",
        "google",
        "cheetah",
    )
    assert (result.sdk_int, result.release, result.build_id) == (34, "14", "AP2A.240805.005")
    assert result.security_patch == "2024-08-05"
    assert (result.soc_manufacturer, result.soc_model) == ("Google", "GS201")
    assert (result.hardware, result.board_platform) == ("cheetah", "gs201")
    assert (result.abi, result.abilist) == ("arm64-v8a", ["arm64-v8a"])


def test_getprop_android9_fallbacks_and_crlf():
    # written from the format, not captured
    result = parse_getprop(crlf(GETPROP_PIE))
    assert (result.model, result.manufacturer) == ("MI 8", "Xiaomi")
    assert (result.sdk_int, result.release) == (28, "9")
    assert result.soc_model is None and result.board_platform == "sdm845"
    assert result.abilist == ["arm64-v8a", "armeabi-v7a", "armeabi"]


def test_getprop_errors():
    with pytest.raises(ParseError, match="^getprop: the input is empty"):
        parse_getprop("")
    with pytest.raises(ParseError, match=r"^getprop: no '\[key\]: \[value\]' line found; .*adb shell getprop"):
        parse_getprop(BATTERY_ANDROID13)
