"""One virtual lab (virtual-pixel8, virtual-rpi5) shared by the lab tests of this session.

Real components: the adb server (adbutils' binary), the Python adbd, OpenSSH sshd in a network
namespace, cgroup v1 quotas. Short thermal time constant (2 s) so throttling shows in seconds.
"""

from __future__ import annotations

import os
import shutil
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
    return base / f"{tag}-{os.getpid()}"


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
