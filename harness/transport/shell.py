"""A persistent POSIX shell per device, for devices without Python (stock phones).

One ``sh`` stays open over one stream (an adb shell v2 stream, an SSH channel) and runs each
command in a subshell, framed by a per-session random marker with its exit code and its stderr,
so a command costs one round trip instead of a new adb shell. Limits: no heartbeat (a silent link
is noticed by the command's timeout, after which the shell is reopened), no stdin for commands
(those take the device's own transport), and one command at a time per shell.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.errors import CommandFailed, CommandTimeout, TransportError
from harness.transport.base import CommandResult, Stream, Transport, WrappedTransport

# $M: the marker. The command's stdout, then "\n$M <exit code>\n", then its stderr, then "\n$M\n".
_FRAME = (
    '( {cd}{command} ) </dev/null 2>"$E"; r=$?; printf \'\\n%s %s\\n\' "$M" "$r"; '
    'cat "$E" 2>/dev/null; printf \'\\n%s\\n\' "$M"\n'
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
            errors = f"{self._tmpdir}/.edgelab-shell-{marker}.err"
            stream.send(f"M={marker}; E={shlex.quote(errors)}; trap 'rm -f \"$E\"' EXIT\n".encode())
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
            stream.send(_FRAME.format(cd=cd, command=shlex.join(args)).encode("utf-8"))
            output = bytearray()
            end = b"\n" + self._marker + b"\n"
            deadline = started + timeout
            try:
                while not output.endswith(end):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError
                    data = stream.recv(remaining)
                    if not data:
                        raise OSError("the device closed the shell")
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
