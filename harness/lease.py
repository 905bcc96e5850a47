"""Device leases: two pytest processes (or two lab hosts) never measure on one device at once.

On one host: an exclusive ``flock`` on ``<lease dir>/<device>.lock`` (released by the kernel if
the holder dies), with the holder's host, pid and run id next to it so a waiting run can say who
holds the device. Across hosts: a PostgreSQL advisory lock on the shared results database, held
on its own connection for as long as the lease.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import DeviceBusy

POLL_S = 0.5


class LeaseTimeout(DeviceBusy):
    """The device stayed leased by someone else for longer than --lease-timeout."""


def lease_dir() -> Path:
    configured = os.environ.get("EDGELAB_LEASE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "edgelab" / "leases"


def _file_name(device: str) -> str:
    digest = hashlib.sha256(device.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in device)[:60]
    return f"{safe}-{digest}"


class DeviceLease:
    """Hold ``device`` for this process; ``acquire`` waits up to ``timeout_s`` saying who holds it."""

    def __init__(
        self,
        device: str,
        *,
        run_id: str,
        timeout_s: float,
        advisory: Callable[[str], Any] | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.device = device
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.advisory = advisory  # takes the device, returns a held lock object or None when busy
        self.notify = notify or (lambda message: None)
        folder = lease_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.lock_path = folder / (_file_name(device) + ".lock")
        self.holder_path = folder / (_file_name(device) + ".holder.json")
        self._handle: Any = None
        self._advisory_lock: Any = None

    def holder(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.holder_path.read_text()))
        except (OSError, ValueError):
            return None

    def _describe_holder(self) -> str:
        holder = self.holder()
        if not holder:
            return "another process"
        waited = time.time() - float(holder.get("since", time.time()))
        where = f"pid {holder.get('pid')} on {holder.get('host')}"
        return f"run {holder.get('run_id')} ({where}, for {waited:.0f} s)"

    def acquire(self) -> DeviceLease:
        deadline = time.monotonic() + self.timeout_s
        handle = self.lock_path.open("a+")
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if self.advisory is not None:
                    self._advisory_lock = self.advisory(self.device)
                    if self._advisory_lock is None:
                        fcntl.flock(handle, fcntl.LOCK_UN)
                        raise BlockingIOError("held on another lab host")
                break
            except BlockingIOError as busy:
                where = (
                    "another lab host (PostgreSQL advisory lock)" if "another lab host" in str(busy) else None
                )
                who = where or self._describe_holder()
                if not told:
                    self.notify(
                        f"edgelab: device '{self.device}' is leased by {who}; "
                        f"waiting up to {self.timeout_s:g} s"
                    )
                    told = True
                if time.monotonic() >= deadline:
                    handle.close()
                    raise LeaseTimeout(
                        f"device '{self.device}' is still leased by {who} after {self.timeout_s:g} s; "
                        "wait for that run, or raise --lease-timeout"
                    ) from None
                time.sleep(POLL_S)
        self._handle = handle
        temporary = self.holder_path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(
            json.dumps(
                {"run_id": self.run_id, "pid": os.getpid(), "host": platform.node(), "since": time.time()}
            )
        )
        os.replace(temporary, self.holder_path)
        return self

    def release(self) -> None:
        if self._advisory_lock is not None:
            with contextlib.suppress(Exception):
                self._advisory_lock.close()
            self._advisory_lock = None
        if self._handle is not None:
            with contextlib.suppress(OSError):
                if (self.holder() or {}).get("pid") == os.getpid():
                    self.holder_path.unlink()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> DeviceLease:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()
