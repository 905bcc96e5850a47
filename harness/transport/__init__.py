"""How bytes and commands reach a device: one protocol, one implementation per device kind."""

from __future__ import annotations

from harness.config import AdbDevice, LocalDevice, SshDevice
from harness.transport.base import CommandResult, RunningCommand, Stream, Transport

__all__ = ["CommandResult", "RunningCommand", "Stream", "Transport", "open_transport"]


def open_transport(device: LocalDevice | SshDevice | AdbDevice) -> Transport:
    """Connect to a device as devices.yaml describes it; raises ConnectError when it cannot."""
    if isinstance(device, SshDevice):
        from harness.transport.ssh import SshTransport

        return SshTransport(device)
    if isinstance(device, AdbDevice):
        from harness.transport.adb import AdbTransport

        return AdbTransport(device)
    from harness.transport.local import LocalTransport

    return LocalTransport(device.name)
