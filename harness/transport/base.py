"""The one protocol through which everything above reaches a device.

Commands are argument vectors, never shell strings: each transport quotes them itself, so a
model path with spaces or ``$()`` arrives intact. Use ``["sh", "-c", script]`` for shell logic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class CommandResult:
    """What one finished command left behind."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@runtime_checkable
class RunningCommand(Protocol):
    """A command started with ``Transport.spawn`` whose output is read while it runs."""

    def lines(self) -> Iterator[str]:
        """Yield stdout lines (without the newline) as the device prints them, until EOF."""
        ...

    def wait(self, timeout: float) -> CommandResult:
        """Wait for exit; stdout already consumed by ``lines`` is not repeated."""
        ...

    def kill(self) -> None:
        """Stop the command on the device (best effort) and release the channel."""
        ...


@runtime_checkable
class Stream(Protocol):
    """A long-lived command whose stdin and stdout are one binary pipe each way (the persistent
    channel's carrier: an SSH exec channel, an ADB shell v2 stream, a local pipe pair)."""

    def send(self, data: bytes) -> None:
        """Write all of ``data`` to the command's stdin; raises OSError when the stream is gone."""
        ...

    def recv(self, timeout: float) -> bytes:
        """The next stdout bytes; b"" once the command's stdout is closed. Raises TimeoutError when
        nothing arrived within ``timeout`` seconds and OSError when the link broke."""
        ...

    def stderr_tail(self) -> str:
        """The last few KiB the command wrote to stderr (for error messages)."""
        ...

    def close(self) -> None:
        """Close stdin and release the link; the command sees EOF (or, over ADB, a hang-up)."""
        ...


@runtime_checkable
class Transport(Protocol):
    """How bytes and commands reach one device."""

    #: True when the link itself detects corrupted bytes (SSH: a MAC on every packet; local: no
    #: link at all). False for ADB: its protocol has carried no checksum since version 0x01000001.
    integrity_in_transit: bool

    @property
    def device(self) -> str:
        """The device name from devices.yaml, used in every error message."""
        ...

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        check: bool = False,
        stdin: bytes | None = None,
        cwd: str | None = None,
        stdin_file: Path | None = None,
        stdin_progress: Callable[[int], None] | None = None,
    ) -> CommandResult:
        """Run to completion. Raises CommandTimeout past ``timeout`` seconds and
        CommandFailed when ``check`` is true and the exit code is not 0. ``stdin_file`` streams a
        host file to the command's stdin in blocks (never held in memory whole); it excludes
        ``stdin``. ``stdin_progress`` is called with the size of each block of ``stdin_file`` as it
        is sent (a progress bar's advance); without it the transfer is the same, only silent."""
        ...

    def push(self, local: Path, remote: str) -> int:
        """Copy a local file to ``remote`` (parent directories created); return bytes sent."""
        ...

    def pull(self, remote: str, local: Path) -> int:
        """Copy a device file to ``local``; return bytes received."""
        ...

    def spawn(self, argv: Sequence[str], *, cwd: str | None = None) -> RunningCommand:
        """Start a long command and stream its stdout."""
        ...

    def open_stream(self, argv: Sequence[str]) -> Stream:
        """Start a command that stays up, with binary stdin and stdout (stderr kept aside)."""
        ...

    def close(self) -> None:
        """Release the connection; safe to call twice."""
        ...


class WrappedTransport:
    """A Transport that sends some of its work another way (a persistent channel, a persistent
    shell) and hands everything else to the device's own transport, ``base``. Subclasses
    override what they carry and call ``base_run`` for what they do not."""

    def __init__(self, base: Transport) -> None:
        self.base = base
        self.integrity_in_transit = base.integrity_in_transit

    @property
    def device(self) -> str:
        return self.base.device

    def base_run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        check: bool = False,
        stdin: bytes | None = None,
        cwd: str | None = None,
        stdin_file: Path | None = None,
        stdin_progress: Callable[[int], None] | None = None,
    ) -> CommandResult:
        return self.base.run(
            argv,
            timeout=timeout,
            check=check,
            stdin=stdin,
            cwd=cwd,
            stdin_file=stdin_file,
            stdin_progress=stdin_progress,
        )

    def push(self, local: Path, remote: str) -> int:
        return self.base.push(local, remote)

    def pull(self, remote: str, local: Path) -> int:
        return self.base.pull(remote, local)

    def spawn(self, argv: Sequence[str], *, cwd: str | None = None) -> RunningCommand:
        return self.base.spawn(argv, cwd=cwd)

    def open_stream(self, argv: Sequence[str]) -> Stream:
        return self.base.open_stream(argv)

    def close(self) -> None:
        self.base.close()
