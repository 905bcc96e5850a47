"""tegrastats: the real Orin Nano capture (see its .source.txt note) and hand-written JetPack variants."""

from __future__ import annotations

import pytest

from harness.errors import ParseError
from harness.parsers.jetson import parse_tegrastats
from tests.parsers.samples import (
    TEGRASTATS_JP4_NANO,
    TEGRASTATS_JP4_XAVIER,
    TEGRASTATS_JP5_AGX_ORIN,
    VCGENCMD_ALL,
    crlf,
    real,
)

ORIN_NANO = "tegrastats/orin_nano_8gb_jp6_two_captures.txt"


def test_orin_nano_jp6_capture_line_one():
    samples = parse_tegrastats(real(ORIN_NANO)).samples
    assert len(samples) == 2
    first = samples[0]
    assert first.timestamp == "2024-11-15T08:38:09"
    assert (first.ram_used_mb, first.ram_total_mb, first.lfb_blocks, first.lfb_block_mb) == (6185, 7620, 8, 2)
    assert (first.swap_used_mb, first.swap_total_mb, first.swap_cached_mb) == (851, 3810, 1)
    assert [(c.load_pct, c.freq_mhz) for c in first.cpus] == [(15, 729), (11, 729), (14, 729), (13, 729), (11, 729), (8, 729)]
    assert all(c.online for c in first.cpus)
    assert first.cpu_load_avg_pct == 12.0
    assert (first.emc_pct, first.emc_freq_mhz) == (43, 2133)
    assert (first.gr3d_pct, first.gr3d_freq_mhz, first.gr3d_freqs_mhz) == (63, 621, [621])
    assert first.engines["APE"].freq_mhz == 200 and first.engines["APE"].online
    for engine in ("NVDEC", "NVJPG", "NVJPG1", "VIC", "OFA"):
        assert first.engines[engine].online is False and first.engines[engine].freq_mhz is None
    assert first.temps_c == {"cpu": 53.968, "soc2": 52.437, "soc0": 50.75, "gpu": 53.343, "tj": 53.968, "soc1": 51.656}
    assert {name: (r.current_mw, r.average_mw) for name, r in first.rails.items()} == {
        "VDD_IN": (12479, 12479),
        "VDD_CPU_GPU_CV": (4667, 4667),
        "VDD_SOC": (2817, 2817),
    }
    assert first.input_power_mw == 12479


def test_orin_nano_jp6_capture_line_two():
    second = parse_tegrastats(real(ORIN_NANO)).samples[1]
    assert second.timestamp == "2025-06-18T11:25:24"
    assert (second.ram_used_mb, second.ram_total_mb) == (3452, 7620)
    assert (second.swap_used_mb, second.swap_total_mb, second.swap_cached_mb) == (1518, 16384, 174)
    assert [(c.load_pct, c.freq_mhz) for c in second.cpus] == [(1, 1420), (2, 1420), (0, 1420), (2, 1420), (2, 729), (1, 729)]
    assert second.emc_pct is None and second.emc_freq_mhz is None  # no EMC_FREQ in this line
    assert (second.gr3d_pct, second.gr3d_freq_mhz) == (0, None)  # "GR3D_FREQ 0%"
    assert second.engines == {}
    assert second.temps_c == {"cpu": 50.031, "soc2": 49.031, "soc0": 50.0, "gpu": 49.031, "tj": 50.25, "soc1": 50.25}
    assert {name: (r.current_mw, r.average_mw) for name, r in second.rails.items()} == {
        "VDD_IN": (4824, 4824),
        "VDD_CPU_GPU_CV": (518, 518),
        "VDD_SOC": (1475, 1475),
    }


def test_crlf_and_blank_lines():
    text = real(ORIN_NANO)
    assert parse_tegrastats(crlf("\n" + text.replace("\n", "\n\n"))) == parse_tegrastats(text)


def test_jp4_nano_pom_rails_iram_and_off_cores():
    # written from the format, not captured
    sample = parse_tegrastats(TEGRASTATS_JP4_NANO).samples[0]
    assert sample.timestamp is None
    assert (sample.ram_used_mb, sample.ram_total_mb, sample.lfb_blocks, sample.lfb_block_mb) == (1553, 3964, 383, 4)
    assert (sample.iram_used_kb, sample.iram_total_kb) == (0, 252)
    assert [(c.online, c.load_pct, c.freq_mhz) for c in sample.cpus] == [
        (True, 7, 102),
        (True, 3, 102),
        (False, None, None),
        (False, None, None),
    ]
    assert sample.cpu_load_avg_pct == 5.0
    assert (sample.emc_pct, sample.emc_freq_mhz, sample.gr3d_pct, sample.gr3d_freq_mhz) == (0, 1600, 0, 76)
    assert sample.temps_c == {"pll": 23.5, "cpu": 26, "pmic": 100, "gpu": 24.5, "ao": 31, "thermal": 25.25}
    assert {name: (r.current_mw, r.average_mw) for name, r in sample.rails.items()} == {
        "POM_5V_IN": (1583, 1600),
        "POM_5V_GPU": (0, 0),
        "POM_5V_CPU": (198, 205),
    }
    assert sample.input_power_mw == 1583


def test_jp4_xavier_unprefixed_rails():
    # written from the format, not captured
    sample = parse_tegrastats(TEGRASTATS_JP4_XAVIER).samples[0]
    assert len(sample.cpus) == 8 and sum(c.online for c in sample.cpus) == 4
    assert {name: r.current_mw for name, r in sample.rails.items()} == {
        "GPU": 0,
        "CPU": 306,
        "SOC": 1072,
        "CV": 0,
        "VDDRQ": 153,
        "SYS5V": 1524,
    }
    assert sample.input_power_mw is None
    assert sample.temps_c["tdiode"] == 39.5 and sample.temps_c["cpu"] == 37.5
    assert set(sample.engines) == {"APE"}  # "MTS fg 0% bg 0%" is not an engine


def test_jp5_agx_orin_sentinels_dropped():
    # written from the format, not captured
    sample = parse_tegrastats(TEGRASTATS_JP5_AGX_ORIN).samples[0]
    assert sample.timestamp == "2023-08-01T10:11:12"
    assert sample.temps_c == {
        "cpu": 44.937,
        "tboard": 33,
        "soc2": 41.406,
        "tdiode": 34.5,
        "soc0": 41.843,
        "tj": 44.937,
        "soc1": 40.812,
    }
    assert "gpu" not in sample.temps_c and "cv0" not in sample.temps_c  # -256C: no sensor
    assert (sample.gr3d_freq_mhz, sample.gr3d_freqs_mhz) == (305, [305, 305])
    assert sample.engines["VIC"].freq_mhz == 729
    assert sample.rails["VDD_GPU_SOC"].current_mw == 2797
    assert sample.rails["VDDQ_VDD2_1V8AO"].average_mw == 302
    assert sample.input_power_mw is None


def test_many_lines_one_sample_each():
    text = "\n".join([TEGRASTATS_JP4_NANO] * 3 + [TEGRASTATS_JP5_AGX_ORIN]) + "\n"
    samples = parse_tegrastats(text).samples
    assert [s.ram_used_mb for s in samples] == [1553, 1553, 1553, 2893]


def test_errors():
    with pytest.raises(ParseError, match="^tegrastats: the input is empty"):
        parse_tegrastats("")
    with pytest.raises(ParseError, match=r"^tegrastats: no line with 'RAM used/totalMB' or 'CPU \[...\]'.*Jetson"):
        parse_tegrastats(VCGENCMD_ALL)
