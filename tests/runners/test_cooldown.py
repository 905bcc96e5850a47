"""Host-side cooldown for the native runner: the hottest zone the shell can read, else the thermal
HAL's temperatures from ``dumpsys thermalservice`` (a phone whose SELinux policy hides its zones).
The device is this host through the local transport; its /sys has no thermal zone here, so the
fallback is what runs when a ``dumpsys`` is on the PATH."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.runners.cooldown import hottest_zone_c, wait_until_cool
from harness.transport.local import LocalTransport

# Written by hand in Android 14's layout (ThermalManagerService.dump), as the parser tests do.
THERMALSERVICE = """IsStatusOverride: false
Thermal Status: 0
HAL Ready: true
Current temperatures from HAL:
\tTemperature{mValue=33.5, mType=3, mName=skin, mStatus=0}
\tTemperature{mValue=41.25, mType=0, mName=BIG, mStatus=0}
"""

pytestmark = pytest.mark.skipif(
    any(Path("/sys/class/thermal").glob("thermal_zone*/temp")), reason="this host has readable thermal zones"
)


@pytest.fixture
def phone_dumpsys(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "thermal.txt").write_text(THERMALSERVICE)
    dumpsys = folder / "dumpsys"
    dumpsys.write_text(f'#!/bin/sh\n[ "$1" = thermalservice ] && cat {folder / "thermal.txt"}\n')
    dumpsys.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return folder / "thermal.txt"


def test_the_thermal_hal_stands_in_for_hidden_zones(phone_dumpsys):
    assert hottest_zone_c(LocalTransport("phone")) == 41.25


def test_the_wait_reads_the_hal_until_it_is_cool(phone_dumpsys):
    cooldown = wait_until_cool(LocalTransport("phone"), 45.0, 10.0, poll_s=0.01)
    assert (cooldown.start_c, cooldown.end_c, cooldown.reached, cooldown.waited_s < 10.0) == (
        41.25,
        41.25,
        True,
        True,
    )
    hot = wait_until_cool(LocalTransport("phone"), 40.0, 0.05, poll_s=0.01)
    assert (hot.start_c, hot.reached) == (41.25, False)


def test_a_device_with_neither_says_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    if Path("/usr/bin/dumpsys").exists() or Path("/bin/dumpsys").exists():
        pytest.skip("this host has a dumpsys")
    assert hottest_zone_c(LocalTransport("board")) is None
