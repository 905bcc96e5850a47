"""Lab lifecycle: up, status, down with nothing left (also after a killed supervisor and after
a failing test session), clear errors, and the lab's devices merged into the fleet."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.config import load_fleet
from harness.errors import ConfigError
from harness.lab import network
from harness.lab.manager import LabError, VirtualLab
from harness.lab.sandbox import MEMORY_ROOT
from harness.lab.sensors import DeviceCgroup
from harness.transport import open_transport
from harness.transport.ssh import SshTransport
from tests.lab.conftest import lab_root

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the lab lifecycle needs root")


def netns_names() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def assert_nothing_left(lab: VirtualLab, pids: list[int], namespaces: list[str], cgroups: list[str]) -> None:
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not set(namespaces) & netns_names()
    for name in cgroups:
        group = DeviceCgroup(name)
        assert not group.cpu.exists() and not group.cpuacct.exists()
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        assert not [line for line in handle if str(lab.root) in line]
    assert lab.state() is None and not lab.devices_file.exists()


@needs_root
def test_up_status_down_leaves_nothing():
    lab = VirtualLab(lab_root("lifecycle"))
    try:
        state = lab.up(["pixel8", "rpi5"])
        rows = {row.name: row for row in lab.status()}
        assert set(rows) == {"virtual-pixel8", "virtual-rpi5"}
        assert (
            rows["virtual-pixel8"].connection == "device" and rows["virtual-rpi5"].connection == "listening"
        )
        assert rows["virtual-rpi5"].cpu_quota == pytest.approx(0.5)
        assert all(row.alive and row.temp_c is not None for row in rows.values())
        pids = [state.adb_pid, *(device.pid for device in state.devices)]
        namespaces = [device.namespace for device in state.devices if device.namespace]
        cgroups = [device.cgroup for device in state.devices]
        assert namespaces and all(DeviceCgroup(name).cpu.exists() for name in cgroups)
        # each device's /sys in memory (tmpfs), as a kernel's: the sensor values and dumpsys there
        memory = [(Path(device.state_dir) / "sys").resolve() for device in state.devices]
        assert all(folder.parent == MEMORY_ROOT for folder in memory)
        assert all((folder / "edgelab" / "state").is_file() for folder in memory)
        assert (memory[0] / "edgelab" / "dumpsys" / "thermalservice").is_file()  # the phone's
        with pytest.raises(LabError, match="already up in .*; run `edgelab lab down` first"):
            lab.up(["pixel8"])
    finally:
        lab.down(purge=True)
    assert_nothing_left(lab, pids, namespaces, cgroups)
    assert not [folder for folder in memory if folder.exists()]
    shutil.rmtree(lab.root, ignore_errors=True)


@needs_root
def test_down_cleans_up_after_a_killed_supervisor():
    lab = VirtualLab(lab_root("killed"))
    try:
        state = lab.up(["jetson-orin-nano"])
        board = state.devices[0]
        jetson = SshTransport(lab.fleet()["virtual-jetson-orin-nano"])
        hwmon = "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
        labels = jetson.run(["sh", "-c", f"cat {hwmon}/in*_label"], timeout=30).stdout.split()
        jetson.close()
        assert labels == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
        os.kill(board.pid, signal.SIGKILL)  # no chance to stop sshd or remove its network
        deadline = time.monotonic() + 10
        while Path(f"/proc/{board.pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        status = lab.status()[0]
        assert not status.alive and status.connection == "down"
        assert network.exists(network.BoardLink(board.board_index))  # left behind until down
    finally:
        cleaned = lab.down(purge=True)
    assert any("netns" in line for line in cleaned)
    assert_nothing_left(lab, [board.pid], [board.namespace or ""], [board.cgroup])
    shutil.rmtree(lab.root, ignore_errors=True)


@needs_root
def test_restart_brings_a_killed_device_back_at_the_same_address():
    """A reboot: the phone's supervisor (its adbd) and the board's sshd SIGKILLed; ``restart`` kills
    what they left running, and each device answers again at the address the devices file gives."""
    lab = VirtualLab(lab_root("restart"))
    try:
        state = lab.up(["pixel8", "rpi5"])
        phone, board = state.devices
        devices_file = lab.devices_file.read_text()
        known_hosts = lab.known_hosts.read_text()
        orphan = subprocess.Popen(["sleep", "300"], preexec_fn=DeviceCgroup(phone.cgroup).enter)  # noqa: PLW1509
        os.kill(phone.pid, signal.SIGKILL)  # an agent the phone ran stays behind in its cgroup
        sshd = int((Path(board.state_dir) / "ssh" / "sshd.pid").read_text().split()[0])
        os.kill(sshd, signal.SIGKILL)
        lab.restart("virtual-pixel8")
        lab.restart("virtual-rpi5")
        assert orphan.wait(10) == -signal.SIGKILL
        restarted = {device.name: device for device in lab.state().devices}
        assert restarted["virtual-pixel8"].pid != phone.pid and restarted["virtual-pixel8"].port == phone.port
        assert lab.devices_file.read_text() == devices_file and lab.known_hosts.read_text() == known_hosts
        assert {row.name: row.connection for row in lab.status()} == {
            "virtual-pixel8": "device",
            "virtual-rpi5": "listening",
        }
        fleet = lab.fleet()
        for name in ("virtual-pixel8", "virtual-rpi5"):
            transport = open_transport(fleet[name])
            assert transport.run(["echo", "back"], timeout=30, check=True).stdout == "back\n"
            transport.close()
        with pytest.raises(LabError, match="no device 'virtual-jetson' in this lab .*virtual-pixel8"):
            lab.restart("virtual-jetson")
    finally:
        lab.down(purge=True)
    shutil.rmtree(lab.root, ignore_errors=True)


@needs_root
def test_a_failing_session_still_tears_its_lab_down(pytester):
    pytester.makepyfile(
        """
        def test_uses_the_lab_then_fails(virtual_lab):
            fleet = virtual_lab.fleet()
            assert "virtual-pixel8" in fleet
            (__import__("pathlib").Path("lab-root.txt")).write_text(str(virtual_lab.root))
            assert False, "this test fails on purpose"
        """
    )
    result = pytester.runpytest_subprocess("--lab-profiles=pixel8,rpi5", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    root = Path((pytester.path / "lab-root.txt").read_text())
    lab = VirtualLab(root)
    assert not root.exists()
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        assert not [line for line in handle if str(root) in line]
    assert not DeviceCgroup(lab.lab_id).cpu.exists()


def test_unknown_profile_names_the_known_ones(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"unknown lab profile 'pixel9' \(known: pixel8, pixel8-stock, rpi5, jetson-orin-nano\)",
    ):
        VirtualLab(tmp_path / "lab").up(["pixel9"])


@needs_root
def test_lab_folder_under_a_world_writable_parent_is_refused(tmp_path):
    with pytest.raises(LabError, match="group/world-writable.*EDGELAB_LAB_DIR"):
        VirtualLab(tmp_path / "lab").up(["rpi5"])
    assert not (tmp_path / "lab" / "lab.json").exists()


DEVICES = """
devices:
  rpi5:
    kind: ssh
    host: rpi5.lab
    user: pi
"""

LAB_DEVICES = """
devices:
  virtual-pixel8:
    kind: adb
    serial: 127.0.0.1:40001
    adb_port: 40000
    connect: true
    virtual: true
    tags: [android, virtual]
"""


def test_lab_devices_are_merged_into_the_fleet(tmp_path):
    devices, lab_file = tmp_path / "devices.yaml", tmp_path / "lab-devices.yaml"
    devices.write_text(DEVICES)
    lab_file.write_text(LAB_DEVICES)
    fleet = load_fleet(devices, lab_file=lab_file)
    assert fleet.names() == ["local", "rpi5", "virtual-pixel8"]
    assert fleet["virtual-pixel8"].virtual
    assert [d.name for d in fleet.select("tag:virtual")] == ["virtual-pixel8"]
    assert str(lab_file) in fleet.source
    assert load_fleet(devices, lab_file=tmp_path / "absent.yaml").names() == ["local", "rpi5"]


def test_a_name_in_both_files_is_an_error_naming_both(tmp_path):
    devices, lab_file = tmp_path / "devices.yaml", tmp_path / "lab-devices.yaml"
    devices.write_text(LAB_DEVICES)
    lab_file.write_text(LAB_DEVICES)
    with pytest.raises(
        ConfigError, match="'virtual-pixel8' is also defined by the virtual lab in .*lab-devices.yaml"
    ):
        load_fleet(devices, lab_file=lab_file)
