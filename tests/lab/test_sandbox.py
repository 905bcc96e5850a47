"""A device's persistent mount namespace, made from inside another mount namespace (as a lab
host in `ip netns exec` does). Real namespaces, real unshare and taskset: root and 2 CPUs."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

NS_GET_MNTNS_ID = 0x8008B705  # _IOR(0xb7, 0x5, __u64), Linux >= 6.11


def mount_ns_id(path: str) -> int:
    """The kernel's id of the mount namespace at ``path`` (OSError where it does not tell)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return int(struct.unpack("Q", fcntl.ioctl(fd, NS_GET_MNTNS_ID, b"\0" * 8))[0])
    finally:
        os.close(fd)


SCRIPT = r"""
import json, os, subprocess, sys
from pathlib import Path
from harness.lab.sandbox import DeviceRoot
from tests.lab.test_sandbox import mount_ns_id

folder, low = Path(sys.argv[1]), sys.argv[2]
probe = folder / "probe"
probe.mkdir()
subprocess.run(["mount", "--bind", str(probe), str(probe)], check=True)
subprocess.run(["mount", "--make-private", str(probe)], check=True)
(probe / "mnt").touch()
plain = subprocess.run(
    ["unshare", f"--mount={probe / 'mnt'}", "--propagation", "private", "true"], capture_output=True, text=True
)
root = DeviceRoot(folder / "device", writable={"/data": "data"}, isolate=True)
root.prepare()
seen = subprocess.run(
    ["nsenter", f"--mount={root.nsfile}", "ls", str(root.rootfs / "data")], capture_output=True, text=True
)
print(json.dumps({
    "caller_ns": mount_ns_id("/proc/self/ns/mnt"),
    "cpus": sorted(os.sched_getaffinity(0)),
    "plain_refused": plain.returncode != 0 and "Invalid argument" in plain.stderr,
    "device_ns": mount_ns_id(str(root.nsfile)),
    "entered": seen.returncode == 0,
}))
root.release_memory()
"""


def _ns_id_on(cpu: int) -> int | None:
    """The id the kernel gives a mount namespace made on ``cpu`` now (None without the ioctl)."""
    child = subprocess.Popen(["taskset", "-c", str(cpu), "unshare", "--mount", "sleep", "5"])
    try:
        path = f"/proc/{child.pid}/ns/mnt"
        deadline = time.monotonic() + 5
        while os.readlink(path) == os.readlink("/proc/self/ns/mnt"):  # not unshared yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        try:
            return mount_ns_id(path)
        except OSError:
            return None
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_a_device_namespace_is_made_from_a_namespace_with_a_higher_id_than_this_cpus(tmp_path):
    first, second = sorted(os.sched_getaffinity(0))[:2]
    ids = [_ns_id_on(first), _ns_id_on(second), _ns_id_on(first)]  # made in this order
    if None in ids:
        pytest.skip("this kernel does not tell a mount namespace's id (NS_GET_MNTNS_ID)")
    # ids in per-CPU batches show as a later namespace with a lower id
    batched = ids[1] < ids[0] or ids[2] < ids[1]  # type: ignore[operator]
    high, low = (first, second) if ids[1] < ids[0] else (second, first)  # type: ignore[operator]
    # the caller's namespace made on the CPU that hands out the higher ids, the caller on the other
    command = [
        "taskset", "-c", str(high), "unshare", "--mount", "--propagation", "slave",
        "taskset", "-c", str(low), sys.executable, "-c", SCRIPT, str(tmp_path), str(low),
    ]  # fmt: skip
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2]
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["cpus"] == [low] and found["entered"]
    assert found["device_ns"] > found["caller_ns"]  # the only id the kernel lets it bind
    # where ids come in batches, a plain unshare on the lower CPU is refused; elsewhere it is not
    assert found["plain_refused"] == batched
