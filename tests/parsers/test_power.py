"""power-supply and odpm. All inputs here are written from the format, not captured."""

from __future__ import annotations

import pytest

from harness.errors import ParseError
from harness.parsers.power import parse_odpm, parse_power_supply
from tests.parsers.samples import (
    CPUFREQ_GREP,
    ODPM_ENABLED_RAILS,
    ODPM_TWO_DEVICES,
    ODPM_WITH_SUBSYSTEM,
    POWER_SUPPLY_COLON,
    POWER_SUPPLY_GREP,
    POWER_SUPPLY_UEVENT,
    VCGENCMD_ALL,
    crlf,
)

# ---- power-supply --------------------------------------------------------------------------


def test_uevent():
    result = parse_power_supply(POWER_SUPPLY_UEVENT)
    assert (result.name, result.type, result.status, result.health) == ("battery", "Battery", "Discharging", "Good")
    assert result.present is True and result.online is None
    assert result.technology == "Li-ion"
    assert result.capacity_pct == 78
    assert (result.voltage_now_uv, result.voltage_mv) == (3987000, 3987.0)
    assert (result.current_now_ua, result.current_avg_ua) == (-512000, -498000)  # raw, sign as reported
    assert (result.current_unit, result.current_now_ma) == ("ua", -512.0)
    assert result.power_mw == 2041.344  # 3.987 V x 512 mA
    assert (result.temp_raw, result.temp_c) == (301, 30.1)
    assert result.charge_counter_uah == 3604000
    assert (result.charge_full_uah, result.charge_full_design_uah, result.cycle_count) == (4520000, 4614000, 187)
    assert result.fields["charge_full"] == "4520000"


def test_grep_listing_with_vendor_milliamps():
    result = parse_power_supply(POWER_SUPPLY_GREP)
    assert result.name == "battery"  # from the uevent line grep printed
    assert (result.capacity_pct, result.status, result.type) == (64, "Charging", "Battery")
    assert result.voltage_now_uv == 4102000
    assert (result.current_now_ua, result.current_unit, result.current_now_ma) == (734, "ma", 734.0)
    assert result.power_mw == 3010.868  # 4.102 V x 734 mA
    assert result.temp_c == 25.4
    assert result.charge_counter_uah == 2987000
    assert result.cycle_count is None and result.current_avg_ua is None


def test_colon_listing_zero_current():
    result = parse_power_supply(crlf(POWER_SUPPLY_COLON))
    assert (result.capacity_pct, result.status) == (100, "Full")
    assert (result.voltage_now_uv, result.current_now_ua, result.current_unit) == (4380000, 0, "ua")
    assert result.power_mw == 0
    assert result.temp_c == 31.2
    assert result.name is None and result.health is None


def test_name_equals_value_listing_in_millivolts():
    result = parse_power_supply("voltage_now=3850\ncurrent_now=-1200\ncapacity=50\n")
    assert (result.voltage_now_uv, result.voltage_mv) == (3850000, 3850.0)
    assert (result.current_now_ua, result.current_now_ma) == (-1200, -1200.0)
    assert result.power_mw == 4620.0
    assert result.temp_c is None


def test_missing_current_gives_no_power():
    result = parse_power_supply("POWER_SUPPLY_CAPACITY=12\nPOWER_SUPPLY_VOLTAGE_NOW=3600000\n")
    assert result.capacity_pct == 12 and result.current_now_ua is None and result.power_mw is None


def test_power_supply_errors():
    with pytest.raises(ParseError, match="^power-supply: the input is empty"):
        parse_power_supply("\n\n")
    for other in (VCGENCMD_ALL, CPUFREQ_GREP, ODPM_TWO_DEVICES):
        with pytest.raises(ParseError, match=r"^power-supply: no POWER_SUPPLY_\* .*uevent"):
            parse_power_supply(other)


# ---- odpm ----------------------------------------------------------------------------------


def test_energy_value_two_iio_devices():
    result = parse_odpm(ODPM_TWO_DEVICES)
    assert result.timestamp_ms == 3357178
    assert result.timestamps_ms == [3357178, 3357181]
    assert [(r.channel, r.name, r.timestamp_ms, r.energy_uws) for r in result.rails] == [
        (0, "S10M_VDD_TPU", 3357178, 145297851),
        (1, "VSYS_PWR_MODEM", 3357178, 1524419766),
        (2, "VSYS_PWR_RFFE", 3357178, 43416270),
        (3, "S2M_VDD_CPUCL2", 3357178, 658207441),
        (0, "S4M_VDD_CPUCL0", 3357181, 929484027),
        (1, "S5M_VDD_INT", 3357181, 556180467),
        (2, "S1M_VDD_MIF", 3357181, 577563617),
        (3, "VSYS_PWR_DISPLAY", 3357181, 1090563211),
    ]
    assert all(rail.subsystem is None for rail in result.rails)
    assert result.total_energy_uws == 5525132650


def test_energy_value_with_subsystem_names_crlf_and_logcat_free_blank_lines():
    result = parse_odpm(crlf("\n" + ODPM_WITH_SUBSYSTEM.replace("\n", "\n\n")))
    assert result.timestamp_ms == 120044
    assert [(r.channel, r.name, r.subsystem, r.energy_uws) for r in result.rails] == [
        (0, "VSYS_PWR_DISPLAY", "Display", 31415926),
        (1, "S2M_VDD_CPUCL2", "CPU(BIG)", 27182818),
    ]
    assert result.total_energy_uws == 58598744


def test_enabled_rails():
    result = parse_odpm(ODPM_ENABLED_RAILS)
    assert result.timestamp_ms is None
    assert [(r.channel, r.name, r.subsystem, r.energy_uws) for r in result.rails] == [
        (0, "S10M_VDD_TPU", "TPU", None),
        (1, "VSYS_PWR_MODEM", "Modem", None),
        (2, "S2M_VDD_CPUCL2", "CPU(BIG)", None),
    ]
    assert result.total_energy_uws is None


def test_file_names_between_files_are_skipped():
    text = "/sys/bus/iio/devices/iio:device0/energy_value\n" + ODPM_WITH_SUBSYSTEM
    assert parse_odpm(text) == parse_odpm(ODPM_WITH_SUBSYSTEM)


def test_odpm_errors():
    with pytest.raises(ParseError, match="^odpm: the input is empty"):
        parse_odpm("")
    with pytest.raises(ParseError, match="^odpm: unexpected line 'cat: .*Permission denied'.*energy_value"):
        parse_odpm("cat: /sys/bus/iio/devices/iio:device0/energy_value: Permission denied\n")
    with pytest.raises(ParseError, match=r"^odpm: no 'CHn\(T=...\)\[RAIL\], energy' line found"):
        parse_odpm("t=12345\n")
    with pytest.raises(ParseError, match="^odpm: "):
        parse_odpm(POWER_SUPPLY_UEVENT)
