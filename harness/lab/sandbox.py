"""A device's filesystem view: its own root (/data, /sdcard, /system, /sys) over the host's /usr.

As root: one persistent private mount namespace per device (bind-mounted on a file in the lab
folder), entered with nsenter + chroot for every command, so no device mount ever shows in the
host's mount table. Without root: path mapping only, which the status reports.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from harness.errors import EdgeLabError

LOG = logging.getLogger("edgelab.lab.sandbox")

# Host directories every device sees read-only at the same path (tools, libraries, certs).
SHARED_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc")
MAX_SYMLINK_HOPS = 40
MEMORY_ROOT = Path("/dev/shm/edgelab")  # tmpfs: where the devices' /sys trees live


class SandboxError(EdgeLabError):
    """The device root could not be built or entered."""


def python_prefixes() -> list[str]:
    """Where this interpreter and its packages live, so the agent runs inside the device root."""
    prefixes = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    executable = os.path.realpath(sys.executable)
    prefixes.add(os.path.dirname(os.path.dirname(executable)))
    return sorted(p for p in prefixes if not any(p == d or p.startswith(d + "/") for d in SHARED_DIRS))


def _run(argv: list[str]) -> None:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if completed.returncode != 0:
        raise SandboxError(f"{' '.join(argv)} failed: {completed.stderr.strip()}")


class DeviceRoot:
    """The on-disk state of one virtual device (``state_dir``) and how to run commands in it."""

    def __init__(
        self,
        state_dir: Path,
        *,
        writable: Mapping[str, str],
        extra_shared: tuple[str, ...] = (),
        isolate: bool | None = None,
        share_host: bool = True,
        shell: str = "/bin/sh",
        path: tuple[str, ...] = ("/system/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"),
    ) -> None:
        self.state_dir = state_dir
        self.rootfs = state_dir / "rootfs"
        self.nsdir = state_dir / "ns"
        self.nsfile = self.nsdir / "mnt"
        # device path -> folder of state_dir (persistent across lab restarts)
        self.writable = dict(writable)
        # A stock phone shares nothing of the host (no /usr, no Python): its root holds only what
        # the lab copied into it.
        host_dirs = (*SHARED_DIRS, *python_prefixes()) if share_host else ()
        self.shared = tuple(d for d in (*host_dirs, *extra_shared) if os.path.isdir(d))
        self.shell = shell
        self.path = path
        self.isolated = (os.geteuid() == 0) if isolate is None else isolate

    # -- layout --------------------------------------------------------------------------------

    def prepare(self) -> None:
        for device_path, folder in self.writable.items():
            (self.state_dir / folder).mkdir(parents=True, exist_ok=True)
            (self.rootfs / device_path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for shared in self.shared:
            (self.rootfs / shared.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for name in ("proc", "dev", "sys"):
            (self.rootfs / name).mkdir(parents=True, exist_ok=True)
        self._sys_in_memory()
        if self.isolated:
            self._make_namespace()

    def _make_namespace(self) -> None:
        if self.nsfile.exists() and self._namespace_alive():
            return
        self.nsdir.mkdir(parents=True, exist_ok=True)
        self._bind_nsdir_private()
        self.nsfile.touch()
        self._unshare_persistent()
        script = [f"set -e; root={_q(str(self.rootfs))}"]
        # Writable folders first: a shared folder below one of them (a venv under /tmp) must be
        # mounted on top, not hidden by it.
        for device_path, folder in self.writable.items():
            script.append(f'mount --bind {_q(str(self.state_dir / folder))} "$root"{_q(device_path)}')
        for shared in self.shared:
            target = f'"$root"{_q(shared)}'
            script.append(
                f"mkdir -p {target}; mount --rbind {_q(shared)} {target}; "
                f"mount -o remount,bind,ro {target} || true"
            )
        script.append(f'mount --bind {_q(str(self.state_dir / "sys"))} "$root"/sys')
        script.append('mount --rbind /dev "$root"/dev')
        script.append('mount -t proc proc "$root"/proc')
        _run(["nsenter", f"--mount={self.nsfile}", "sh", "-c", "\n".join(script)])

    def _unshare_persistent(self) -> None:
        """A new mount namespace, bound on ``nsfile``. The kernel refuses that bind (EINVAL) when the
        new namespace's id is not above the id of the namespace doing the bind (its guard against
        namespace loops). Kernels that hand out ids in per-CPU batches (seen on 6.18) can give a
        namespace made on one CPU a lower id than an older one made on another: from a namespace of
        its own (as `ip netns exec` makes), every try pinned to one CPU failed and every try on the
        other succeeded. The CPU that made the caller's namespace only hands out higher ids, so after a
        refusal each of the host's CPUs is tried in turn, pinned with taskset: all of them, not only
        this process's, which may be pinned to the CPU that refuses."""
        argv = ["unshare", f"--mount={self.nsfile}", "--propagation", "private", "true"]
        cpus = list(range(os.cpu_count() or 1)) if shutil.which("taskset") else []
        tries = [argv, *(["taskset", "-c", str(cpu), *argv] for cpu in cpus)]
        for index, command in enumerate(tries):
            try:
                _run(command)
                return
            except SandboxError as exc:
                if "Invalid argument" not in str(exc):
                    raise
                if index == len(tries) - 1:
                    tried = f" (also pinned to each CPU, 0-{cpus[-1]})" if cpus else ""
                    raise SandboxError(f"{exc}{tried}") from None
                LOG.info("%s: refused on try %d, trying CPU %s: %s", self.nsfile, index + 1, cpus[index], exc)

    def _namespace_alive(self) -> bool:
        return self._is_mountpoint(self.nsfile)

    @staticmethod
    def _is_mountpoint(path: Path) -> bool:
        return os.path.realpath(path) in mount_points()

    def _bind_nsdir_private(self) -> None:
        """A private bind of the folder that holds the ns file (unshare refuses a shared parent)."""
        if not self._is_mountpoint(self.nsdir):
            _run(["mount", "--bind", str(self.nsdir), str(self.nsdir)])
        _run(["mount", "--make-private", str(self.nsdir)])

    def _sys_in_memory(self) -> None:
        """A device's /sys lives in memory, as a kernel's does: its folder is a link to a folder
        under /dev/shm (tmpfs) when the host has one. The sensor model rewrites its values ten
        times a second; on the lab folder's disk each replace forced a block write (eight phones:
        6 MB/s written, the host's time mostly in the kernel and the devices waiting)."""
        folder = self.state_dir / "sys"
        if folder.is_symlink():
            if folder.resolve().is_dir():
                return
            folder.unlink()
        if folder.is_dir() and self.isolated and self._is_mountpoint(self.nsfile):
            return  # a running namespace has the folder mounted: keep it until the lab goes down
        memory = MEMORY_ROOT / hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:16]
        try:
            if not os.path.ismount(MEMORY_ROOT.parent):
                raise OSError("no tmpfs at /dev/shm")
            memory.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError:
            folder.mkdir(exist_ok=True)  # on disk, as before
            return
        if folder.is_dir():
            shutil.rmtree(folder)  # its values are written anew when the device starts
        folder.symlink_to(memory, target_is_directory=True)

    def release_memory(self) -> bool:
        """Remove the in-memory /sys folder (after the namespace that mounts it is gone)."""
        folder = self.state_dir / "sys"
        if not folder.is_symlink():
            return False
        target = Path(os.readlink(folder))
        folder.unlink()
        if target.parent == MEMORY_ROOT and target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            return True
        return False

    def destroy(self) -> None:
        """Drop the namespace (and with it every mount inside), then the folder's own bind."""
        if self._is_mountpoint(self.nsfile):
            _run(["umount", str(self.nsfile)])
        if self._is_mountpoint(self.nsdir):
            _run(["umount", str(self.nsdir)])

    def host_mounts(self) -> list[str]:
        """Mount points of the host table under this device's folder (empty after destroy)."""
        return mounts_under(self.state_dir)

    # -- commands ------------------------------------------------------------------------------

    def command(self, script: str) -> list[str]:
        """argv that runs ``script`` with /bin/sh as the device would."""
        if self.isolated:
            # Host tools by absolute path: the device's PATH (a stock phone's /system/bin) is not
            # where the host keeps them.
            return [
                shutil.which("nsenter") or "/usr/bin/nsenter",
                f"--mount={self.nsfile}",
                "--",
                shutil.which("chroot") or "/usr/sbin/chroot",
                str(self.rootfs),
                self.shell,
                "-c",
                f"cd / && {script}",
            ]
        return ["/bin/sh", "-c", script]

    def environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        path_dirs = list(self.path)
        if not self.isolated:
            path_dirs.insert(0, str(self.state_dir / "system" / "bin"))
        locale = {"LANG": "C.UTF-8"} if self.shared else {}  # a stock phone has no locales
        return {"PATH": ":".join(path_dirs), **locale, **extra}

    def working_directory(self) -> str:
        if self.isolated:
            return "/"
        return str(self.state_dir)

    # -- files ---------------------------------------------------------------------------------

    def host_path(self, device_path: str) -> Path:
        """Where a device path lives on the host, without following the last component."""
        clean = os.path.normpath("/" + device_path.lstrip("/"))
        best = ""
        for prefix in self.writable:
            if (clean == prefix or clean.startswith(prefix.rstrip("/") + "/")) and len(prefix) > len(best):
                best = prefix
        if best:
            rest = clean[len(best) :].lstrip("/")
            return self.state_dir / self.writable[best] / rest
        if clean == "/sys" or clean.startswith("/sys/"):
            return self.state_dir / "sys" / clean[len("/sys") :].lstrip("/")
        for shared in self.shared:
            if clean == shared or clean.startswith(shared + "/"):
                return Path(clean)
        return self.rootfs / clean.lstrip("/")

    def resolve(self, device_path: str, *, follow_last: bool = True) -> Path:
        """Follow device symlinks in the device's namespace (an absolute link target is a device
        path, not a host path)."""
        pending = [part for part in device_path.split("/") if part]
        current = "/"
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == ".":
                continue
            if part == "..":
                current = os.path.dirname(current.rstrip("/")) or "/"
                continue
            candidate = os.path.join(current, part)
            host = self.host_path(candidate)
            if host.is_symlink() and (pending or follow_last):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise OSError(40, "Too many levels of symbolic links", device_path)
                target = os.readlink(host)
                pending = [p for p in target.split("/") if p] + pending
                if target.startswith("/"):
                    current = "/"
                continue
            current = candidate
        return self.host_path(current)

    def is_writable(self, device_path: str) -> bool:
        clean = os.path.normpath("/" + device_path.lstrip("/"))
        return any(clean == p or clean.startswith(p.rstrip("/") + "/") for p in self.writable)

    def remove_state(self) -> None:
        if self.host_mounts():
            raise SandboxError(f"refusing to delete {self.state_dir}: mounts remain {self.host_mounts()}")
        shutil.rmtree(self.state_dir, ignore_errors=True)


def mount_points() -> list[str]:
    """Every mount point of this process's mount table."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return [line.split()[4] for line in handle]


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below ``folder``."""
    base = os.path.realpath(folder)
    return [p for p in mount_points() if p == base or p.startswith(base + "/")]


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
