"""Every kind on real outputs (tests/fixtures/real-outputs, each with its source note) and on the
excerpts a person pastes from them: without the banner or header, behind shell-loop labels or log
timestamps, with CRLF line ends, and cut anywhere in the last line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.errors import ParseError
from harness.probes.parsers import PARSERS, parse

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-outputs"
FOLDERS = {
    "tflite_benchmark_model": "tflite-benchmark",
    "ort_perf_test": "ort-perf-test",
    "dumpsys_meminfo": "dumpsys-meminfo",
    "dumpsys_battery": "dumpsys-battery",
    "power_supply": "power-supply",
    "dumpsys_thermalservice": "dumpsys-thermalservice",
    "odpm": "odpm",
    "tegrastats": "tegrastats",
    "vcgencmd": "vcgencmd",
    "proc_status": "proc-status",
    "cpufreq": "cpufreq",
    "getprop": "getprop",
}
FIXTURES = sorted(
    (kind, f"{folder}/{path.name}")
    for folder, kind in FOLDERS.items()
    for path in (REAL / folder).glob("*.txt")
    if not path.name.endswith(".source.txt")
)
# Values the tool prints at the very end of their line: on an input cut right inside one, nothing
# tells the part from the whole, so these (and what is derived from them) are taken as printed.
LINE_FINAL = {
    "tflite-benchmark": {"model_size_mb", "memory_overall_mb", "peak_memory_monitored_mb"},
    "ort-perf-test": {
        "requests",
        "runs",
        "inferences_per_s",
        "avg_cpu_pct",
        "peak_working_set_bytes",
        "peak_working_set_mb",
    },
    "dumpsys-battery": {
        "status",
        "status_name",
        "health",
        "health_name",
        "level",
        "scale",
        "level_pct",
        "voltage_mv",
        "temp_c",
        "charge_counter_uah",
        "current_now_ua",
        "max_charging_current_ua",
        "max_charging_voltage_uv",
        "charging",
    },
    "power-supply": {
        "capacity_pct",
        "voltage_now_uv",
        "voltage_mv",
        "current_now_ua",
        "current_unit",
        "power_mw",
        "temp_c",
        "charge_counter_uah",
    },
    "dumpsys-thermalservice": {"thermal_status", "thermal_status_name"},
    "odpm": {"energy_uws", "total_energy_uws", "timestamp_ms"},
    "vcgencmd": {"throttled_raw", "flags", "throttled_now", "frequencies_khz"},
    "proc-status": {"pid", "threads"},
    "cpufreq": {
        "cur_freq_khz",
        "min_freq_khz",
        "max_freq_khz",
        "cpuinfo_min_freq_khz",
        "cpuinfo_max_freq_khz",
        "related_cpus",
        "available_frequencies_khz",
        "capped",
    },
}


# Sums over what was read: with a rail cut off, the sum is over the rails that are whole.
SUMS = {"total_energy_uws"}


def real(name: str) -> str:
    return (REAL / name).read_text(encoding="utf-8")


# -- the numbers each source note lists --------------------------------------------------------------


def test_tflite_tf23_android_with_the_op_profiler_header():
    result = parse(
        "tflite-benchmark", real("tflite_benchmark_model/tf_issue42507_espcn_android_op_profiling.txt")
    )
    assert (result["model_file"], result["num_threads"], result["model_size_mb"]) == (
        "/data/local/tmp/espcn_harmonic_2x_slim_w_cl.tflite",
        4,
        0.004448,
    )
    assert (result["init_us"], result["first_inference_us"], result["warmup_avg_us"], result["avg_us"]) == (
        855,
        49060,
        34825.1,
        33209.4,
    )
    assert (result["warmup"]["count"], result["warmup"]["std_us"]) == (15, 3930)
    assert (result["steady"]["count"], result["steady"]["min_us"], result["steady"]["max_us"]) == (
        50,
        32641,
        34005,
    )
    assert (result["memory_kind"], result["memory_init_mb"], result["memory_overall_mb"]) == (
        "peak",
        0,
        12.8672,
    )


def test_tflite_tf1x_average_timings_wording_without_the_parameter_lines():
    result = parse(
        "tflite-benchmark", real("tflite_benchmark_model/yuenshome_issue77_tf1x_average_timings.txt")
    )
    assert result["model_file"] == "/data/local/tmp/tflite/tfmodel/mobilenet_v1_1.0_224_quant.tflite"
    assert (result["init_us"], result["warmup_avg_us"], result["avg_us"], result["first_inference_us"]) == (
        9933,
        76605.9,
        66767.6,
        None,
    )
    assert (result["warmup"]["count"], result["steady"]["count"], result["steady"]["std_us"]) == (7, 15, 39)
    assert result["init_session_ms"] == 9.933


def test_ort_older_wording_total_time_cost_and_latency_is_sec():
    result = parse("ort-perf-test", real("ort_perf_test/ort_issue17313_older_wording_is_sec.txt"))
    assert result["total_inference_ms"] == pytest.approx(58805.3)  # unit-less: seconds
    assert (result["requests"], result["avg_ms"]) == (1000, 58.8053)
    assert result["total_run_ms"] == pytest.approx(58810.2)
    assert result["min_ms"] == pytest.approx(55.9777) and result["p999_ms"] == pytest.approx(62.3472)
    assert result["p50_ms"] == pytest.approx(58.7108) and result["p95_ms"] == pytest.approx(60.5676)


def test_ort_windows_prompt_and_no_space_after_the_colon():
    result = parse("ort-perf-test", real("ort_perf_test/ort_pr2798_windows_trt7_resnet50.txt"))
    assert result["session_creation_ms"] == pytest.approx(1841.49)
    assert (result["total_inference_ms"], result["requests"], result["avg_ms"]) == (
        pytest.approx(734.606),
        1,
        734.606,
    )
    assert result["total_run_ms"] == pytest.approx(734.761)


def test_ort_two_runs_pasted_together_and_cut_mid_word():
    result = parse("ort-perf-test", real("ort_perf_test/acl_issue850_android_squeezenet_two_runs.txt"))
    assert result["session_creation_ms"] == pytest.approx(127.918)  # the first (ACL) run
    assert (result["avg_ms"], result["requests"], result["avg_cpu_pct"]) == (144.871, 10, 68)
    assert result["peak_working_set_bytes"] == 158171136


def test_meminfo_android6_seven_columns_cut_inside_the_total_row():
    result = parse("dumpsys-meminfo", real("dumpsys_meminfo/droid_monitor_issue12_android6_chrome_cut.txt"))
    assert (result["pid"], result["process"], result["total_pss_kb"]) == (9702, "com.android.chrome", 8828)
    assert result["columns"] == [
        "pss_total",
        "private_dirty",
        "private_clean",
        "swapped_dirty",
        "heap_size",
        "heap_alloc",
        "heap_free",
    ]
    rows = {row["name"]: row["values_kb"] for row in result["rows"]}
    assert rows["TOTAL"] == {"pss_total": 8828, "private_dirty": 2700}  # "2700" sits under its column
    assert list(rows["Native Heap"].values()) == [2145, 1040, 0, 0, 28160, 26530, 1629]
    assert rows["Unknown"] == {"pss_total": 76, "private_dirty": 68, "private_clean": 0, "swapped_dirty": 0}


def test_battery_pixel_c_prompt_line():
    result = parse("dumpsys-battery", real("dumpsys_battery/syzkaller_issue79_pixel_c_dragon.txt"))
    assert (result["ac_powered"], result["status_name"], result["health_name"], result["level_pct"]) == (
        True,
        "charging",
        "good",
        19.0,
    )
    assert (result["voltage_mv"], result["temp_c"], result["charge_counter_uah"]) == (3764, 27.5, 0)
    assert (result["max_charging_current_ua"], result["max_charging_voltage_uv"]) == (2400000, 5000000)


def test_battery_samsung_vendor_lines_and_repeated_charge_counter():
    result = parse("dumpsys-battery", real("dumpsys_battery/zebrunner_issue150_samsung_vendor_lines.txt"))
    assert (result["usb_powered"], result["status_name"], result["level"], result["charging"]) == (
        True,
        "full",
        100,
        True,
    )
    assert (
        result["voltage_mv"],
        result["temp_c"],
        result["charge_counter_uah"],
        result["current_now_ua"],
    ) == (
        4312,
        30.9,
        2967000,
        0,
    )


def test_battery_service_header_variant_and_the_uevent_block_of_acc_info():
    text = real("dumpsys_battery/acc_issue195_oneplus7_info.txt")
    battery = parse("dumpsys-battery", text)
    assert (battery["status_name"], battery["level"], battery["voltage_mv"], battery["temp_c"]) == (
        "discharging",
        77,
        3985,
        29.4,
    )
    assert battery["charge_counter_uah"] == 2849000
    uevent = parse("power-supply", text[text.index("Uevent") :])  # unprefixed, indented KEY=value
    assert (uevent["capacity_pct"], uevent["charge_counter_uah"], uevent["status"]) == (76, 2535012, None)


def test_power_supply_laptop_chromeos_and_a_battery_without_status():
    laptop = parse("power-supply", real("power_supply/fastfetch_issue118_laptop_bat0.txt"))
    assert (laptop["name"], laptop["status"], laptop["charging"], laptop["capacity_pct"]) == (
        "BAT0",
        "Charging",
        True,
        98,
    )
    assert (laptop["voltage_mv"], laptop["current_unit"], laptop["power_mw"]) == (12729.0, "ua", 5257.077)
    chromeos = parse("power-supply", real("power_supply/brunch_issue117_chromeos_batc_discharging.txt"))
    assert (chromeos["status"], chromeos["capacity_pct"], chromeos["power_mw"]) == (
        "Discharging",
        74,
        6149.52,
    )
    nexus = parse("power-supply", real("power_supply/waybar_issue2459_nexus5_battery.txt"))
    assert (nexus["capacity_pct"], nexus["voltage_now_uv"]) == (36, 3688750)
    assert (nexus["status"], nexus["charging"], nexus["power_mw"]) == (None, None, None)


def test_thermalservice_shield_tv_cached_readings_trailing_spaces():
    result = parse(
        "dumpsys-thermalservice", real("dumpsys_thermalservice/shield_optimizer_issue6_shield_tv_cut.txt")
    )
    assert (result["thermal_status"], result["status_override"], result["hal_ready"]) == (0, False, True)
    assert [(t["name"], t["type_name"], t["temp_c"]) for t in result["temperatures"]] == [
        ("GPU", "gpu", 36.0),
        ("CPU0", "cpu", 37.0),
        ("CPU1", "cpu", 37.0),
        ("CPU2", "cpu", 37.0),
        ("CPU3", "cpu", 37.0),
    ]
    assert result["hottest_c"] == 37.0


def test_odpm_pixel6_two_devices_behind_prompts():
    result = parse("odpm", real("odpm/aosp_pixel6_energy_value_two_devices.txt"))
    assert (result["timestamp_ms"], len(result["rails"]), result["total_energy_uws"]) == (
        349894,
        16,
        336352935,
    )
    rails = {(r["timestamp_ms"], r["name"]): r["energy_uws"] for r in result["rails"]}
    assert rails[(349894, "S2M_VDD_CPUCL2")] == 30203502 and rails[(359458, "VSYS_PWR_DISPLAY")] == 81221665


def test_tegrastats_engines_with_load_and_two_gpcs():
    (busy,) = parse("tegrastats", real("tegrastats/jetson_stats_issue624_orin_nvenc_busy.txt"))["samples"]
    assert busy["engines_mhz"] == {
        "NVENC": 115,
        "NVDEC": 115,
        "NVJPG": None,
        "NVJPG1": None,
        "VIC": 115,
        "OFA": None,
        "NVDLA0": None,
        "PVA0": None,
        "APE": 174,
    }
    assert [c["load_pct"] for c in busy["cpus"]] == [97, 95, 95, 91, 88, 93] and busy["cpus"][5][
        "freq_mhz"
    ] == 247
    assert (busy["emc_pct"], busy["emc_freq_mhz"], busy["gr3d_pct"], busy["gr3d_freq_mhz"]) == (
        18,
        3199,
        84,
        713,
    )
    assert (busy["temps_c"]["tj"], busy["temps_c"]["cv2"], busy["total_power_mw"]) == (65.562, 60.875, 17946)
    (agx,) = parse("tegrastats", real("tegrastats/jetson_exporter_issue14_agx_orin_64gb.txt"))["samples"]
    assert (agx["ram_used_mb"], agx["ram_total_mb"], len(agx["cpus"]), agx["gr3d_freq_mhz"]) == (
        4321,
        62801,
        12,
        0,
    )
    assert agx["engines_mhz"] == {"VIC": 729, "APE": 174}
    assert agx["temps_c"] == {
        "cpu": 44.562,
        "tboard": 32,
        "soc2": 40.093,
        "tdiode": 33,
        "soc0": 41.093,
        "tj": 44.343,
        "soc1": 41.25,
    }
    assert agx["rails"]["VIN_SYS_5V0"]["current_mw"] == 4025 and agx["total_power_mw"] is None


def test_vcgencmd_undervoltage_pi3_clock_45_and_measure_volts():
    pi3 = parse("vcgencmd", real("vcgencmd/rpi3_firmware_issue615_undervoltage.txt"))
    assert (pi3["throttled_raw"], pi3["throttled_now"], pi3["temp_c"]) == (0x50005, True, 38.6)
    assert [name for name, on in pi3["flags"].items() if on] == [
        "under_voltage_now",
        "throttled_now",
        "under_voltage_occurred",
        "throttled_occurred",
    ]
    pi3b = parse("vcgencmd", real("vcgencmd/duckietown_issue358_pi3b_plus.txt"))
    assert (pi3b["frequencies_khz"], pi3b["temp_c"], pi3b["throttled_now"]) == ({"45": 1400000}, 62.3, False)
    assert parse("vcgencmd", real("vcgencmd/tldr_pr6309_measure_volts.txt"))["voltages_mv"] == {"core": 1200}


def test_proc_status_without_name_and_a_vm_block_alone():
    server = parse("proc-status", real("proc_status/jemalloc_issue1532_rhel_one_hour_later.txt"))
    assert (server["name"], server["pid"], server["state"], server["threads"]) == (
        None,
        7725,
        "S (sleeping)",
        12,
    )
    assert (server["peak_rss_kb"], server["rss_kb"], server["vm_peak_kb"], server["rss_anon_kb"]) == (
        3393340,
        3183564,
        3976524,
        None,
    )
    block = parse("proc-status", real("proc_status/psutil_issue1540_vm_block.txt"))
    assert (block["peak_rss_kb"], block["rss_anon_kb"], block["rss_file_kb"], block["vm_swap_kb"]) == (
        13484,
        10264,
        3220,
        0,
    )


def test_cpufreq_path_equals_value_with_units():
    policies = parse("cpufreq", real("cpufreq/linux_surface_issue448_sl4a_acpi_cpufreq.txt"))["policies"]
    assert [p["name"] for p in policies] == ["cpu12", "cpu13", "cpu14"]
    assert {(p["governor"], p["min_freq_khz"], p["max_freq_khz"]) for p in policies} == {
        ("schedutil", 1400000, 2000000)
    }
    assert policies[0]["available_frequencies_khz"] == [2000000, 1700000, 1400000]
    assert (
        policies[2]["available_frequencies_khz"] == [] and "schedutil" in policies[2]["available_governors"]
    )


def test_getprop_indented_listing_and_a_windows_emulator_both_cut():
    nexus = parse("getprop", real("getprop/flutter_issue4009_nexus5_android51_indented_cut.txt"))
    assert (nexus["board_platform"], nexus["build_id"], nexus["hardware"]) == ("msm8974", "LMY06B", None)
    assert nexus["fingerprint"] == "google/hammerhead/hammerhead:5.1/LMY06B/1666863:userdebug/dev-keys"
    assert nexus["props"]["ro.build.date"] == "Tue Jan  6 22:40:00 UTC 2015"
    assert len(nexus["props"]) == 27 and "ro.build.user" not in nexus["props"]  # cut inside its value
    emulator = parse("getprop", real("getprop/native_run_issue45_emulator_windows_cut.txt"))
    assert (emulator["props"]["dalvik.vm.heapsize"], emulator["props"]["gsm.network.type"]) == ("384m", "LTE")
    assert len(emulator["props"]) == 37 and not any(
        k.startswith("init.svc.camera") for k in emulator["props"]
    )


@pytest.mark.parametrize("kind", list(PARSERS))
def test_a_refusal_says_what_was_looked_for_and_the_command_that_prints_it(kind):
    for text, said in (("", "the input is empty; capture the whole output of `"), ("hello\nworld\n", "no")):
        with pytest.raises(ParseError) as raised:
            parse(kind, text)
        message = str(raised.value)
        assert message.startswith(f"{kind}: {said}") and "\n" not in message
        assert message.endswith("`") and message.count("`") >= 2


# -- a block without the banner or header lines --------------------------------------------------------


def test_blocks_pasted_without_their_first_lines():
    tflite = real("tflite_benchmark_model/qemuriscv64_mobilenet_v1_op_profiling.txt")
    from_timings = parse("tflite-benchmark", tflite[tflite.index("Inference timings in us") :])
    assert (from_timings["avg_us"], from_timings["steady"], from_timings["memory_overall_mb"]) == (
        2950340,
        None,
        46.0859,
    )
    memory_only = parse(
        "tflite-benchmark", "Memory footprint delta from the start of the tool (MB): init=4.2 overall=46\n"
    )
    assert (memory_only["memory_init_mb"], memory_only["avg_us"]) == (4.2, None)

    meminfo = real("dumpsys_meminfo/honor_android14_memorylab_meminfo.txt")
    full = parse("dumpsys-meminfo", meminfo)
    no_banner = parse(
        "dumpsys-meminfo",
        meminfo.replace("** MEMINFO in pid 20602 [com.androidperformance.memorylab] **\n", ""),
    )
    assert (no_banner["pid"], no_banner["process"]) == (None, None)
    assert {**no_banner, "pid": 20602, "process": "com.androidperformance.memorylab"} == full
    rows_only = meminfo[
        meminfo.index("  Native Heap") : meminfo.index(" Dalvik Details")
    ]  # no column headers
    table = parse("dumpsys-meminfo", rows_only)  # named from the width (8: Android 12+), swap column left out
    assert table["columns"] == [name for name in full["columns"] if name != "swappss_dirty"]
    assert table["rows"] == [
        {**row, "values_kb": {k: v for k, v in row["values_kb"].items() if k != "swappss_dirty"}}
        for row in full["rows"]
    ]
    assert table["total_pss_kb"] == 337790
    summary_only = meminfo[meminfo.index("           Java Heap:") : meminfo.index("           TOTAL PSS")]
    assert (
        parse("dumpsys-meminfo", summary_only)["app_summary"] == full["app_summary"]
    )  # columns from the rows

    tegrastats = real("tegrastats/orin_nano_8gb_jp6_two_captures.txt")
    assert (
        parse("tegrastats", tegrastats.split("\n", 1)[1])["samples"]
        == parse("tegrastats", tegrastats)["samples"][1:]
    )
    mid_line = tegrastats[tegrastats.index("CPU [") :]  # a selection started in the middle of a line
    assert parse("tegrastats", mid_line)["samples"][0]["cpus"][0] == {"load_pct": 15, "freq_mhz": 729}

    ort = real("ort_perf_test/spacemit_k1_yolov8n_int8.txt")
    summary = parse("ort-perf-test", ort[ort.index("Avg CPU usage:48") :])  # the -s lines alone
    assert (summary["runs"], summary["p50_ms"], summary["avg_ms"]) == (10, pytest.approx(82.6095), None)

    thermal = real("dumpsys_thermalservice/shield_optimizer_issue6_shield_tv_cut.txt")
    readings = parse("dumpsys-thermalservice", thermal[thermal.index("        Temperature{") :])
    assert (readings["thermal_status"], len(readings["temperatures"]), readings["hal_ready"]) == (
        None,
        5,
        True,
    )


# -- prefixes, line ends ---------------------------------------------------------------------------------

PREFIXES = [
    "pixel8: ",
    "[run 3] ",
    "rpi5 | ",
    "2026-11-30T15:06:18.123Z ",
    "Nov 30 15:06:18 host edgelab[123]: ",
    "[  123.456789] ",
    "15:06:18.123 ",
    "11-30 15:06:18.123  4321  4321 I edgelab : ",
]


def prefixed(text: str, prefix: str) -> str:
    return "".join(prefix + line for line in text.splitlines(keepends=True))


@pytest.mark.parametrize(("kind", "name"), FIXTURES)
def test_labels_timestamps_and_crlf_change_nothing(kind, name):
    text = real(name)
    expected = parse(kind, text)
    assert parse(kind, text.replace("\n", "\r\n")) == expected
    for prefix in PREFIXES:
        assert parse(kind, prefixed(text, prefix)) == expected, prefix
    assert parse(kind, prefixed(prefixed(text, "15:06:18.123 "), "[run 3] ")) == expected


# -- a cut last line ---------------------------------------------------------------------------------------


def _outside(cut: Any, full: Any, exempt: set[str], inside_number: bool, path: str = "") -> list[str]:
    """What the cut result says that the whole one does not: a value changed or added. A value
    may be missing (None, a shorter list), a string may be a cut one, and a LINE_FINAL value may
    differ when the input was cut inside a number."""
    keys = set(path.split("."))
    if cut is None or keys & SUMS or (inside_number and exempt & keys):
        return []
    if isinstance(cut, dict):
        if not isinstance(full, dict):
            return [path]
        return [
            bad
            for key, value in cut.items()
            for bad in _outside(value, full.get(key), exempt, inside_number, f"{path}.{key}")
        ]
    if isinstance(cut, list):
        if not isinstance(full, list) or len(cut) > len(full):
            return [path]
        return [
            bad
            for i, (a, b) in enumerate(zip(cut, full, strict=False))
            for bad in _outside(a, b, exempt, inside_number, f"{path}.{i}")
        ]
    if isinstance(cut, str):
        return [] if isinstance(full, str) and full.startswith(cut) else [path]
    return [] if cut == full else [f"{path}: {cut!r} != {full!r}"]


@pytest.mark.parametrize(("kind", "name"), FIXTURES)
def test_a_cut_last_line_gives_what_is_whole_and_no_half_number(kind, name):
    text = real(name).rstrip("\n")
    full = parse(kind, text)
    last_line_at = text.rfind("\n") + 1
    try:
        parse(kind, text[:last_line_at])
        whole_lines_readable = True
    except ParseError:
        whole_lines_readable = False
    for cut in range(last_line_at, len(text)):
        piece = text[:cut]
        try:
            result = parse(kind, piece)
        except ParseError:
            assert not whole_lines_readable, f"refused after {piece[last_line_at:]!r}"
            continue
        inside_number = piece[-1:].isalnum() or piece.endswith(".")
        bad = _outside(result, full, LINE_FINAL.get(kind, set()), inside_number)
        assert not bad, f"cut after {piece[last_line_at:]!r}: {bad}"
