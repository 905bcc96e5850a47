"""``edgelab cache status|prune DEVICE``: a device's content-addressed artifact cache, reported
and pruned to its size budget (``cache_max_mb``), least recently used first.

Pruning holds the device's lease (harness.lease) for its whole duration, so no run on this host
(or, with a shared results database, on another one) uses the cache while entries go away; a
labgrid place is held through labgrid instead, as a run holds it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from harness.config import AnyDevice, Fleet
from harness.deploy import CacheStatus, Deployer, PruneReport, resolve_workdir
from harness.errors import ConfigError
from harness.lease import DeviceLease
from harness.transport import device_workdir, open_transport

DeviceConfig = AnyDevice
MB = 1 << 20


@dataclass
class CacheReport:
    device: str
    cas: str
    budget_mb: float | None
    status: CacheStatus
    stale_partials: list[str]


@contextmanager
def _deployer(
    config: DeviceConfig, *, wait_s: float | None = None, notify: Callable[[str], None] | None = None
) -> Iterator[Deployer]:
    transport = open_transport(config, notify=notify, wait_s=wait_s)
    try:
        workdir = resolve_workdir(transport, device_workdir(config, transport))
        yield Deployer(transport, workdir, config.python)
    finally:
        transport.close()


def status(config: DeviceConfig) -> CacheReport:
    """What the cache holds now (no lease: it only reads)."""
    with _deployer(config) as deployer:
        return CacheReport(
            config.name, deployer.cas, config.cache_max_mb, deployer.status(), deployer.stale_partials()
        )


def budget_bytes(config: DeviceConfig, fleet: Fleet, max_mb: float | None) -> int:
    budget = max_mb if max_mb is not None else config.cache_max_mb
    if budget is None:
        raise ConfigError(
            f"device '{config.name}': no cache budget: set cache_max_mb for it in {fleet.source} "
            "or pass --max-mb"
        )
    if budget < 0:
        raise ConfigError(f"--max-mb must be 0 or more (got {budget:g})")
    return int(budget * MB)


def prune(
    config: DeviceConfig,
    max_bytes: int,
    *,
    lease_timeout_s: float,
    notify: Callable[[str], None] | None = None,
) -> PruneReport:
    """Remove stale partial files, then entries least recently used first, down to ``max_bytes``,
    holding the device's lease (waits up to ``lease_timeout_s`` for a running session)."""
    lease = (
        DeviceLease(
            config.name, run_id=f"edgelab-cache-prune-{os.getpid()}", timeout_s=lease_timeout_s, notify=notify
        )
        if config.leased_by_edgelab
        else contextlib.nullcontext()  # a labgrid place: acquiring it is the lease
    )
    with lease, _deployer(config, wait_s=lease_timeout_s, notify=notify) as deployer:
        return deployer.prune(max_bytes)


def describe(report: CacheReport, now: float | None = None) -> list[str]:
    """The status as a table, newest use first."""
    clock = report.status.device_clock or int(now if now is not None else time.time())
    budget = f"{report.budget_mb:g} MB (cache_max_mb)" if report.budget_mb is not None else "none set"
    lines = [
        f"device '{report.device}': {report.cas}",
        f"{len(report.status.entries)} entries, {report.status.size_bytes / MB:.1f} MB; budget {budget}",
    ]
    if report.status.entries:
        lines.append(f"  {'LAST USED':<12} {'SIZE':>10}  {'SHA256':<12}  FILES")
    for entry in sorted(report.status.entries, key=lambda e: e.last_used, reverse=True):
        age = _age(clock - entry.last_used)
        files = ", ".join(entry.files) or "-"
        lines.append(f"  {age:<12} {entry.size_bytes / MB:>7.1f} MB  {entry.sha256[:12]}  {files}")
    if report.stale_partials:
        lines.append(
            f"{len(report.stale_partials)} partial file(s) left by killed pushes "
            f"(removed by the next session or `edgelab cache prune {report.device}`)"
        )
    return lines


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
