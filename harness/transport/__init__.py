"""How bytes and commands reach a device: one protocol, one implementation per device kind (a
labgrid place is a way of finding the device, then SSH or adb reach it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.config import AdbDevice, AnyDevice, LabgridDevice, SshDevice, default_workdir
from harness.transport.base import CommandResult, RunningCommand, Stream, Transport, WrappedTransport

if TYPE_CHECKING:
    from harness.transport.labgrid import LabgridTransport, PlaceInfo

__all__ = [
    "CommandResult",
    "RunningCommand",
    "Stream",
    "Transport",
    "device_workdir",
    "labgrid_place",
    "open_transport",
]


def open_transport(
    device: AnyDevice, *, notify: Callable[[str], None] | None = None, wait_s: float | None = None
) -> Transport:
    """Connect to a device as devices.yaml describes it; raises ConnectError when it cannot. A
    labgrid place is reserved and acquired first, waiting up to ``wait_s`` for whoever holds it
    (``notify`` hears that it waits)."""
    if isinstance(device, LabgridDevice):
        from harness.transport.labgrid import LabgridTransport

        return LabgridTransport(device, wait_s=wait_s, notify=notify)
    if isinstance(device, SshDevice):
        from harness.transport.ssh import SshTransport

        return SshTransport(device)
    if isinstance(device, AdbDevice):
        from harness.transport.adb import AdbTransport

        return AdbTransport(device)
    from harness.transport.local import LocalTransport

    return LocalTransport(device.name)


def device_workdir(device: AnyDevice, transport: Transport) -> str:
    """devices.yaml's workdir, else the default of what the device turned out to be: a labgrid place
    is a board or a phone only once its resource is known."""
    if device.workdir:
        return device.workdir
    place = _labgrid(transport)
    return default_workdir(place.reached.kind if place is not None else device.kind)


def labgrid_place(transport: Transport) -> PlaceInfo | None:
    """The labgrid place a transport holds, for the result's fingerprint; None for other devices."""
    place = _labgrid(transport)
    return place.place if place is not None else None


def _labgrid(transport: Transport) -> LabgridTransport | None:
    from harness.transport.labgrid import LabgridTransport

    # a persistent channel or shell wraps the device's own transport as ``base``
    found: object = transport
    while isinstance(found, WrappedTransport):
        found = found.base
    return found if isinstance(found, LabgridTransport) else None
