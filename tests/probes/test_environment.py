"""Environment warnings from the agent's snapshot."""

from __future__ import annotations

from pathlib import Path

from harness.probes.environment import screen_on, thermal_status, warnings

SHIELD_TV = (
    Path(__file__).parents[1]
    / "fixtures/real-outputs/dumpsys_thermalservice/shield_optimizer_issue6_shield_tv_cut.txt"
)


def test_every_warning_with_its_evidence():
    env = {
        "governors": {"policy0": "schedutil", "policy4": "performance"},
        "battery": {"capacity_pct": 18, "status": "Charging"},
        "dumpsys_power": "  mWakefulness=Awake\nDisplay Power: state=ON\n",
        "dumpsys_thermalservice": "Thermal Status: 1\n",
        "vcgencmd": "throttled=0x50000\n",
        "virtual": False,
    }
    found = warnings(env, idle_busy_pct=37.0, virtual=True)
    codes = [w.split(":")[0] for w in found]
    assert codes == [
        "VIRTUAL-DEVICE",
        "LOW-BATTERY",
        "CHARGING",
        "GOVERNOR",
        "SCREEN-ON",
        "OTHER-LOAD",
        "THERMAL-STATUS",
        "PI-THROTTLE-FLAGS",
    ]
    assert "18% (< 25%)" in found[1] and "policy0=schedutil" in found[3] and "policy4" not in found[3]
    assert "37%" in found[5] and "throttled_occurred, under_voltage_occurred" in found[7]


def test_a_quiet_lab_phone_has_no_warnings():
    env = {
        "governors": {"policy0": "performance"},
        "battery": {"capacity_pct": 80, "status": "Discharging"},
        "dumpsys_power": "Display Power: state=OFF\n",
        "dumpsys_thermalservice": "Thermal Status: 0\n",
        "vcgencmd": "throttled=0x0\n",
    }
    assert warnings(env, idle_busy_pct=2.0, virtual=False) == []
    assert warnings(None, None, virtual=False) == []


def test_screen_state_from_either_line():
    assert screen_on("mWakefulness=Asleep") is False
    assert screen_on("Display Power: state=ON") is True
    assert screen_on("nothing") is None and screen_on(None) is None


def test_a_thermalservice_capture_is_parsed_once_however_often_it_is_asked():
    text = SHIELD_TV.read_text()
    thermal_status.cache_clear()
    assert [thermal_status(text) for _ in range(3)] == [0, 0, 0]
    assert (thermal_status.cache_info().misses, thermal_status.cache_info().hits) == (1, 2)
    assert thermal_status(text.replace("Thermal Status: 0", "Thermal Status: 3")) == 3
    assert thermal_status(None) is None and thermal_status("not a capture") is None
