"""Board parsers: tegrastats on real Orin Nano captures and on JetPack 4 lines written from the
format; vcgencmd, /proc/PID/status and cpufreq dumps (the virtual board's own sysfs included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ParseError
from harness.probes.parsers.boards import parse_cpufreq, parse_proc_status, parse_tegrastats, parse_vcgencmd

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-outputs" / "tegrastats"


def test_tegrastats_orin_nano_jetpack6_two_captures():
    first, second = parse_tegrastats((REAL / "orin_nano_8gb_jp6_two_captures.txt").read_text()).samples
    assert first.timestamp == "11-15-2024 08:38:09"
    assert (
        first.ram_used_mb,
        first.ram_total_mb,
        first.swap_used_mb,
        first.swap_total_mb,
        first.swap_cached_mb,
    ) == (
        6185,
        7620,
        851,
        3810,
        1,
    )
    assert [c.load_pct for c in first.cpus] == [15, 11, 14, 13, 11, 8] and {
        c.freq_mhz for c in first.cpus
    } == {729}
    assert (first.emc_pct, first.emc_freq_mhz, first.gr3d_pct, first.gr3d_freq_mhz) == (43, 2133, 63, 621)
    assert first.engines_mhz["APE"] == 200 and first.engines_mhz["NVDEC"] is None
    assert first.temps_c == {
        "cpu": 53.968,
        "soc2": 52.437,
        "soc0": 50.75,
        "gpu": 53.343,
        "tj": 53.968,
        "soc1": 51.656,
    }
    assert {k: (r.current_mw, r.average_mw) for k, r in first.rails.items()} == {
        "VDD_IN": (12479, 12479),
        "VDD_CPU_GPU_CV": (4667, 4667),
        "VDD_SOC": (2817, 2817),
    }
    assert second.swap_cached_mb == 174 and second.emc_pct is None and second.gr3d_freq_mhz is None
    assert [c.freq_mhz for c in second.cpus] == [1420, 1420, 1420, 1420, 729, 729]
    assert second.total_power_mw == 4824


# Written from the format: JetPack 4 (Nano) with POM_ rails without units, cores off, -256C sentinel.
JP4 = (
    "RAM 1534/3956MB (lfb 93x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [12%@1479,7%@1479,off,off] EMC_FREQ 3%@1600 GR3D_FREQ 0%@921 APE 25 "
    "PLL@36.5C CPU@39C PMIC@100C GPU@37.5C AO@43C thermal@38.25C iwlwifi@-256C "
    "POM_5V_IN 2431/2431 POM_5V_GPU 0/0 POM_5V_CPU 411/411\r\n"
)


def test_tegrastats_jetpack4_units_offline_cores_and_sentinel():
    (sample,) = parse_tegrastats(JP4).samples
    assert sample.timestamp is None and sample.ram_used_mb == 1534
    assert [(c.load_pct, c.freq_mhz) for c in sample.cpus] == [
        (12, 1479),
        (7, 1479),
        (None, None),
        (None, None),
    ]
    assert "iwlwifi" not in sample.temps_c and sample.temps_c["cpu"] == 39 and sample.temps_c["pmic"] == 100
    assert sample.rails["POM_5V_IN"].current_mw == 2431 and sample.total_power_mw == 2431
    assert sample.gr3d_freq_mhz == 921


def test_tegrastats_rejects_other_text():
    with pytest.raises(ParseError, match="tegrastats: no line with 'RAM"):
        parse_tegrastats("Linux ubuntu 5.15.0-tegra\n")


def test_vcgencmd_decodes_throttled_bits_and_measurements():
    result = parse_vcgencmd("throttled=0x50005\ntemp=48.3'C\nfrequency(48)=1800404352\nvolt=0.8563V\n")
    assert result.throttled_raw == 0x50005 and result.throttled_now
    assert (
        result.flags["under_voltage_now"]
        and result.flags["throttled_now"]
        and result.flags["throttled_occurred"]
    )
    assert not result.flags["arm_freq_capped_now"] and not result.flags["soft_temp_limit_occurred"]
    assert (result.temp_c, result.frequencies_khz, result.voltages_mv) == (
        48.3,
        {"arm": 1800404},
        {"core": 856.3},
    )
    assert parse_vcgencmd("throttled=0x0").throttled_now is False
    with pytest.raises(ParseError, match="vcgencmd: no throttled="):
        parse_vcgencmd("VCHI initialization failed\n")


def test_proc_status_of_this_process():
    text = Path("/proc/self/status").read_text()
    result = parse_proc_status(text)
    assert result.name == "python" or result.name.startswith("python") or result.name == "pytest"
    assert (
        result.peak_rss_kb is not None
        and result.rss_kb is not None
        and result.peak_rss_kb >= result.rss_kb > 0
    )
    assert result.threads is not None and result.threads >= 1


def test_cpufreq_grep_dump_of_the_virtual_board(tmp_path):
    from harness.lab.profiles import PIXEL8
    from harness.lab.sensors import SensorModel

    model = SensorModel(PIXEL8, tmp_path / "sys", None, None)
    while not model.state.throttled:
        model.advance(1.0, cores_used=1.0)
    folder = tmp_path / "sys" / "devices" / "system" / "cpu" / "cpufreq"
    dump = "".join(
        f"/sys/devices/system/cpu/cpufreq/{f.parent.name}/{f.name}:{f.read_text().strip()}\n"
        for f in sorted(folder.glob("policy*/*"))
    )
    result = parse_cpufreq(dump)
    assert [p.name for p in result.policies] == ["policy0", "policy4", "policy8"]
    big = result.policies[2]
    assert (big.max_freq_khz, big.cpuinfo_max_freq_khz, big.capped, big.related_cpus) == (
        1600000,
        2910000,
        True,
        [8],
    )
    assert result.policies[0].governor == "schedutil" and result.policies[0].related_cpus == [0, 1, 2, 3]


def test_cpufreq_echo_form_and_legacy_cpu_paths():
    text = (
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq: 600000\n"
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_available_frequencies: 600000 1200000 1800000 \n"
        "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq: 1800000\n"
    )
    (policy,) = parse_cpufreq(text).policies
    assert (policy.name, policy.cur_freq_khz, policy.available_frequencies_khz) == (
        "cpu0",
        600000,
        [600000, 1200000, 1800000],
    )
    assert policy.capped is None
