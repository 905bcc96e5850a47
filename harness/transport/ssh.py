"""Linux boards over SSH (paramiko): commands on exec channels, files over SFTP.

Host keys are verified against known_hosts; an unknown key is accepted only with an explicit
``trust_on_first_use``, a changed key never. Every remote argument is shell-quoted.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shlex
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import paramiko

from harness.config import SshDevice
from harness.errors import (
    CommandFailed,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    HostKeyError,
    TransportError,
)
from harness.transport.base import CommandResult

_CHUNK = 1 << 16
_STREAM_BLOCK = 1 << 20
# The wrapper prints the remote shell's PID (= its process group: sshd starts each session with
# setsid) as the first stderr line, so a timeout can kill the whole tree on the board.
_PID_PREFIX = "edgelab-pid:"
_SFTP_WINDOW = 1 << 24
_SFTP_PACKET = 1 << 15


def _host_label(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts."""
    return host if port == 22 else f"[{host}]:{port}"


def _fingerprint(key: paramiko.PKey) -> str:
    return (
        f"{key.get_name()} SHA256:{key.fingerprint.split(':', 1)[-1]}"
        if hasattr(key, "fingerprint")
        else key.get_name()
    )


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown key with the fix in the message (paramiko's RejectPolicy says only 'not found')."""

    def __init__(self, device: str, port: int, known_hosts: str) -> None:
        self.device = device
        self.port = port
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        host = hostname.split("]", maxsplit=1)[0].lstrip("[")
        raise HostKeyError(
            self.device,
            f"host key of {host}:{self.port} ({_fingerprint(key)}) is not in {self.known_hosts}; "
            f"verify it and add it (ssh-keyscan -p {self.port} {host} >> {self.known_hosts}), "
            "or set trust_on_first_use: true for this device",
        )


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Record an unknown key in known_hosts, so the next connection verifies it."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a", encoding="utf-8") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class SshRunning:
    """A command on an exec channel whose stdout is read while it runs."""

    def __init__(
        self,
        device: str,
        argv: tuple[str, ...],
        channel: paramiko.Channel,
        killer: Callable[[int], None] | None = None,
        liveness_s: float = 15.0,
    ) -> None:
        self._device = device
        self._killer = killer
        self._liveness_s = liveness_s if liveness_s > 0 else 15.0
        self._argv = argv
        self._channel = channel
        self._started = time.monotonic()
        self._stderr = bytearray()
        self._rest = bytearray()
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        while True:
            try:
                chunk = self._channel.recv_stderr(_CHUNK)
            except (OSError, EOFError):
                return
            if not chunk:
                return
            self._stderr.extend(chunk)

    def lines(self) -> Iterator[str]:
        buffer = bytearray()
        while True:
            chunk = self._channel.recv(_CHUNK)
            if not chunk:
                break
            buffer.extend(chunk)
            while b"\n" in buffer:
                line, _, rest = buffer.partition(b"\n")
                buffer = bytearray(rest)
                yield line.decode("utf-8", errors="replace")
        if buffer:
            yield buffer.decode("utf-8", errors="replace")

    def _answers(self) -> bool:
        """Does the server still answer? A keepalive request with a bounded wait: a dead link or a
        frozen board never answers, while TCP alone would hang for minutes."""
        transport = self._channel.get_transport()
        if transport is None or not transport.is_active():
            return False
        probe = threading.Thread(
            target=lambda: transport.global_request("keepalive@openssh.com", wait=True), daemon=True
        )
        probe.start()
        probe.join(max(5.0, self._liveness_s))
        return not probe.is_alive()

    def wait(self, timeout: float) -> CommandResult:
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self._channel.settimeout(min(remaining, self._liveness_s))
                try:
                    chunk = self._channel.recv(_CHUNK)
                except TimeoutError:
                    if time.monotonic() < deadline and not self._answers():
                        silent = time.monotonic() - self._started
                        raise ConnectionLost(
                            self._device,
                            f"no answer from the device (link down or device gone) during "
                            f"{shlex.join(self._argv)}, {silent:.0f} s after it started",
                        ) from None
                    continue
                if not chunk:
                    break
                self._rest.extend(chunk)
            while not self._channel.exit_status_ready():
                if time.monotonic() > deadline:
                    raise TimeoutError
                time.sleep(0.005)
        except TimeoutError:
            self.kill()
            raise CommandTimeout(self._device, shlex.join(self._argv), timeout) from None
        self._drain.join(timeout=max(deadline - time.monotonic(), 1.0))
        code = self._channel.recv_exit_status()
        self._channel.close()
        if code == -1 and not self._answers():
            # -1: no exit status came. With the server still answering that is a command killed by a
            # signal (exit-signal); with the connection gone it is sshd killed or the board rebooted,
            # which --retries must see as a lost device, not as the command's result.
            raise ConnectionLost(
                self._device,
                f"the connection closed without an exit status during {shlex.join(self._argv)} "
                "(sshd gone or the device rebooted)",
            )
        return CommandResult(
            argv=self._argv,
            exit_code=code,
            stdout=self._rest.decode("utf-8", errors="replace"),
            stderr=self._stderr_text(),
            duration_s=time.monotonic() - self._started,
        )

    def _remote_pid(self) -> int | None:
        line, _, _ = bytes(self._stderr).partition(b"\n")
        text = line.decode("ascii", errors="replace")
        return (
            int(text[len(_PID_PREFIX) :])
            if text.startswith(_PID_PREFIX) and text[len(_PID_PREFIX) :].isdigit()
            else None
        )

    def _stderr_text(self) -> str:
        raw = bytes(self._stderr)
        if raw.startswith(_PID_PREFIX.encode()):
            raw = raw.partition(b"\n")[2]
        return raw.decode("utf-8", errors="replace")

    def kill(self) -> None:
        """Kill the remote process group, then close the channel. Without a pty sshd sends no
        SIGHUP, so closing alone would leave a silent command running on the board."""
        pid = self._remote_pid()
        if pid is not None and self._killer is not None:
            self._killer(pid)
        self._channel.close()


class SshStream:
    """A long-lived command on one exec channel: stdin and stdout as binary pipes; stderr read when
    it is ready (no thread). Closing sends EOF, which the command sees on stdin."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel
        self._stderr = bytearray()

    def send(self, data: bytes) -> None:
        try:
            self._channel.sendall(data)
        except (paramiko.SSHException, EOFError) as exc:
            raise OSError(f"ssh channel: {exc}") from None

    def recv(self, timeout: float) -> bytes:
        while self._channel.recv_stderr_ready():
            self._stderr = (self._stderr + self._channel.recv_stderr(_CHUNK))[-8192:]
        if self._channel.closed:
            return b""
        self._channel.settimeout(max(timeout, 0.0))
        try:
            return self._channel.recv(_CHUNK)
        except (paramiko.SSHException, EOFError) as exc:
            raise OSError(f"ssh channel: {exc}") from None

    def stderr_tail(self) -> str:
        raw = bytes(self._stderr)
        if raw.startswith(_PID_PREFIX.encode()):
            raw = raw.partition(b"\n")[2]
        return raw.decode("utf-8", errors="replace")

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self._channel.shutdown_write()
        self._channel.close()


class SshTransport:
    """One paramiko connection per device, opened in ``__init__`` so a bad host fails early."""

    def __init__(self, config: SshDevice) -> None:
        self.config = config
        self._device = config.name
        self._sftp: paramiko.SFTPClient | None = None
        self._home: str | None = None
        self._client = self._connect()

    integrity_in_transit = True  # every SSH packet carries a MAC

    @property
    def device(self) -> str:
        return self._device

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> paramiko.SSHClient:
        config = self.config
        where = f"{config.user}@{config.host}:{config.port}"
        client = paramiko.SSHClient()
        known_hosts = Path(config.known_hosts).expanduser()
        if known_hosts.exists():
            try:
                client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise ConnectError(self._device, f"cannot read known_hosts {known_hosts}: {exc}") from None
        if config.trust_on_first_use:
            client.set_missing_host_key_policy(_TrustOnFirstUse(known_hosts))
        else:
            client.set_missing_host_key_policy(_RefuseUnknown(self._device, config.port, str(known_hosts)))
        key_file = str(Path(config.key_file).expanduser()) if config.key_file else None
        if key_file and not os.path.isfile(key_file):
            raise ConnectError(
                self._device, f"key_file {key_file} does not exist (fix key_file in devices.yaml)"
            )
        try:
            client.connect(
                config.host,
                port=config.port,
                username=config.user,
                key_filename=key_file,
                look_for_keys=key_file is None,
                allow_agent=key_file is None,
                timeout=config.connect_timeout_s,
                banner_timeout=config.connect_timeout_s,
                auth_timeout=config.connect_timeout_s,
                channel_timeout=config.connect_timeout_s,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                self._device,
                f"host key of {config.host}:{config.port} does NOT match {known_hosts} "
                f"(got {_fingerprint(exc.key)}, expected {_fingerprint(exc.expected_key)}). "
                "Someone may be impersonating the device, or it was reinstalled: verify, then remove "
                f"the old line with ssh-keygen -R '{_host_label(config.host, config.port)}' -f {known_hosts}",
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            key_hint = f"key {key_file}" if key_file else "ssh-agent / ~/.ssh/id_* keys"
            raise ConnectError(
                self._device,
                f"authentication failed for {where} with {key_hint}: {exc}; check user and key_file, "
                "and that the public key is in the device's ~/.ssh/authorized_keys",
            ) from None
        except TimeoutError:
            client.close()
            raise ConnectError(
                self._device,
                f"{where}: no answer within {config.connect_timeout_s:g}s (connect_timeout_s); "
                "is the device powered and on this network?",
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            client.close()
            reason = (
                exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            )
            raise ConnectError(self._device, f"cannot connect to {where}: {reason}") from None
        transport = client.get_transport()
        if transport is not None and config.keepalive_s > 0:
            transport.set_keepalive(config.keepalive_s)
        if transport is not None and isinstance(transport.sock, socket.socket):
            # small requests and answers go out at once: with Nagle on, a request written while
            # the previous segment waits for its (delayed, up to 40 ms) ACK waits with it
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client

    def _open_channel(self) -> paramiko.Channel:
        transport = self._client.get_transport()
        closed = (
            f"the connection to {self.config.host}:{self.config.port} closed (sshd gone, the device "
            "rebooted or the link cut)"
        )
        if transport is None or not transport.is_active():
            raise ConnectionLost(self._device, closed)
        try:
            return transport.open_session(timeout=self.config.connect_timeout_s)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if not transport.is_active():  # it closed while the channel was being opened
                raise ConnectionLost(self._device, closed) from None
            reason = str(exc) or type(exc).__name__
            raise TransportError(self._device, f"cannot open a channel: {reason}") from None

    @staticmethod
    def _wrap(argv: Sequence[str], cwd: str | None) -> str:
        command = shlex.join(argv)
        announce = f"echo {_PID_PREFIX}$$ >&2; "
        return announce + (f"cd {shlex.quote(cwd)} && exec {command}" if cwd else f"exec {command}")

    def _kill_group(self, pid: int) -> None:
        """Best effort, on a fresh channel: the command's own channel is busy or broken."""
        try:
            channel = self._open_channel()
            channel.settimeout(self.config.connect_timeout_s)
            channel.exec_command(f"kill -KILL -- -{pid} 2>/dev/null || kill -KILL {pid} 2>/dev/null")
            channel.recv_exit_status()
            channel.close()
        except (TransportError, OSError, EOFError, paramiko.SSHException):
            pass

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
        channel = self._open_channel()
        try:
            channel.exec_command(self._wrap(args, cwd))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            raise TransportError(self._device, f"cannot start {shlex.join(args)}: {exc}") from None
        running = SshRunning(self._device, args, channel, self._kill_group, self.config.keepalive_s)
        try:
            channel.settimeout(timeout)
            if stdin is not None:
                channel.sendall(stdin)
            if stdin_file is not None:
                with Path(stdin_file).open("rb") as source:
                    for block in iter(lambda: source.read(_STREAM_BLOCK), b""):
                        channel.sendall(block)
                        if stdin_progress is not None:
                            stdin_progress(len(block))
            channel.shutdown_write()
        except TimeoutError:
            running.kill()
            raise CommandTimeout(self._device, shlex.join(args), timeout) from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            running.kill()
            raise TransportError(self._device, f"sending input to {shlex.join(args)} failed: {exc}") from None
        try:
            result = running.wait(timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            running.kill()
            raise TransportError(self._device, f"connection lost during {shlex.join(args)}: {exc}") from None
        if check and not result.ok:
            raise CommandFailed(self._device, shlex.join(args), result.exit_code, result.stderr)
        return result

    def spawn(self, argv: Sequence[str], *, cwd: str | None = None) -> SshRunning:
        args = tuple(argv)
        channel = self._open_channel()
        channel.exec_command(self._wrap(args, cwd))
        channel.shutdown_write()
        return SshRunning(self._device, args, channel, self._kill_group, self.config.keepalive_s)

    def open_stream(self, argv: Sequence[str]) -> SshStream:
        args = tuple(argv)
        channel = self._open_channel()
        try:
            channel.exec_command(self._wrap(args, None))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            raise TransportError(self._device, f"cannot start {shlex.join(args)}: {exc}") from None
        return SshStream(channel)

    # -- files --------------------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            transport = self._client.get_transport()
            if transport is None:
                raise TransportError(self._device, "connection is closed")
            sftp = paramiko.SFTPClient.from_transport(
                transport, window_size=_SFTP_WINDOW, max_packet_size=_SFTP_PACKET
            )
            if sftp is None:
                raise TransportError(
                    self._device, "the server refused the sftp subsystem (enable Subsystem sftp)"
                )
            self._sftp = sftp
        return self._sftp

    def expand_path(self, remote: str) -> str:
        """SFTP does not expand ``~``; the command shell would, but arguments are quoted."""
        if remote == "~" or remote.startswith("~/"):
            if self._home is None:
                self._home = self._sftp_client().normalize(".")
            return self._home + remote[1:]
        return remote

    def _makedirs(self, sftp: paramiko.SFTPClient, directory: str) -> None:
        missing: list[str] = []
        while directory not in ("", "/"):
            try:
                if stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
                    break
                raise TransportError(self._device, f"{directory} exists and is not a directory")
            except FileNotFoundError:
                missing.append(directory)
                directory = posixpath.dirname(directory)
        for path in reversed(missing):
            sftp.mkdir(path)

    def push(self, local: Path, remote: str) -> int:
        if not Path(local).is_file():
            raise TransportError(self._device, f"no such file on the host: {local}")
        sftp = self._sftp_client()
        target = self.expand_path(remote)
        try:
            self._makedirs(sftp, posixpath.dirname(target))
            with Path(local).open("rb") as source, sftp.open(target, "wb") as destination:
                destination.set_pipelined(True)
                for block in iter(lambda: source.read(_SFTP_PACKET * 8), b""):
                    destination.write(block)
            return sftp.stat(target).st_size or 0
        except OSError as exc:
            raise TransportError(self._device, f"push {local} -> {target} failed: {exc}") from None

    def pull(self, remote: str, local: Path) -> int:
        sftp = self._sftp_client()
        source = self.expand_path(remote)
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        try:
            size = sftp.stat(source).st_size or 0
            with sftp.open(source, "rb") as handle, Path(local).open("wb") as destination:
                handle.prefetch(size)
                for block in iter(lambda: handle.read(1 << 20), b""):
                    destination.write(block)
        except FileNotFoundError:
            raise TransportError(self._device, f"no such file on the device: {source}") from None
        except OSError as exc:
            raise TransportError(self._device, f"pull {source} -> {local} failed: {exc}") from None
        return Path(local).stat().st_size

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        self._client.close()
