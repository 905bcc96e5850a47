"""The stock phone's device service: its sh tools hand calls here through a FIFO, since the
phone's shell has no Python. Each call gets its stdout, stderr and a control FIFO back.

A call is a folder ``<rpc>/call.XXXXXX`` (argv NUL-separated, cwd, cmdline, optional stdin) named
in one request line ``TOOL PID FOLDER`` (atomic: shorter than PIPE_BUF). ``stop`` on the control
FIFO is a SIGTERM/SIGINT the tool received; its end without ``stop`` means the caller is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.lab.profiles import DeviceProfile
from harness.lab.sandbox import DeviceRoot
from harness.lab.sensors import DeviceCgroup
from harness.lab.stock import RPC_DIR, STANDIN_DIR
from harness.lab.tracing import TracingService

LOG = logging.getLogger("edgelab.lab.services")
OPEN_TIMEOUT_S = 30.0
STANDIN_TOOLS = ("benchmark_model", "onnxruntime_perf_test")


@dataclass
class Call:
    """One invocation of a device tool, as the service sees it."""

    tool: str
    pid: int
    folder: Path
    argv: list[str]
    cwd: str
    cmdline: str
    stdin: bytes | None
    notify: str
    out: asyncio.WriteTransport
    err: asyncio.WriteTransport
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # SIGTERM/SIGINT
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # the caller died

    def write_out(self, data: bytes | str) -> None:
        self._write(self.out, data)

    def write_err(self, data: bytes | str) -> None:
        self._write(self.err, data)

    @staticmethod
    def _write(transport: asyncio.WriteTransport, data: bytes | str) -> None:
        if not transport.is_closing():
            transport.write(data.encode() if isinstance(data, str) else data)

    async def ended(self) -> None:
        """Returns once the caller asked to stop or went away."""
        stop = asyncio.ensure_future(self.stop.wait())
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait({stop, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            gone.cancel()


Handler = Callable[[Call], Awaitable[int]]


async def _open_writer(path: Path, gone_after_s: float) -> int:
    """Open a FIFO for writing once its reader (the caller's cat) has it open."""
    deadline = asyncio.get_running_loop().time() + gone_after_s
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.005)


class _ControlProtocol(asyncio.Protocol):
    def __init__(self, call_stop: asyncio.Event, call_gone: asyncio.Event) -> None:
        self.stop, self.gone = call_stop, call_gone

    def data_received(self, data: bytes) -> None:
        if b"stop" in data:
            self.stop.set()

    def eof_received(self) -> bool | None:
        if not self.stop.is_set():
            self.gone.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.stop.is_set():
            self.gone.set()


class DeviceServices:
    """Serves the request FIFO of one stock phone from the supervisor's event loop."""

    def __init__(
        self, profile: DeviceProfile, root: DeviceRoot, cgroup: DeviceCgroup | None, sysfs: Path
    ) -> None:
        self.profile = profile
        self.root = root
        self.cgroup = cgroup
        self.rpc = root.host_path(RPC_DIR)
        self.tracing = TracingService(profile, root, sysfs)
        self.handlers: dict[str, Handler] = {"perfetto": self.tracing.handle}
        for tool in STANDIN_TOOLS:
            self.handlers[tool] = self.run_standin
        self._fds: list[int] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._buffer = b""

    async def start(self) -> None:
        self.rpc.mkdir(parents=True, exist_ok=True)
        requests = self.rpc / "requests"
        if not requests.exists():
            os.mkfifo(requests, 0o622)
        reader = os.open(requests, os.O_RDONLY | os.O_NONBLOCK)
        keeper = os.open(requests, os.O_WRONLY | os.O_NONBLOCK)  # no EOF between callers
        self._fds = [reader, keeper]
        asyncio.get_running_loop().add_reader(reader, self._readable, reader)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._fds:
            loop.remove_reader(self._fds[0])
        for task in list(self._tasks):
            task.cancel()
        await self.tracing.stop_all()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def _readable(self, fd: int) -> None:
        try:
            self._buffer += os.read(fd, 65536)
        except BlockingIOError:
            return
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            parts = line.decode(errors="replace").split(" ", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                LOG.warning("%s: malformed request %r", self.profile.name, line[:200])
                continue
            task = asyncio.create_task(self._serve(parts[0], int(parts[1]), parts[2]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, tool: str, pid: int, device_folder: str) -> None:
        folder = self.root.host_path(device_folder)
        if not str(folder).startswith(str(self.rpc)) or not folder.is_dir():
            LOG.warning("%s: request for %s outside %s", self.profile.name, device_folder, RPC_DIR)
            return
        loop = asyncio.get_running_loop()
        control = os.open(folder / "ctl", os.O_RDONLY | os.O_NONBLOCK)
        stop, gone = asyncio.Event(), asyncio.Event()
        control_transport, _ = await loop.connect_read_pipe(
            lambda: _ControlProtocol(stop, gone), os.fdopen(control, "rb", buffering=0)
        )
        try:
            out_fd = await _open_writer(folder / "out", OPEN_TIMEOUT_S)
            err_fd = await _open_writer(folder / "err", OPEN_TIMEOUT_S)
        except OSError:
            control_transport.close()
            LOG.warning("%s: %s (pid %d) left before its output was opened", self.profile.name, tool, pid)
            return
        os.set_blocking(out_fd, True)
        os.set_blocking(err_fd, True)
        out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(out_fd, "wb", buffering=0))
        err, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(err_fd, "wb", buffering=0))
        stdin_path = folder / "stdin"
        call = Call(
            tool=tool,
            pid=pid,
            folder=folder,
            argv=_read_argv(folder / "argv"),
            cwd=_read_text(folder / "cwd") or "/",
            cmdline=_read_text(folder / "cmdline"),
            stdin=stdin_path.read_bytes() if stdin_path.exists() else None,
            notify=_read_text(folder / "notify"),
            out=out,
            err=err,
            stop=stop,
            gone=gone,
        )
        handler = self.handlers.get(tool)
        code = 127
        try:
            if handler is None:
                call.write_err(f"{tool}: not a tool of this virtual phone\n")
            else:
                code = await handler(call)
        except asyncio.CancelledError:
            code = 128 + signal.SIGTERM
            raise
        except Exception as exc:  # the tool "crashed": say so, as a real crash would show
            LOG.exception("%s: %s failed", self.profile.name, tool)
            call.write_err(f"{tool}: internal error of the virtual lab: {exc}\n")
            code = 134
        finally:
            with contextlib.suppress(OSError):
                (folder / "status").write_text(f"{code}\n")
            for transport in (out, err):
                with contextlib.suppress(Exception):
                    await _drain_and_close(transport)
            control_transport.close()

    # -- stand-ins ----------------------------------------------------------------------------------

    async def run_standin(self, call: Call) -> int:
        """The runtimes' tools: a lab process in this phone's cgroup runs the real host runtime and
        prints the tool's own output; each timed inference is a trace event when tracing."""
        events_read, events_write = os.pipe()
        command = [
            sys.executable,
            "-m",
            "harness.lab.standins",
            call.tool,
            "--state",
            str(self.root.state_dir),
            "--cwd",
            call.cwd,
            "--",
            *call.argv,
        ]
        env = {**os.environ, "EDGELAB_STANDIN_EVENTS_FD": str(events_write)}
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            pass_fds=(events_write,),
            preexec_fn=self.cgroup.enter if self.cgroup else None,
            start_new_session=True,
        )
        os.close(events_write)
        mapping = self.root.host_path(STANDIN_DIR) / str(call.pid)
        with contextlib.suppress(OSError):
            mapping.write_text(f"{process.pid} {call.tool}\n")
        loop = asyncio.get_running_loop()
        events = asyncio.StreamReader()
        events_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(events), os.fdopen(events_read, "rb", buffering=0)
        )
        assert process.stdout is not None and process.stderr is not None
        pumps = asyncio.gather(
            _pump(process.stdout, call.write_out),
            _pump(process.stderr, call.write_err),
            self._trace_events(events, call),
        )
        ended = asyncio.ensure_future(call.ended())
        try:
            waiting: set[asyncio.Future[Any]] = {pumps, ended}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if ended in done:  # SIGTERM to the tool, or its caller died: the tool dies too
                _kill(process)
                await process.wait()
                return 128 + signal.SIGTERM
            return await process.wait()
        finally:
            ended.cancel()
            _kill(process)
            pumps.cancel()
            events_transport.close()
            with contextlib.suppress(OSError):
                mapping.unlink()

    async def _trace_events(self, events: asyncio.StreamReader, call: Call) -> None:
        """``begin_ns end_ns name`` lines from the stand-in: its atrace sections."""
        count = 0
        while line := await events.readline():
            count += 1
            parts = line.decode(errors="replace").split(" ", 2)
            if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
                self.tracing.atrace_section(
                    call.pid, call.cmdline, int(parts[0]), int(parts[1]), parts[2].strip()
                )
        LOG.debug("%s: %s (pid %d) reported %d trace sections", self.profile.name, call.tool, call.pid, count)


async def _pump(source: asyncio.StreamReader, emit: Callable[[bytes], None]) -> None:
    while chunk := await source.read(65536):
        emit(chunk)


async def _drain_and_close(transport: asyncio.WriteTransport) -> None:
    for _ in range(2000):  # a reader that went away makes this end with the transport
        if transport.is_closing() or transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.005)
    transport.close()


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _read_argv(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError:
        return []
    return [part.decode(errors="surrogateescape") for part in raw.split(b"\0")[:-1]]
