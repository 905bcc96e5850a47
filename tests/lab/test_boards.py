"""Virtual Linux boards: a real sshd in its own network namespace, a chroot root with the
board's sysfs layout, reached through EdgeLab's SSH transport."""

from __future__ import annotations

import subprocess

import pytest

from harness.lab import network
from harness.transport.ssh import SshTransport


@pytest.fixture(scope="module")
def board(lab, lab_fleet):
    device = next(d for d in lab.state().devices if d.profile == "rpi5")
    connection = SshTransport(lab_fleet[device.name])
    yield device, connection
    connection.close()


def shell(connection, script: str) -> str:
    result = connection.run(["sh", "-c", script], timeout=30)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_board_lives_in_its_own_network_namespace(board):
    device, _ = board
    link = network.BoardLink(device.board_index)
    assert device.host == link.board_address and device.port == 22
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert link.namespace in listed
    qdisc = subprocess.run(
        ["tc", "qdisc", "show", "dev", link.host_interface], capture_output=True, text=True, check=True
    )
    assert "tbf" in qdisc.stdout and "rate 1Gbit" in qdisc.stdout


def test_board_sysfs_follows_the_raspberry_pi_layout(board):
    _, connection = board
    assert shell(connection, "cat /sys/class/thermal/thermal_zone0/type") == "cpu-thermal\n"
    policy = "/sys/devices/system/cpu/cpufreq/policy0"
    values = shell(
        connection, f"cat {policy}/cpuinfo_max_freq {policy}/related_cpus {policy}/scaling_governor"
    ).split("\n")
    assert values[:3] == ["2400000", "0 1 2 3", "schedutil"]
    temperature = int(shell(connection, "cat /sys/class/thermal/thermal_zone0/temp"))
    assert 20_000 <= temperature <= 100_000


def test_board_rapl_counter_advances(board):
    _, connection = board
    script = "cat /sys/class/powercap/intel-rapl:0/energy_uj; sleep 1; cat /sys/class/powercap/intel-rapl:0/energy_uj"
    first, second = (int(v) for v in shell(connection, script).split())
    assert second > first


def test_board_root_is_read_only_except_home_and_tmp(board):
    _, connection = board
    assert connection.run(["touch", "/usr/edgelab-probe"], timeout=30).exit_code != 0
    assert shell(connection, "echo ok > /home/probe && cat /home/probe && rm /home/probe") == "ok\n"
    assert shell(connection, "cat /proc/self/cgroup | grep -c edgelab").strip() != "0"


def test_board_process_is_metered_in_its_cgroup(board, lab):
    device, connection = board
    from harness.lab.sensors import DeviceCgroup

    group = DeviceCgroup(device.cgroup)
    assert group.quota_cores() == pytest.approx(0.5)
    before = group.usage_ns()
    shell(connection, "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
    assert group.usage_ns() - before > 10_000_000  # the loop's CPU time was counted for the board
