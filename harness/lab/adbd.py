"""A device-side ADB daemon (asyncio) that the real adb server connects to with ``adb connect``.

Implements CNXN (no AUTH), streams with one WRTE in flight, and the services shell (v1, v2),
exec and sync; commands run in the device's sandbox and cgroup. Run it as a process with
``python -m harness.lab.adbd --profile pixel8 --port N --state DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from harness.lab import adb_protocol as wire
from harness.lab.profiles import DeviceProfile, get_profile
from harness.lab.sandbox import DeviceRoot
from harness.lab.stock import provision_stock, stock_root

LOG = logging.getLogger("edgelab.lab.adbd")
MAX_DATA = 1 << 20
FEATURES = ("shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir")
ANDROID_WRITABLE = {"/data": "data", "/tmp": "tmp", "/system": "system"}


def android_root(state_dir: Path, *, stock: bool = False) -> DeviceRoot:
    if stock:
        return stock_root(state_dir, ANDROID_WRITABLE)
    return DeviceRoot(state_dir, writable=ANDROID_WRITABLE)


def banner(profile: DeviceProfile) -> bytes:
    props = profile.props
    fields = [
        f"ro.product.name={props.get('ro.product.name', profile.name)}",
        f"ro.product.model={props.get('ro.product.model', profile.name)}",
        f"ro.product.device={props.get('ro.product.device', profile.name)}",
        f"features={','.join(FEATURES)}",
    ]
    return ("device::" + ";".join(fields) + ";").encode()


GETPROP = """#!/bin/sh
# getprop for the virtual device: prints [key]: [value] lines, or one value ("" when unset).
props=/system/etc/edgelab.prop
if [ "$#" -eq 0 ]; then
  while IFS='=' read -r key value; do printf '[%s]: [%s]\\n' "$key" "$value"; done < "$props"
  exit 0
fi
value=$(grep -m1 "^$1=" "$props" | cut -d= -f2-)
if [ -z "$value" ] && [ "$#" -ge 2 ]; then value=$2; fi
printf '%s\\n' "$value"
"""

DUMPSYS = """#!/bin/sh
# dumpsys for the virtual device: battery and thermalservice as the sensor model renders them;
# meminfo PID|NAME computed from the process's real /proc/PID/smaps, in Android 14's layout.
service=$1
file=/sys/edgelab/dumpsys/$service
if [ -z "$service" ]; then ls /sys/edgelab/dumpsys; echo meminfo; exit 0; fi
if [ "$service" = meminfo ]; then
  shift
  while [ "${1#-}" != "$1" ]; do shift; done
  target=$1
  case "$target" in
    '') echo "dumpsys meminfo: give a pid or a process name" >&2; exit 1 ;;
    *[!0-9]*) pid=$(grep -l -x -F "$target" /proc/[0-9]*/comm 2>/dev/null | head -n1 | cut -d/ -f3) ;;
    *) pid=$target ;;
  esac
  if [ -z "$pid" ] || [ ! -r "/proc/$pid/smaps" ]; then echo "No process found for: $target"; exit 0; fi
  name=$(cat "/proc/$pid/comm")
  echo "Applications Memory Usage (in Kilobytes):"
  awk '{ printf "Uptime: %d Realtime: %d\\n", $1 * 1000, $1 * 1000 }' /proc/uptime
  echo
  echo "** MEMINFO in pid $pid [$name] **"
  awk -f /system/etc/edgelab-meminfo.awk "/proc/$pid/smaps"
  exit 0
fi
if [ -f "$file" ]; then cat "$file"; exit 0; fi
echo "Can't find service: $service" >&2
exit 0
"""

MEMINFO_AWK = """
# /proc/PID/smaps -> the Pss/Private/SwapPss/Rss table and App Summary of `dumpsys meminfo`.
/^[0-9a-f]+-[0-9a-f]+ / {
  path = (NF >= 6) ? $6 : ""
  if (path == "[heap]" || path == "" || path ~ /^\\[anon:/) cat = "Native Heap"
  else if (path == "[stack]") cat = "Stack"
  else if (path ~ /\\.so(\\.[0-9.]+)?$/) cat = ".so mmap"
  else if (path ~ /^\\[/) cat = "Unknown"
  else cat = "Other mmap"
  next
}
$1 == "Pss:" { pss[cat] += $2; total_pss += $2 }
$1 == "Rss:" { rss[cat] += $2; total_rss += $2 }
$1 == "Private_Dirty:" { pd[cat] += $2; total_pd += $2 }
$1 == "Private_Clean:" { pc[cat] += $2; total_pc += $2 }
$1 == "SwapPss:" { sw[cat] += $2; total_sw += $2 }
END {
  printf "                   Pss  Private  Private  SwapPss      Rss     Heap     Heap     Heap\\n"
  printf "                 Total    Dirty    Clean    Dirty    Total     Size    Alloc     Free\\n"
  printf "                ------   ------   ------   ------   ------   ------   ------   ------\\n"
  split("Native Heap,Stack,.so mmap,Other mmap,Unknown", order, ",")
  for (i = 1; i <= 5; i++) {
    c = order[i]
    printf "%13s %8d %8d %8d %8d %8d\\n", c, pss[c], pd[c], pc[c], sw[c], rss[c]
  }
  printf "%13s %8d %8d %8d %8d %8d\\n", "TOTAL", total_pss, total_pd, total_pc, total_sw, total_rss
  printf " \\n App Summary\\n"
  printf "                       Pss(KB)                        Rss(KB)\\n"
  printf "                        ------                         ------\\n"
  printf "%20s %8d %30d\\n", "Native Heap:", pss["Native Heap"], rss["Native Heap"]
  printf "%20s %8d %30d\\n", "Code:", pss[".so mmap"], rss[".so mmap"]
  printf "%20s %8d %30d\\n", "Stack:", pss["Stack"], rss["Stack"]
  printf "%20s %8d\\n", "Private Other:", pss["Other mmap"] + pss["Unknown"]
  printf " \\n%20s %8d %17s %8d", "TOTAL PSS:", total_pss, "TOTAL RSS:", total_rss
  printf " %22s %8d\\n", "TOTAL SWAP PSS:", total_sw
}
"""


def provision(root: DeviceRoot, profile: DeviceProfile) -> None:
    """Files a phone has: /system/bin/getprop and dumpsys, /sdcard, /data/local/tmp."""
    root.prepare()
    system = root.state_dir / "system"
    (system / "bin").mkdir(parents=True, exist_ok=True)
    (system / "etc").mkdir(parents=True, exist_ok=True)
    props = "".join(f"{key}={value}\n" for key, value in sorted(profile.props.items()))
    if profile.stock:
        provision_stock(root, profile, props)
        return
    (system / "etc" / "edgelab.prop").write_text(props)
    (system / "etc" / "edgelab-meminfo.awk").write_text(MEMINFO_AWK)
    for name, text in (("getprop", GETPROP), ("dumpsys", DUMPSYS)):
        path = system / "bin" / name
        path.write_text(text)
        path.chmod(0o755)
    data = root.state_dir / "data"
    for folder in ("local/tmp", "media/0"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    sdcard = root.rootfs / "sdcard"
    if not sdcard.is_symlink():
        sdcard.symlink_to("/data/media/0")


# -- streams ---------------------------------------------------------------------------------------


class Stream:
    """One service stream: one WRTE in flight each way, OKAY when the data is consumed."""

    def __init__(self, connection: Connection, local_id: int, remote_id: int) -> None:
        self.connection = connection
        self.local_id = local_id
        self.remote_id = remote_id
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.ready = asyncio.Event()
        self.ready.set()
        self.closed = False

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        step = self.connection.max_data
        for start in range(0, len(view), step):
            await self.ready.wait()
            if self.closed:
                raise ConnectionResetError("stream closed by the host")
            self.ready.clear()
            await self.connection.send(
                wire.A_WRTE, self.local_id, self.remote_id, bytes(view[start : start + step])
            )

    async def read(self) -> bytes | None:
        """Next payload from the host, or None when it closed the stream."""
        data = await self.inbox.get()
        if data is not None and not self.closed:
            await self.connection.send(wire.A_OKAY, self.local_id, self.remote_id)
        return data

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.ready.set()
            await self.connection.send(wire.A_CLSE, self.local_id, self.remote_id)
            self.connection.streams.pop(self.local_id, None)

    def closed_by_host(self) -> None:
        self.closed = True
        self.ready.set()
        self.inbox.put_nowait(None)


class Connection:
    """One transport connection from the adb server."""

    def __init__(
        self, device: VirtualAdbDevice, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.device = device
        self.reader = reader
        self.writer = writer
        self.max_data = 4096
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.tasks: set[asyncio.Task[None]] = set()
        self.lock = asyncio.Lock()

    async def send(self, command: int, arg0: int, arg1: int, payload: bytes = b"") -> None:
        async with self.lock:
            self.writer.write(wire.Message(command, arg0, arg1, payload).pack())
            await self.writer.drain()

    async def serve(self) -> None:
        try:
            while True:
                header = await self.reader.readexactly(wire.HEADER.size)
                command, arg0, arg1, length = wire.parse_header(header)
                payload = await self.reader.readexactly(length) if length else b""
                await self.dispatch(command, arg0, arg1, payload)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except wire.ProtocolError as exc:
            LOG.warning("%s: dropping connection: %s", self.device.profile.name, exc)
        finally:
            for stream in list(self.streams.values()):
                stream.closed_by_host()
            for task in list(self.tasks):
                task.cancel()
            self.writer.close()

    async def dispatch(self, command: int, arg0: int, arg1: int, payload: bytes) -> None:
        if command == wire.A_CNXN:
            self.max_data = max(4096, min(arg1, MAX_DATA))
            await self.send(wire.A_CNXN, wire.VERSION, MAX_DATA, banner(self.device.profile))
        elif command == wire.A_OPEN:
            await self.open(arg0, payload.rstrip(b"\0").decode("utf-8", errors="replace"))
        elif command == wire.A_OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.remote_id = arg0
                stream.ready.set()
        elif command == wire.A_WRTE:
            stream = self.streams.get(arg1)
            if stream is None:
                await self.send(wire.A_CLSE, 0, arg0)
            else:
                stream.inbox.put_nowait(payload)
        elif command == wire.A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                stream.closed_by_host()

    async def open(self, remote_id: int, service: str) -> None:
        handler = self.device.service_for(service)
        if handler is None:
            LOG.info("%s: unsupported service %r", self.device.profile.name, service)
            await self.send(wire.A_CLSE, 0, remote_id)
            return
        local_id = self.next_id
        self.next_id += 1
        stream = Stream(self, local_id, remote_id)
        self.streams[local_id] = stream
        await self.send(wire.A_OKAY, local_id, remote_id)
        task = asyncio.create_task(self.run_service(handler, stream))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run_service(self, handler: Callable[[Stream], Awaitable[None]], stream: Stream) -> None:
        try:
            await handler(stream)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            LOG.exception("%s: service failed", self.device.profile.name)
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await stream.close()


# -- services -------------------------------------------------------------------------------------


async def _pump_output(source: asyncio.StreamReader, emit: Callable[[bytes], Awaitable[None]]) -> None:
    while True:
        chunk = await source.read(MAX_DATA)
        if not chunk:
            return
        await emit(chunk)


def _kill_tree(process: asyncio.subprocess.Process) -> None:
    """What adbd does when the host hangs up: the command's whole process group goes."""
    if process.returncode is None:
        for sig in (signal.SIGHUP, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)


class VirtualAdbDevice:
    """The phone: a profile, a device root, a cgroup, and a listening port."""

    def __init__(
        self, profile: DeviceProfile, state_dir: Path, *, preexec: Callable[[], None] | None = None
    ) -> None:
        self.profile = profile
        self.root = android_root(state_dir, stock=profile.stock)
        self.preexec = preexec  # joins the device's cgroup, so its CPU time is metered and capped
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> int:
        provision(self.root, self.profile)
        self.server = await asyncio.start_server(self._accept, host, port)
        self.port = int(self.server.sockets[0].getsockname()[1])
        LOG.info(
            "%s listening on %s:%d (isolated=%s)", self.profile.name, host, self.port, self.root.isolated
        )
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Connection(self, reader, writer).serve()

    def service_for(self, service: str) -> Callable[[Stream], Awaitable[None]] | None:
        if service.startswith("shell"):
            v2, command = wire.parse_shell_service(service)
            return (lambda s: self.shell_v2(s, command)) if v2 else (lambda s: self.shell_v1(s, command))
        if service.startswith("exec:"):
            return lambda s: self.exec_raw(s, service[len("exec:") :])
        if service == "sync:":
            return self.sync
        return None

    async def spawn(self, command: str, *, merge_stderr: bool) -> asyncio.subprocess.Process:
        script = command if command.strip() else "exec /bin/sh -i"
        return await asyncio.create_subprocess_exec(
            *self.root.command(script),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
            env=self.root.environment({"HOME": "/", "TMPDIR": "/data/local/tmp", "ANDROID_DATA": "/data"}),
            cwd=self.root.working_directory(),
            start_new_session=True,
            preexec_fn=self.preexec,
        )

    async def shell_v1(self, stream: Stream, command: str) -> None:
        await self._raw(stream, command, merge_stderr=True)

    async def exec_raw(self, stream: Stream, command: str) -> None:
        await self._raw(stream, command, merge_stderr=False)

    async def _raw(self, stream: Stream, command: str, *, merge_stderr: bool) -> None:
        process = await self.spawn(command, merge_stderr=merge_stderr)
        assert process.stdout is not None and process.stdin is not None
        feeder = asyncio.create_task(self._feed_raw_stdin(stream, process))
        try:
            await _pump_output(process.stdout, stream.write)
            await process.wait()
        finally:
            feeder.cancel()
            _kill_tree(process)

    async def _feed_raw_stdin(self, stream: Stream, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None
        while (data := await stream.read()) is not None:
            with contextlib.suppress(ConnectionError):
                process.stdin.write(data)
                await process.stdin.drain()
        _kill_tree(process)

    async def shell_v2(self, stream: Stream, command: str) -> None:
        process = await self.spawn(command, merge_stderr=False)
        assert process.stdout is not None and process.stderr is not None

        async def emit(kind: int, data: bytes) -> None:
            await stream.write(wire.shell_frame(kind, data))

        feeder = asyncio.create_task(self._feed_v2_stdin(stream, process))
        try:
            await asyncio.gather(
                _pump_output(process.stdout, lambda d: emit(wire.SHELL_STDOUT, d)),
                _pump_output(process.stderr, lambda d: emit(wire.SHELL_STDERR, d)),
            )
            code = await process.wait()
            await emit(wire.SHELL_EXIT, bytes([code & 0xFF if code >= 0 else (128 - code) & 0xFF]))
        finally:
            feeder.cancel()
            _kill_tree(process)

    async def _feed_v2_stdin(self, stream: Stream, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None
        frames = wire.ShellFrameReader()
        while (data := await stream.read()) is not None:
            for kind, payload in frames.feed(data):
                with contextlib.suppress(ConnectionError):
                    if kind == wire.SHELL_STDIN:
                        process.stdin.write(payload)
                        await process.stdin.drain()
                    elif kind == wire.SHELL_CLOSE_STDIN:
                        process.stdin.close()
        _kill_tree(process)  # the host hung up before the command ended

    # -- sync --------------------------------------------------------------------------------------

    async def sync(self, stream: Stream) -> None:
        session = SyncSession(self.root, stream)
        await session.serve()


class SyncSession:
    """File transfer over the sync service, against the device root."""

    def __init__(self, root: DeviceRoot, stream: Stream) -> None:
        self.root = root
        self.stream = stream
        self.reader = wire.SyncReader()
        self.receiving: tuple[str, int, object] | None = None  # (device path, mode, open file)
        self.failure: str | None = None

    async def serve(self) -> None:
        while (data := await self.stream.read()) is not None:
            for request in self.reader.feed(data):
                if request.id == b"QUIT":
                    return
                await self.handle(request)

    async def handle(self, request: wire.SyncRequest) -> None:
        path = request.payload.decode("utf-8", errors="replace")
        match request.id:
            case b"STAT":
                await self.stream.write(self.stat_v1(path))
            case b"STA2" | b"LST2":
                await self.stream.write(self.stat_v2(request.id, path, follow=request.id == b"STA2"))
            case b"LIST" | b"LIS2":
                await self.list_dir(path, v2=request.id == b"LIS2")
            case b"SEND":
                self.begin_send(path)
            case b"DATA":
                self.receive_data(request.payload)
            case b"DONE":
                await self.finish_send(request.argument)
            case b"RECV":
                await self.send_file(path)

    def _stat(self, path: str, *, follow: bool) -> os.stat_result | None:
        try:
            host = self.root.resolve(path, follow_last=follow)
            return os.stat(host) if follow else os.lstat(host)
        except OSError:
            return None

    def stat_v1(self, path: str) -> bytes:
        info = self._stat(path, follow=False)
        if info is None:
            return wire.stat_v1(0, 0, 0)
        return wire.stat_v1(info.st_mode, info.st_size, int(info.st_mtime))

    def stat_v2(self, ident: bytes, path: str, *, follow: bool) -> bytes:
        try:
            host = self.root.resolve(path, follow_last=follow)
            info = os.stat(host) if follow else os.lstat(host)
        except OSError as exc:
            return wire.stat_v2(ident, exc.errno or 2, None)
        values = (
            info.st_dev,
            info.st_ino,
            info.st_mode,
            info.st_nlink,
            info.st_uid,
            info.st_gid,
            info.st_size,
            int(info.st_atime),
            int(info.st_mtime),
            int(info.st_ctime),
        )
        return wire.stat_v2(ident, 0, values)

    async def list_dir(self, path: str, *, v2: bool) -> None:
        try:
            directory = self.root.resolve(path)
            names = sorted(os.listdir(directory))
        except OSError:
            names, directory = [], Path("/nonexistent")
        for name in [".", "..", *names]:
            try:
                info = os.lstat(directory / name)
            except OSError:
                continue
            encoded = name.encode()
            if v2:
                body = wire.V2_STAT.pack(
                    0, info.st_dev, info.st_ino, info.st_mode, info.st_nlink, info.st_uid, info.st_gid,
                    info.st_size, int(info.st_atime), int(info.st_mtime), int(info.st_ctime),
                )  # fmt: skip
                await self.stream.write(b"DNT2" + body + struct.pack("<I", len(encoded)) + encoded)
            else:
                await self.stream.write(wire.dent_v1(info.st_mode, info.st_size, int(info.st_mtime), encoded))
        done = b"DONE" + (bytes(wire.V2_STAT.size + 4) if v2 else bytes(16))
        await self.stream.write(done)

    def begin_send(self, spec: str) -> None:
        path, _, mode_text = spec.rpartition(",")
        if not path:
            path, mode_text = spec, "420"
        mode = int(mode_text) if mode_text.isdigit() else 0o644
        self.receiving = (path, mode, None)
        self.failure = None
        if not self.root.is_writable(path):
            self.failure = f"couldn't create file: Read-only file system: {path}"
            return
        try:
            host = self.root.resolve(os.path.dirname(path) or "/") / os.path.basename(path)
            host.parent.mkdir(parents=True, exist_ok=True)
            partial = host.with_name(host.name + ".edgelab-partial")
            self.receiving = (path, mode, (host, partial, partial.open("wb")))
        except OSError as exc:
            self.failure = f"couldn't create file: {exc.strerror}: {path}"

    def receive_data(self, data: bytes) -> None:
        if self.receiving is None:
            self.failure = "DATA outside of SEND"
            return
        target = self.receiving[2]
        if isinstance(target, tuple):
            target[2].write(data)

    async def finish_send(self, mtime: int) -> None:
        if self.receiving is None:
            await self.stream.write(wire.sync_fail("DONE outside of SEND"))
            return
        _path, mode, target = self.receiving
        self.receiving = None
        if isinstance(target, tuple):
            host, partial, handle = target
            handle.close()
            if self.failure is None:
                os.chmod(partial, stat.S_IMODE(mode) or 0o644)
                os.utime(partial, (time.time(), mtime or time.time()))
                os.replace(partial, host)
            else:
                with contextlib.suppress(OSError):
                    partial.unlink()
        if self.failure is not None:
            await self.stream.write(wire.sync_fail(self.failure))
        else:
            await self.stream.write(wire.sync_status(b"OKAY"))

    async def send_file(self, path: str) -> None:
        try:
            host = self.root.resolve(path)
            handle = host.open("rb")
        except IsADirectoryError:
            await self.stream.write(wire.sync_fail(f"{path}: Is a directory"))
            return
        except OSError as exc:
            await self.stream.write(wire.sync_fail(f"{path}: {exc.strerror or 'No such file or directory'}"))
            return
        with handle:
            while chunk := handle.read(wire.SYNC_DATA_MAX):
                await self.stream.write(wire.sync_status(b"DATA", len(chunk)) + chunk)
        await self.stream.write(wire.sync_status(b"DONE"))


# -- process entry point ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.lab.adbd", description=__doc__)
    parser.add_argument("--profile", default="pixel8")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any; avoid 5555-5585)")
    parser.add_argument("--state", required=True, help="the device's folder (persists /data across restarts)")
    parser.add_argument("--port-file", default=None, help="write the bound port here once listening")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    device = VirtualAdbDevice(get_profile(arguments.profile), Path(arguments.state))

    async def serve() -> None:
        port = await device.start(arguments.port)
        if arguments.port_file:
            Path(arguments.port_file).write_text(str(port))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await device.stop()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
