"""Android devices through an adb server (adbutils), commands over the shell v2 protocol.

Shell v2 frames stdout, stderr and the exit code, so exit codes and stderr are real; devices
without ``shell_v2`` fall back to v1 with an exit-code sentinel (stderr merged into stdout).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shlex
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import adbutils

from harness.config import AdbDevice
from harness.errors import CommandFailed, CommandTimeout, ConnectError, ConnectionLost, TransportError
from harness.transport.base import CommandResult

# Shell protocol packet ids (AOSP adb shell_protocol.h).
STDIN, STDOUT, STDERR, EXIT, CLOSE_STDIN, WINDOW_SIZE = range(6)
_HEADER = struct.Struct("<BI")
_V1_SENTINEL = "EDGELAB-EXIT:"
_SERVER_TIMEOUT_S = 10.0
# adbd reads stdin packets of up to its max payload; 64 KiB fits every adbd since Android 7.
_STDIN_PACKET = 1 << 16


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise adbutils.AdbError("the adb server closed the connection")
        data.extend(chunk)
    return bytes(data)


def _host_request(sock: socket.socket, request: str) -> None:
    """One request of the adb server's smart-socket protocol: a 4-hex-digit length, the request,
    then OKAY, or FAIL with a length-prefixed reason."""
    payload = request.encode("utf-8")
    sock.sendall(b"%04x" % len(payload) + payload)
    status = _recv_exactly(sock, 4)
    if status == b"OKAY":
        return
    if status == b"FAIL":
        length = _recv_exactly(sock, 4)
        try:
            size = int(length, 16)
        except ValueError:
            raise adbutils.AdbError(f"the adb server sent FAIL with a bad length {length!r}") from None
        raise adbutils.AdbError(_recv_exactly(sock, size).decode("utf-8", errors="replace"))
    raise adbutils.AdbError(f"the adb server answered {status!r}, not OKAY or FAIL")


class ShellProtocolError(TransportError):
    """The device sent something that is not a shell v2 packet."""


def encode_packet(kind: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


@dataclass(frozen=True)
class Packet:
    kind: int
    payload: bytes


class ShellV2Decoder:
    """Incremental: packets arrive split across socket reads at arbitrary boundaries."""

    def __init__(self, device: str = "?") -> None:
        self._buffer = bytearray()
        self._device = device

    def feed(self, data: bytes) -> list[Packet]:
        self._buffer.extend(data)
        packets: list[Packet] = []
        while len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if kind > WINDOW_SIZE:
                raise ShellProtocolError(
                    self._device,
                    f"shell v2: unknown packet id {kind} (is the device's adbd shell_v2-capable?)",
                )
            if len(self._buffer) < _HEADER.size + length:
                break
            payload = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
            del self._buffer[: _HEADER.size + length]
            packets.append(Packet(kind, payload))
        return packets

    @property
    def pending(self) -> int:
        return len(self._buffer)


class ShellV2Session:
    """One shell v2 command on an already-open service socket: feeds stdin, collects output."""

    def __init__(self, device: str, argv: tuple[str, ...], sock: socket.socket) -> None:
        self.device = device
        self.argv = argv
        self.sock = sock
        self.decoder = ShellV2Decoder(device)
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exit_code: int | None = None
        self.started = time.monotonic()

    def send_stdin(
        self, data: bytes | None, file: Path | None = None, progress: Callable[[int], None] | None = None
    ) -> None:
        """Send ``data`` and then the contents of ``file`` as stdin packets, then close stdin;
        ``progress`` hears the size of each packet of ``file`` as it goes out."""
        if data:
            for start in range(0, len(data), _STDIN_PACKET):
                self.sock.sendall(encode_packet(STDIN, data[start : start + _STDIN_PACKET]))
        if file is not None:
            with Path(file).open("rb") as source:
                for block in iter(lambda: source.read(_STDIN_PACKET), b""):
                    self.sock.sendall(encode_packet(STDIN, block))
                    if progress is not None:
                        progress(len(block))
        self.sock.sendall(encode_packet(CLOSE_STDIN))

    def take(self, packets: list[Packet]) -> list[bytes]:
        out: list[bytes] = []
        for packet in packets:
            if packet.kind == STDOUT:
                out.append(packet.payload)
            elif packet.kind == STDERR:
                self.stderr.extend(packet.payload)
            elif packet.kind == EXIT:
                self.exit_code = packet.payload[0] if packet.payload else 255
        return out

    def chunks(self, deadline: float | None = None) -> Iterator[bytes]:
        """stdout payloads as they arrive, until the exit packet or the socket closes."""
        while self.exit_code is None:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.sock.settimeout(remaining)
            data = self.sock.recv(1 << 16)
            if not data:
                break
            yield from self.take(self.decoder.feed(data))

    def finish(self, timeout: float) -> CommandResult:
        deadline = self.started + timeout
        try:
            for chunk in self.chunks(deadline):
                self.stdout.extend(chunk)
        except TimeoutError:
            self.close()
            raise CommandTimeout(self.device, shlex.join(self.argv), timeout) from None
        except OSError as exc:
            self.close()
            raise ConnectionLost(
                self.device, f"connection lost during {shlex.join(self.argv)}: {exc}"
            ) from None
        self.close()
        if self.exit_code is None:  # adbd died, or the phone rebooted: --retries reconnects
            raise ConnectionLost(
                self.device,
                f"shell closed without an exit code during {shlex.join(self.argv)} (device gone?)",
            )
        return self.result()

    def result(self) -> CommandResult:
        return CommandResult(
            argv=self.argv,
            exit_code=self.exit_code if self.exit_code is not None else 255,
            stdout=self.stdout.decode("utf-8", errors="replace"),
            stderr=self.stderr.decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - self.started,
        )

    def close(self) -> None:
        """Closing the socket makes adbd hang up the command (SIGHUP to its process group)."""
        with contextlib.suppress(OSError):
            self.sock.close()


class AdbRunning:
    """A spawned command streaming stdout over shell v2."""

    def __init__(self, session: ShellV2Session) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._consumed = False

    def lines(self) -> Iterator[str]:
        buffer = bytearray()
        self._consumed = True
        for chunk in self._session.chunks():
            buffer.extend(chunk)
            while b"\n" in buffer:
                line, _, rest = buffer.partition(b"\n")
                buffer = bytearray(rest)
                yield line.decode("utf-8", errors="replace")
        if buffer:
            yield buffer.decode("utf-8", errors="replace")

    def wait(self, timeout: float) -> CommandResult:
        self._session.started = time.monotonic()
        return self._session.finish(timeout)

    def kill(self) -> None:
        self._session.close()


class AdbStream:
    """A long-lived command on one shell v2 stream: stdin packets out, stdout packets in, stderr
    kept aside; the exit packet ends stdout. Closing the socket makes adbd hang the command up."""

    def __init__(self, session: ShellV2Session) -> None:
        self._session = session
        self._ready: list[bytes] = []

    def send(self, data: bytes) -> None:
        for start in range(0, len(data), _STDIN_PACKET):
            self._session.sock.sendall(encode_packet(STDIN, data[start : start + _STDIN_PACKET]))

    def recv(self, timeout: float) -> bytes:
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self._ready:
            if self._session.exit_code is not None:
                return b""
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._session.sock.settimeout(remaining)
            data = self._session.sock.recv(1 << 16)
            if not data:
                return b""
            self._ready.extend(c for c in self._session.take(self._session.decoder.feed(data)) if c)
        return self._ready.pop(0)

    def stderr_tail(self) -> str:
        return bytes(self._session.stderr[-8192:]).decode("utf-8", errors="replace")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._session.sock.sendall(encode_packet(CLOSE_STDIN))
        self._session.close()


def device_shell_command(argv: Sequence[str], cwd: str | None) -> str:
    """Quoted for the device's mksh/toybox sh; POSIX single quotes are enough there."""
    command = shlex.join(argv)
    return f"cd {shlex.quote(cwd)} && {command}" if cwd else command


_BINARY_PUSH_MIN_BYTES = 8 << 20


def _adb_binary() -> str | None:
    """The adb client adbutils ships (the same version as the lab's server), if present."""
    candidate = Path(adbutils.__file__).parent / "binaries" / "adb"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


class AdbTransport:
    """One Android device behind an adb server; checks server, serial and state up front."""

    def __init__(self, config: AdbDevice) -> None:
        self.config = config
        self._device_name = config.name
        self._client = adbutils.AdbClient(
            host=config.adb_host, port=config.adb_port, socket_timeout=_SERVER_TIMEOUT_S
        )
        self._server = f"{config.adb_host}:{config.adb_port}"
        self._check_server()
        if config.connect:
            self._adb_connect()
        self._check_state()
        self._adb = self._client.device(serial=config.serial)
        try:
            features = set(self._adb.get_features().split(","))
        except adbutils.AdbError as exc:
            raise ConnectError(self._device_name, f"cannot read features of {config.serial}: {exc}") from None
        self.shell_protocol = "v2" if "shell_v2" in features else "v1"
        self.features = features

    integrity_in_transit = False  # ADB stopped checksumming payloads in 0x01000001

    @property
    def device(self) -> str:
        return self._device_name

    # -- connection ---------------------------------------------------------------------------

    def _server_socket(self, timeout: float) -> socket.socket:
        """A connection to this device's adb server, made here and not by adbutils, which answers
        a refused connection with ``adb start-server``: a server on the default port, not this
        device's, and up to 20 s of waiting for it."""
        return socket.create_connection((self.config.adb_host, self.config.adb_port), timeout=timeout)

    def _check_server(self) -> None:
        try:
            with self._server_socket(_SERVER_TIMEOUT_S) as sock:
                _host_request(sock, "host:version")
        except (adbutils.AdbError, OSError) as exc:
            raise ConnectError(
                self._device_name,
                f"no adb server at {self._server} ({exc}); start one with `adb -P {self.config.adb_port} "
                "start-server` or fix adb_host/adb_port in devices.yaml",
            ) from None

    def _adb_connect(self) -> None:
        try:
            answer = self._client.connect(self.config.serial, timeout=_SERVER_TIMEOUT_S)
        except (adbutils.AdbError, OSError) as exc:
            raise ConnectError(self._device_name, f"adb connect {self.config.serial} failed: {exc}") from None
        if "connected" not in answer:
            raise ConnectError(self._device_name, f"adb connect {self.config.serial}: {answer.strip()}")

    def _check_state(self) -> None:
        try:
            listed = {info.serial: info.state for info in self._client.list()}
        except (adbutils.AdbError, OSError) as exc:
            raise ConnectError(
                self._device_name, f"adb server {self._server} cannot list devices: {exc}"
            ) from None
        serial = self.config.serial
        state = listed.get(serial)
        if state is None:
            seen = ", ".join(f"{s} ({st})" for s, st in sorted(listed.items())) or "none"
            hint = " or set connect: true for a host:port serial" if ":" in serial else ""
            raise ConnectError(
                self._device_name,
                f"serial {serial} is not attached to the adb server {self._server} (it sees: {seen}); "
                f"check the cable and `adb devices`{hint}",
            )
        if state == "unauthorized":
            raise ConnectError(
                self._device_name,
                f"{serial} is unauthorized: unlock the phone and accept the USB debugging prompt",
            )
        if state != "device":
            raise ConnectError(self._device_name, f"{serial} is {state}; reconnect it (adb reconnect)")

    def _open(self, service: str, timeout: float) -> socket.socket:
        """``host:transport:SERIAL`` then the service, on one socket to the adb server (adbutils'
        open_transport() asks the server's version on a second connection first, and sleeps 10 ms
        closing it: half a command's round trip in the lab)."""
        what = f"cannot open {service.partition(':')[0]} on {self.config.serial}"
        try:
            sock = self._server_socket(timeout)
        except OSError as exc:
            raise TransportError(
                self._device_name, f"{what}: no adb server at {self._server} ({exc.strerror or exc})"
            ) from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # a remote server's link
            _host_request(sock, f"host:transport:{self.config.serial}")
            _host_request(sock, service)
        except (adbutils.AdbError, OSError) as exc:
            sock.close()
            raise TransportError(self._device_name, f"{what}: {exc}") from None
        return sock

    # -- commands -----------------------------------------------------------------------------

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
        command = device_shell_command(args, cwd)
        if self.shell_protocol == "v2":
            session = ShellV2Session(self._device_name, args, self._open(f"shell,v2,raw:{command}", timeout))
            try:
                session.sock.settimeout(timeout)
                session.send_stdin(stdin, stdin_file, stdin_progress)
            except TimeoutError:
                session.close()
                raise CommandTimeout(self._device_name, shlex.join(args), timeout) from None
            except OSError as exc:
                session.close()
                raise TransportError(
                    self._device_name, f"sending input to {shlex.join(args)} failed: {exc}"
                ) from None
            result = session.finish(timeout)
        else:
            if stdin_file is not None:
                raise TransportError(
                    self._device_name, "stdin needs shell v2, which this device's adbd lacks"
                )
            result = self._run_v1(args, command, timeout, stdin)
        if check and not result.ok:
            raise CommandFailed(self._device_name, shlex.join(args), result.exit_code, result.stderr)
        return result

    def _run_v1(
        self, args: tuple[str, ...], command: str, timeout: float, stdin: bytes | None
    ) -> CommandResult:
        """Old adbd: the command runs in its own sh so its `exit` cannot eat the sentinel."""
        if stdin is not None:
            raise TransportError(self._device_name, "stdin needs shell v2, which this device's adbd lacks")
        started = time.monotonic()
        wrapped = f"sh -c {shlex.quote(command)}; echo {_V1_SENTINEL}$?"
        sock = self._open(f"shell:{wrapped}", timeout)
        output = bytearray()
        try:
            while True:
                remaining = started + timeout - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                data = sock.recv(1 << 16)
                if not data:
                    break
                output.extend(data)
        except TimeoutError:
            raise CommandTimeout(self._device_name, shlex.join(args), timeout) from None
        finally:
            sock.close()
        text = output.decode("utf-8", errors="replace")
        body, marker, code = text.rpartition(_V1_SENTINEL)
        if not marker or not code.strip().isdigit():
            raise TransportError(self._device_name, f"shell v1 output has no exit sentinel: {text[-300:]!r}")
        return CommandResult(args, int(code.strip()), body, "", time.monotonic() - started)

    def spawn(self, argv: Sequence[str], *, cwd: str | None = None) -> AdbRunning:
        if self.shell_protocol != "v2":
            raise TransportError(
                self._device_name, "streaming needs shell v2, which this device's adbd lacks"
            )
        args = tuple(argv)
        session = ShellV2Session(
            self._device_name, args, self._open(f"shell,v2,raw:{device_shell_command(args, cwd)}", 30)
        )
        session.sock.settimeout(None)
        session.send_stdin(None)
        return AdbRunning(session)

    def open_stream(self, argv: Sequence[str]) -> AdbStream:
        if self.shell_protocol != "v2":
            raise TransportError(
                self._device_name, "a persistent stream needs shell v2, which this device's adbd lacks"
            )
        command = device_shell_command(tuple(argv), None)
        session = ShellV2Session(self._device_name, tuple(argv), self._open(f"shell,v2,raw:{command}", 30))
        return AdbStream(session)

    # -- files --------------------------------------------------------------------------------

    def push(self, local: Path, remote: str) -> int:
        if not Path(local).is_file():
            raise TransportError(self._device_name, f"no such file on the host: {local}")
        self.run(["mkdir", "-p", posixpath.dirname(remote) or "/"], timeout=60, check=True)
        binary = _adb_binary()
        if binary is not None and Path(local).stat().st_size >= _BINARY_PUSH_MIN_BYTES:
            # the adb client's own sync is ~20% faster than adbutils' Python one on large files
            command = [binary, "-H", self.config.adb_host, "-P", str(self.config.adb_port)]
            command += ["-s", self.config.serial, "push", str(local), remote]
            done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
            if done.returncode != 0:
                problem = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise TransportError(self._device_name, f"push {local} -> {remote} failed: {problem[0]}")
        else:
            try:
                self._adb.sync.push(str(local), remote, mode=0o644)
            except (adbutils.AdbError, OSError) as exc:
                raise TransportError(self._device_name, f"push {local} -> {remote} failed: {exc}") from None
        size = self._adb.sync.stat(remote).size
        return int(size)

    def pull(self, remote: str, local: Path) -> int:
        info = self._adb.sync.stat(remote)
        if info.mode == 0:
            raise TransportError(self._device_name, f"no such file on the device: {remote}")
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._adb.sync.pull(remote, str(local))
        except (adbutils.AdbError, OSError) as exc:
            raise TransportError(self._device_name, f"pull {remote} -> {local} failed: {exc}") from None
        return Path(local).stat().st_size

    def close(self) -> None:
        """Each command owns its socket; nothing is held between commands."""
