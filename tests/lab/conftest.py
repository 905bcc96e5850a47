"""One virtual lab (virtual-pixel8, virtual-rpi5) shared by the lab tests of this session.

Real components: the adb server (adbutils' binary), the Python adbd, OpenSSH sshd in a network
namespace, cgroup v1 quotas. Short thermal time constant (2 s) so throttling shows in seconds.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.config import Fleet
from harness.lab.manager import VirtualLab

LAB_TAU_S = 2.0


def lab_root(tag: str) -> Path:
    # sshd's ChrootDirectory refuses world-writable parents such as /tmp.
    base = Path.home() / ".cache" / "edgelab" / "test-labs"
    base.mkdir(parents=True, exist_ok=True)
    if not _SWEPT:
        _SWEPT.extend(sweep_dead_labs(base))
    return base / f"{tag}-{os.getpid()}"


_SWEPT: list[Path] = []  # once per test process


def sweep_dead_labs(base: Path) -> list[Path]:
    """Labs of test processes that died without their teardown (a killed or timed-out run): a
    folder "<tag>-<pid>" whose pid is gone. Each lab.json in it is taken down (its cgroups, mount
    and network namespaces would otherwise stay on the host), then the folder is removed; one
    that does not come down cleanly is kept, with its reason on stderr. A live pid, or a reused
    one, keeps its folder. Returns the folders removed."""
    removed: list[Path] = []
    for folder in sorted(base.iterdir()):
        tag, _, pid = folder.name.rpartition("-")
        if not folder.is_dir() or not tag or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive (or a reused pid): not ours to touch
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            for state in [folder / "lab.json", *folder.glob("*/lab.json")]:
                if state.exists():
                    VirtualLab(state.parent).down(purge=True)
        except Exception as exc:  # a sweep never fails a test session
            print(f"left {folder}: {exc}", file=sys.stderr)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@pytest.fixture(scope="session")
def lab() -> Iterator[VirtualLab]:
    if os.geteuid() != 0:
        pytest.skip("the virtual lab tests need root (namespaces, cgroups, veth links)")
    root = lab_root("shared")
    virtual = VirtualLab(root)
    try:
        virtual.up(["pixel8", "rpi5"], tau_s=LAB_TAU_S)
        yield virtual
    finally:
        virtual.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def lab_fleet(lab: VirtualLab) -> Fleet:
    return lab.fleet()
