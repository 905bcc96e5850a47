"""Cpu lists, taskset masks and core types, and the shell report the native runner prints,
run by the real sh, mksh and toybox's taskset on this host."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.probes.cpus import (
    CPU_REPORT_SCRIPT,
    CoreType,
    CpuPlacement,
    affinity_mask,
    format_cpu_list,
    group_core_types,
    parse_cpu_list,
    parse_cpu_report,
    placement,
    strip_cpu_report,
    taskset_prefix,
)


def test_cpu_lists_round_trip_through_the_kernel_syntax():
    assert parse_cpu_list("0-3,6") == (0, 1, 2, 3, 6)
    assert parse_cpu_list(" 4 - 7 ") == (4, 5, 6, 7)
    assert format_cpu_list([6, 0, 1, 2, 3]) == "0-3,6"
    assert format_cpu_list([1, 3, 5]) == "1,3,5" and format_cpu_list([2]) == "2"


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty item"), ("3-", "not a cpu number"), ("a", "not a cpu number"), ("5-2", "runs backwards")],
)
def test_bad_cpu_lists_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_cpu_list(text)


def test_masks_are_hex_for_util_linux_and_toybox():
    assert affinity_mask([4, 5, 6, 7]) == "f0" and affinity_mask([0]) == "1" and affinity_mask([1, 9]) == "202"
    assert taskset_prefix([4, 5]) == ["taskset", "30"] and taskset_prefix(None) == []


def test_core_types_group_big_and_little_cores():
    per_cpu = {0: (160, 1800000), 1: (160, 1800000), 4: (1024, 2850000), 5: (1024, 2850000), 6: (1024, 2850000)}
    groups, reason = group_core_types((6, 0, 1, 4, 5), per_cpu)
    assert reason is None and groups == {"0-1": CoreType(160, 1800000), "4-6": CoreType(1024, 2850000)}
    pinned = placement(3, requested=[4, 5, 6], pinned_by="taskset", allowed=[4, 5, 6], per_cpu=per_cpu)
    assert pinned == CpuPlacement(
        threads=3,
        requested="4-6",
        pinned_by="taskset",
        allowed="4-6",
        allowed_count=3,
        core_types={"4-6": CoreType(1024, 2850000)},
    )
    unknown = placement(1, requested=None, pinned_by=None, allowed=None, per_cpu={}, allowed_reason="no /proc")
    assert (unknown.allowed, unknown.allowed_reason, unknown.core_types_reason) == (
        None,
        "no /proc",
        "the allowed cpus are unknown",
    )


def test_core_types_are_none_with_a_reason_where_sysfs_has_neither():
    groups, reason = group_core_types((0, 1), {0: (None, None)})
    assert groups is None
    assert reason == "sysfs has neither cpu_capacity nor cpufreq/cpuinfo_max_freq for cpus 0-1"


def run_report(*prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, "-c", CPU_REPORT_SCRIPT, "edgelab-native", "sh", "-c", "echo tool ran; echo tool log >&2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.mark.parametrize("shell", ["sh", "mksh"])
def test_the_report_script_reads_this_host_and_execs_the_tool(shell):
    if shutil.which(shell) is None:
        pytest.fail(f"{shell} is not installed (apt-get install -y mksh)")
    done = run_report(shell)
    assert done.stdout == "tool ran\n"
    assert strip_cpu_report(done.stderr) == "tool log"
    allowed, per_cpu = parse_cpu_report(done.stderr)
    assert allowed == tuple(sorted(os.sched_getaffinity(0)))
    online = sorted(int(name[3:]) for name in os.listdir("/sys/devices/system/cpu") if name[3:].isdigit())
    assert sorted(per_cpu) == online
    for cpu, (capacity, max_khz) in per_cpu.items():
        path = f"/sys/devices/system/cpu/cpu{cpu}/cpu_capacity"
        expected = int(Path(path).read_text()) if os.path.exists(path) else None
        assert capacity == expected
        assert max_khz is None or max_khz > 0


def test_toybox_taskset_in_front_pins_the_tool():
    done = run_report("toybox", "taskset", affinity_mask([0]), "sh")
    assert parse_cpu_report(done.stderr)[0] == (0,)


def test_malformed_report_lines_are_errors():
    with pytest.raises(ValueError, match="malformed cpu report line"):
        parse_cpu_report("edgelab-cpu: core x")
