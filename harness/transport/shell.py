"""A persistent POSIX shell per device, for devices without Python (stock phones).

One ``sh`` stays open over one stream (an adb shell v2 stream, an SSH channel) and runs each
command in a subshell, framed by a per-session random marker with its exit code and its stderr,
so a command costs one round trip instead of a new adb shell. While a command runs, a subshell
prints a heartbeat line every HEARTBEAT_S (its output goes to a file, printed after it ends): a
device that falls silent for LOST_AFTER_S is a lost connection (the shell is reopened next time),
not a wait until the command's timeout. Limits: no stdin for commands (those take the device's own
transport), and one command at a time per shell.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.errors import CommandFailed, CommandTimeout, ConnectionLost, TransportError
from harness.transport.base import CommandResult, Stream, Transport, WrappedTransport

HEARTBEAT_S = 0.5
LOST_AFTER_S = 2.0

# $M: the marker. "$M .\n" heartbeats while the command runs, then its stdout, then
# "\n$M <exit code>\n", then its stderr, then "\n$M\n". The heartbeat subshell is waited for
# after its kill, so no beat lands inside the output.
_FRAME = (
    "( while :; do sleep {beat}; printf '%s .\\n' \"$M\"; done ) </dev/null & h=$!; "
    '( {cd}{command} ) </dev/null >"$O" 2>"$E"; r=$?; kill "$h" 2>/dev/null; wait "$h" 2>/dev/null; '
    'cat "$O" 2>/dev/null; printf \'\\n%s %s\\n\' "$M" "$r"; cat "$E" 2>/dev/null; printf \'\\n%s\\n\' "$M"\n'
)


class PersistentShell:
    """One ``sh`` on the device that runs commands one after another."""

    def __init__(self, transport: Transport, *, tmpdir: str = "/data/local/tmp", shell: str = "sh") -> None:
        self._transport = transport
        self._tmpdir = tmpdir
        self._shell = shell
        self._stream: Stream | None = None
        self._marker = b""
        self._lock = threading.Lock()

    def _open(self) -> Stream:
        if self._stream is None:
            marker = f"EDGELAB-{secrets.token_hex(8)}"
            stream = self._transport.open_stream([self._shell])
            files = f"{self._tmpdir}/.edgelab-shell-{marker}"
            stream.send(
                f"M={marker}; O={shlex.quote(files + '.out')}; E={shlex.quote(files + '.err')}; "
                'trap \'rm -f "$O" "$E"\' EXIT\n'.encode()
            )
            self._stream, self._marker = stream, marker.encode()
        return self._stream

    def run(self, argv: Sequence[str], *, timeout: float, cwd: str | None = None) -> CommandResult:
        """Run ``argv`` in a subshell of the persistent shell. Raises CommandTimeout past
        ``timeout`` (the shell is then closed, which hangs the command up, and reopened next time)."""
        args = tuple(argv)
        started = time.monotonic()
        with self._lock:
            stream = self._open()
            cd = f"cd {shlex.quote(cwd)} && " if cwd else ""
            stream.send(_FRAME.format(beat=HEARTBEAT_S, cd=cd, command=shlex.join(args)).encode("utf-8"))
            output = bytearray()
            end = b"\n" + self._marker + b"\n"
            deadline = started + timeout
            heard = time.monotonic()
            try:
                while not output.endswith(end):
                    now = time.monotonic()
                    if now >= deadline:
                        raise TimeoutError
                    if now - heard > LOST_AFTER_S:
                        self._drop()
                        raise ConnectionLost(
                            self._transport.device,
                            f"no heartbeat from the device shell for {now - heard:.1f} s during "
                            f"{shlex.join(args)} (the link, adbd or the device is gone)",
                        )
                    try:
                        data = stream.recv(min(deadline - now, LOST_AFTER_S - (now - heard) + 0.05))
                    except TimeoutError:
                        continue
                    if not data:
                        raise OSError("the device closed the shell")
                    heard = time.monotonic()
                    output.extend(data)
            except TimeoutError:
                self._drop()
                raise CommandTimeout(self._transport.device, shlex.join(args), timeout) from None
            except OSError as exc:
                self._drop()
                raise TransportError(
                    self._transport.device, f"persistent shell lost during {shlex.join(args)}: {exc}"
                ) from None
        return self._parse(args, bytes(output), started)

    def _parse(self, args: tuple[str, ...], output: bytes, started: float) -> CommandResult:
        beat = self._marker + b" .\n"
        while output.startswith(beat):
            output = output[len(beat) :]
        head, found, rest = output.partition(b"\n" + self._marker + b" ")
        code_text, _, stderr = rest.partition(b"\n")
        stderr = stderr[: -len(b"\n" + self._marker + b"\n")]
        if not found or not code_text.strip().isdigit():
            raise TransportError(
                self._transport.device, f"persistent shell: no exit status for {shlex.join(args)}"
            )
        return CommandResult(
            argv=args,
            exit_code=int(code_text),
            stdout=head.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - started,
        )

    def _drop(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._stream = None

    def close(self) -> None:
        with self._lock:
            self._drop()


class ShellTransport(WrappedTransport):
    """A Transport whose commands go through a persistent shell; input, files and streams keep
    the device's own transport."""

    def __init__(self, base: Transport, shell: PersistentShell) -> None:
        super().__init__(base)
        self.shell = shell

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
        if stdin or stdin_file is not None:  # empty input is the shell's own </dev/null
            return self.base_run(
                argv,
                timeout=timeout,
                check=check,
                stdin=stdin,
                cwd=cwd,
                stdin_file=stdin_file,
                stdin_progress=stdin_progress,
            )
        result = self.shell.run(argv, timeout=timeout, cwd=cwd)
        if check and not result.ok:
            raise CommandFailed(self.device, shlex.join(result.argv), result.exit_code, result.stderr)
        return result

    def close(self) -> None:
        self.shell.close()
        super().close()


def persistent_shell(
    transport: Transport, *, tmpdir: str = "/data/local/tmp", shell: str = "sh"
) -> ShellTransport:
    """``transport`` with its commands sent through one shell that stays open: what a runner
    without Python on the device adopts in one line (``self.transport = persistent_shell(t)``).
    ``tmpdir`` is a writable folder on the device for each command's stderr; ``shell`` any POSIX
    sh (Android's is mksh)."""
    return ShellTransport(transport, PersistentShell(transport, tmpdir=tmpdir, shell=shell))
