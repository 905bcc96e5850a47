"""The one exception hierarchy of EdgeLab.

Every message says what went wrong, where (file, device, field, path) and what to do next.
Callers catch the narrowest class they can handle; the plugin and the CLI print ``str(err)``.
"""

from __future__ import annotations


class EdgeLabError(Exception):
    """Base of every error EdgeLab raises on purpose."""


class ConfigError(EdgeLabError):
    """devices.yaml (or another user file) is malformed or inconsistent."""


class SelectionError(EdgeLabError):
    """A --device/--runtime/--precision value names something that does not exist."""


class DeviceBusy(EdgeLabError):
    """Someone else held the device past the wait: an EdgeLab lease (harness.lease) or a labgrid
    place. Not the device's fault, so it never counts against its health."""


class TransportError(EdgeLabError):
    """A device cannot be reached or a transfer failed."""

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"device '{device}': {message}")
        self.device = device


class ConnectError(TransportError):
    """Connecting to the device failed (unreachable host, refused, auth, no such serial)."""


class HostKeyError(ConnectError):
    """The SSH host key is unknown or does not match known_hosts."""


class ConnectionLost(TransportError):
    """The device stopped answering while a command ran (link down, device rebooted or gone)."""


class CommandTimeout(TransportError):
    """A command on the device ran past its timeout and was stopped."""

    def __init__(self, device: str, command: str, timeout_s: float) -> None:
        super().__init__(
            device,
            f"command timed out after {timeout_s:g}s: {command} "
            "(raise the timeout or check that the device is not hung)",
        )
        self.command = command
        self.timeout_s = timeout_s


class CommandFailed(TransportError):
    """A command that had to succeed exited non-zero."""

    def __init__(self, device: str, command: str, exit_code: int, stderr: str) -> None:
        tail = stderr.strip()[-2000:]
        super().__init__(device, f"command exited {exit_code}: {command}\n{tail}")
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr


class DeployError(EdgeLabError):
    """An artifact could not be placed on the device intact."""


class ModelError(EdgeLabError):
    """A model could not be fetched, verified or resolved."""


class AgentError(EdgeLabError):
    """The on-device agent failed or printed something that is not its result document."""


class NotMeasurable(EdgeLabError):
    """The device's runner has no way to measure what was asked (e.g. the outputs of an .onnx model
    on a phone without Python: ONNX Runtime's tools write none). Tests skip with the reason."""


class ParseError(EdgeLabError):
    """A device tool's output is not in a format EdgeLab knows (or is truncated)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class DeviceUnhealthy(EdgeLabError):
    """A device failed its pre-use health check or is quarantined; its tests are skipped."""


class DownloadError(EdgeLabError):
    """A file could not be downloaded intact (HTTP error, hash mismatch, over the size limit)."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


class HostOffline(DownloadError):
    """The server could not be reached at all: no network, DNS failure, refused, timed out."""
