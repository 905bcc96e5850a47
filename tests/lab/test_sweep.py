"""The lab tests' sweep of labs left by test processes that died without their teardown."""

from __future__ import annotations

import os
import subprocess

from tests.lab.conftest import sweep_dead_labs


def test_only_the_folders_of_dead_test_processes_are_swept(tmp_path):
    ended = subprocess.Popen(["true"])
    ended.wait()  # its pid is free now: a test process that died
    folders = {
        "dead": tmp_path / f"shared-{ended.pid}",
        "ours": tmp_path / f"faults-{os.getpid()}",
        "alive": tmp_path / "soak-1",  # pid 1 runs: alive, or a reused pid, is never touched
        "untagged": tmp_path / "rackdbg",
    }
    for folder in folders.values():
        (folder / "devices").mkdir(parents=True)
        (folder / "lab.log").write_text("kept\n")
    assert sweep_dead_labs(tmp_path) == [folders["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        folders[k].name for k in ("ours", "alive", "untagged")
    )
