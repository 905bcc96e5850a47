"""The host itself as a device: commands through subprocess, files through the filesystem.

Each command gets its own process group so a timeout stops the whole tree, not only the shell.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from harness.errors import CommandFailed, CommandTimeout, TransportError
from harness.transport.base import CommandResult

_WATCH_INTERVAL_S = 0.1
_STDERR_TAIL = 8192


def _expand(path: str) -> str:
    return os.path.expanduser(path)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _watch_offset(
    owner: contextlib.ExitStack, source: IO[bytes], done: threading.Event, progress: Callable[[int], None]
) -> None:
    """Report how far the command has read ``source``: it inherited the same open file, so the
    file's offset here is its read position. Nothing is added to the data path."""
    with owner:
        reported = 0
        while True:
            finished = done.wait(_WATCH_INTERVAL_S)
            with contextlib.suppress(OSError):
                position = os.lseek(source.fileno(), 0, os.SEEK_CUR)
                if position > reported:
                    progress(position - reported)
                    reported = position
            if finished:
                return


class LocalRunning:
    """A spawned local command; stderr is drained by a thread so a chatty command cannot block."""

    def __init__(self, device: str, argv: tuple[str, ...], process: subprocess.Popen[bytes]) -> None:
        self._device = device
        self._argv = argv
        self._process = process
        self._started = time.monotonic()
        self._stderr = bytearray()
        self._unread: list[str] = []
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        stream = self._process.stderr
        assert stream is not None
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
            self._stderr.extend(chunk)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=60)  # reap it: a device's init would, and kill -0 must fail

    def lines(self) -> Iterator[str]:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            yield raw.decode("utf-8", errors="replace").rstrip("\n")

    def wait(self, timeout: float) -> CommandResult:
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise CommandTimeout(self._device, " ".join(self._argv), timeout) from None
        rest = self._process.stdout.read() if self._process.stdout else b""
        self._drain.join(timeout=5)
        return CommandResult(
            argv=self._argv,
            exit_code=self._process.returncode,
            stdout=rest.decode("utf-8", errors="replace"),
            stderr=self._stderr.decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - self._started,
        )

    def kill(self) -> None:
        if self._process.poll() is None:
            _kill_group(self._process)
            self._process.wait()


class LocalStream:
    """A long-lived local command on a pipe pair; stderr is read only when it is ready, so no
    thread is needed."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        self._process = process
        self._stdin = process.stdin.fileno()
        self._stdout = process.stdout.fileno()
        self._stderr_fd: int | None = process.stderr.fileno()
        self._stderr = bytearray()

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._stdin, view)
            view = view[written:]

    def recv(self, timeout: float) -> bytes:
        watched = [self._stdout] + ([self._stderr_fd] if self._stderr_fd is not None else [])
        ready, _, _ = select.select(watched, [], [], max(timeout, 0.0))
        if self._stderr_fd is not None and self._stderr_fd in ready:
            chunk = os.read(self._stderr_fd, 65536)
            if chunk:
                self._stderr = (self._stderr + chunk)[-_STDERR_TAIL:]
            else:
                self._stderr_fd = None
        if self._stdout not in ready:
            raise TimeoutError
        return os.read(self._stdout, 1 << 16)

    def stderr_tail(self) -> str:
        return self._stderr.decode("utf-8", errors="replace")

    def close(self) -> None:
        for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            self._process.wait(timeout=5)  # EOF on stdin ends the command; a stuck one is killed
        except subprocess.TimeoutExpired:
            _kill_group(self._process)
            self._process.wait()


class LocalTransport:
    """Runs on the machine that runs pytest; the reference the other transports are compared to."""

    def __init__(self, device: str = "local") -> None:
        self._device = device

    integrity_in_transit = True  # a pipe on one machine: nothing in between

    @property
    def device(self) -> str:
        return self._device

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
        args = tuple(argv)
        started = time.monotonic()
        watching: tuple[threading.Event, threading.Thread] | None = None
        with contextlib.ExitStack() as stack:
            source: int | IO[bytes] = subprocess.PIPE if stdin is not None else subprocess.DEVNULL
            if stdin_file is not None:
                try:
                    source = stack.enter_context(Path(stdin_file).open("rb"))
                except OSError as exc:
                    raise TransportError(self._device, f"cannot read {stdin_file}: {exc.strerror}") from None
            if stdin_file is not None and stdin_progress is not None:
                assert not isinstance(source, int)
                process, done, watcher = self._start_watched(
                    args, stack.pop_all(), source, stdin_progress, cwd
                )
                watching = (done, watcher)
            else:
                process = self._start(args, source, cwd)
        try:
            stdout, stderr = process.communicate(input=stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            raise CommandTimeout(self._device, " ".join(args), timeout) from None
        finally:
            if watching is not None:
                watching[0].set()
                watching[1].join(timeout=60)
        result = CommandResult(
            argv=args,
            exit_code=process.returncode,
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - started,
        )
        if check and not result.ok:
            raise CommandFailed(self._device, " ".join(args), result.exit_code, result.stderr)
        return result

    def push(self, local: Path, remote: str) -> int:
        return self._copy(Path(local), Path(_expand(remote)))

    def pull(self, remote: str, local: Path) -> int:
        return self._copy(Path(_expand(remote)), Path(local))

    def _copy(self, source: Path, destination: Path) -> int:
        if not source.is_file():
            raise TransportError(self._device, f"no such file: {source}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        return destination.stat().st_size

    def spawn(self, argv: Sequence[str], *, cwd: str | None = None) -> LocalRunning:
        args = tuple(argv)
        return LocalRunning(self._device, args, self._start(args, subprocess.DEVNULL, cwd))

    def open_stream(self, argv: Sequence[str]) -> LocalStream:
        args = tuple(argv)
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise TransportError(self._device, f"cannot start {args[0]!r}: {exc.strerror}") from None
        return LocalStream(process)

    def _start_watched(
        self,
        args: tuple[str, ...],
        owner: contextlib.ExitStack,
        source: IO[bytes],
        progress: Callable[[int], None],
        cwd: str | None,
    ) -> tuple[subprocess.Popen[bytes], threading.Event, threading.Thread]:
        """Start ``args`` reading ``source`` and a thread that reports its read position
        (``source`` is closed by ``owner`` when the thread ends)."""
        try:
            process = self._start(args, source, cwd)
        except BaseException:
            owner.close()
            raise
        done = threading.Event()
        watcher = threading.Thread(target=_watch_offset, args=(owner, source, done, progress), daemon=True)
        watcher.start()
        return process, done, watcher

    def _start(
        self, args: tuple[str, ...], stdin: int | IO[bytes], cwd: str | None
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` in its own session (so a timeout can kill its whole group)."""
        try:
            return subprocess.Popen(
                args,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=_expand(cwd) if cwd else None,
                start_new_session=True,
            )
        except OSError as exc:
            raise TransportError(self._device, f"cannot start {args[0]!r}: {exc.strerror}") from None

    def close(self) -> None:
        """Nothing to release: each command owns its own process."""
