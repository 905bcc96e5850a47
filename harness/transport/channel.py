"""The persistent channel: one long-lived agent per device (and runtime) over one stream.

Requests and answers are frames (a 4-byte big-endian length, a JSON object) with ids, so a
heartbeat is answered while a run goes on; one reader thread per channel dispatches answers by
id (as execnet's receiver thread does) and sends the pings. A channel that goes silent for
``LOST_AFTER_S`` while it is in use, or closes, is lost: it is reopened once, and after that its
owner goes back to the per-command path. Limits: answers are held in memory (the agent caps
them at 32 MiB of output), and files over ``read_max_bytes`` are pulled the per-command way.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import itertools
import json
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import (
    AgentError,
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    EdgeLabError,
    TransportError,
)
from harness.transport.base import CommandResult, Stream, Transport, WrappedTransport

PROTOCOL = 1
HEARTBEAT_S = 0.5  # ping period while a request is pending
IDLE_PING_S = 5.0  # ping period while idle: keeps the agent's silence watchdog quiet
LOST_AFTER_S = 2.0  # silence while in use after which the channel is lost
START_TIMEOUT_S = 120.0  # interpreter start and imports on a slow board
_POLL_S = 0.25
_GRACE_S = 5.0  # past a request's own timeout, for the agent's answer that it stopped the command
MAX_FRAME_BYTES = 64 << 20
STDIN_MAX_BYTES = 64 << 10  # larger input goes the per-command (streaming) way
READ_MAX_BYTES = 4 << 20

#: The phase of the measurement a request belongs to (set by runners.base.phase), for the note
#: that names where a channel was lost.
CURRENT_PHASE: contextvars.ContextVar[str | None] = contextvars.ContextVar("edgelab_phase", default=None)


class ChannelLost(ConnectionLost):
    """The stream closed or went silent; ``closed`` tells a hang-up from silence."""

    def __init__(self, device: str, message: str, *, closed: bool) -> None:
        super().__init__(device, message)
        self.reason = message
        self.closed = closed


def encode_frame(document: dict[str, Any]) -> bytes:
    data = json.dumps(document, separators=(",", ":")).encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def decode_frames(buffer: bytearray) -> list[Any]:
    """Take every whole frame off the front of ``buffer``; ValueError when out of step."""
    found = []
    while len(buffer) >= 4:
        size = int.from_bytes(bytes(buffer[:4]), "big")
        if size > MAX_FRAME_BYTES:
            raise ValueError(f"a frame of {size} bytes is over the {MAX_FRAME_BYTES}-byte limit")
        if len(buffer) < 4 + size:
            break
        payload = bytes(buffer[4 : 4 + size])
        del buffer[: 4 + size]
        found.append(json.loads(payload.decode("utf-8")))
    return found


@dataclass
class _Waiter:
    sent_at: float
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] | None = None
    lost: ChannelLost | None = None


class Channel:
    """One open stream to one agent process. Thread-safe: any thread may send a request."""

    def __init__(self, device: str, label: str, stream: Stream, hello: dict[str, Any]) -> None:
        self.device = device
        self.label = label
        self.pid = int(hello.get("pid") or 0)
        self.hello = hello
        self._stream = stream
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # sending, and the table of waiters
        self._waiters: dict[int, _Waiter] = {}
        self._lost: ChannelLost | None = None
        self._closing = False
        self._buffer = bytearray()
        self._reader = threading.Thread(target=self._read_loop, name=f"edgelab-channel-{device}", daemon=True)
        self._reader.start()

    @classmethod
    def open(
        cls, transport: Transport, argv: Sequence[str], *, label: str, timeout: float = START_TIMEOUT_S
    ) -> Channel:
        """Start the agent and wait for its hello frame. Raises AgentError with what the device
        printed when no agent answers (no Python, a broken install)."""
        stream = transport.open_stream(argv)
        buffer = bytearray()
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                data = stream.recv(remaining)
                if not data:
                    raise EOFError
                buffer.extend(data)
                frames = decode_frames(buffer)
                if frames:
                    hello = frames[0]
                    break
        except (TimeoutError, EOFError, OSError, ValueError) as exc:
            tail = stream.stderr_tail().strip()[-800:]
            stream.close()
            what = "did not answer in time" if isinstance(exc, TimeoutError) else "ended before answering"
            raise AgentError(
                f"device '{transport.device}': the persistent agent ({label}) {what}; "
                f"stderr: {tail!r}. Set persistent_channel: false for this device to use one command per "
                "request"
            ) from None
        if not isinstance(hello, dict) or hello.get("kind") != "hello" or hello.get("protocol") != PROTOCOL:
            stream.close()
            raise AgentError(
                f"device '{transport.device}': the persistent agent ({label}) greeted with {hello!r}, "
                f"not protocol {PROTOCOL}: the agent on the device is from another EdgeLab version"
            )
        channel = cls(transport.device, label, stream, hello)
        channel._buffer = buffer
        return channel

    # -- requests ----------------------------------------------------------------------------

    def request(self, op: str, body: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer. Raises ChannelLost, or TimeoutError when no
        answer came within ``timeout`` plus a grace (the request is then cancelled)."""
        ident = next(self._ids)
        waiter = _Waiter(time.monotonic())
        frame = encode_frame({"id": ident, "op": op, "timeout_s": timeout, **body})
        with self._lock:
            if self._lost is not None:
                raise self._lost
            self._waiters[ident] = waiter
            try:
                self._stream.send(frame)
            except OSError as exc:
                self._waiters.pop(ident, None)
                raise self._lose(f"the persistent channel broke while sending ({exc})", closed=True) from None
        if not waiter.done.wait(timeout + _GRACE_S):
            with self._lock:
                self._waiters.pop(ident, None)
            with contextlib.suppress(ChannelLost, OSError):
                self._send({"id": next(self._ids), "op": "cancel", "target": ident})
            raise TimeoutError
        if waiter.lost is not None:
            raise waiter.lost
        assert waiter.answer is not None
        return waiter.answer

    def _send(self, document: dict[str, Any]) -> None:
        with self._lock:
            if self._lost is not None:
                raise self._lost
            self._stream.send(encode_frame(document))

    @property
    def lost(self) -> ChannelLost | None:
        return self._lost

    # -- the reader thread --------------------------------------------------------------------

    def _lose(self, reason: str, *, closed: bool) -> ChannelLost:
        """Mark the channel lost and wake every waiter (call with or without the lock)."""
        lost = ChannelLost(self.device, reason, closed=closed)
        if self._lost is None:
            self._lost = lost
        for waiter in list(self._waiters.values()):
            waiter.lost = self._lost
            waiter.done.set()
        self._waiters.clear()
        return self._lost

    def _read_loop(self) -> None:
        last_heard = time.monotonic()
        last_ping = 0.0
        try:
            self._dispatch(decode_frames(self._buffer))
            while not self._closing and self._lost is None:
                now = time.monotonic()
                with self._lock:
                    pending = [w.sent_at for w in self._waiters.values()]
                if now - last_ping >= (HEARTBEAT_S if pending else IDLE_PING_S):
                    self._send({"id": 0, "op": "ping"})
                    last_ping = now
                try:
                    data = self._stream.recv(_POLL_S)
                except TimeoutError:
                    data = None
                if data == b"":
                    if not self._closing:
                        with self._lock:
                            self._lose("the device closed the persistent channel", closed=True)
                    return
                now = time.monotonic()
                if data:
                    last_heard = now
                    self._buffer.extend(data)
                    self._dispatch(decode_frames(self._buffer))
                silent_since = max([last_heard, *pending]) if pending else last_heard
                limit = LOST_AFTER_S if pending else IDLE_PING_S * 2
                if now - silent_since > limit:
                    with self._lock:
                        self._lose(
                            f"no answer from the device (no heartbeat on the persistent channel for "
                            f"{now - silent_since:.1f} s)",
                            closed=False,
                        )
                    return
        except (OSError, ValueError, EdgeLabError) as exc:
            if not self._closing:
                with self._lock:
                    self._lose(f"the persistent channel broke ({exc})", closed=True)

    def _dispatch(self, frames: list[Any]) -> None:
        for frame in frames:
            if not isinstance(frame, dict):
                continue
            ident = frame.get("id")
            with self._lock:
                waiter = self._waiters.pop(ident, None) if isinstance(ident, int) and ident else None
            if waiter is not None:
                waiter.answer = frame
                waiter.done.set()

    def close(self) -> None:
        """Say goodbye (best effort) and close the stream; the agent exits at EOF."""
        self._closing = True
        with contextlib.suppress(ChannelLost, OSError):
            self._send({"id": 0, "op": "bye"})
        with contextlib.suppress(OSError):
            self._stream.close()
        self._reader.join(timeout=2 * _POLL_S + 1)


def _result(argv: tuple[str, ...], answer: dict[str, Any], started: float) -> CommandResult:
    code = answer.get("exit_code")
    return CommandResult(
        argv=argv,
        exit_code=code if isinstance(code, int) else 255,
        stdout=str(answer.get("stdout", "")),
        stderr=str(answer.get("stderr", "")),
        duration_s=time.monotonic() - started,
    )


class PersistentChannel:
    """A channel that is opened on first use, reopened once after a loss, and then given up
    (``given_up`` says why): its owner then takes the per-command path, and ``notes`` say so."""

    def __init__(self, device: str, label: str, opener: Callable[[], Channel]) -> None:
        self.device = device
        self.label = label
        self._opener = opener
        self._channel: Channel | None = None
        self._lock = threading.Lock()
        self._reconnected = False
        self.given_up: str | None = None
        self._notes: list[str] = []

    @property
    def pid(self) -> int | None:
        return self._channel.pid if self._channel is not None else None

    def take_notes(self) -> list[str]:
        """What happened to the channel since the last call (for the next result's notes)."""
        notes, self._notes = self._notes, []
        return notes

    def _give_up(self, reason: str) -> None:
        self.given_up = reason
        self._notes.append(
            f"persistent channel ({self.label}) given up: {reason}; one command per request from now on"
        )

    def _current(self) -> Channel | None:
        with self._lock:
            if self.given_up is not None:
                return None
            if self._channel is None:
                try:
                    self._channel = self._opener()
                except (AgentError, TransportError) as exc:
                    self._give_up(f"it could not start: {exc}")
                    return None
            return self._channel

    def request(self, op: str, body: dict[str, Any], *, timeout: float, what: str) -> dict[str, Any] | None:
        """The answer, or None when the channel is given up (the caller takes the per-command
        path). ``what`` names the request in errors. A loss reopens the channel once and asks
        again; a device that cannot be reached at all raises ConnectionLost, named."""
        channel = self._current()
        if channel is None:
            return None
        try:
            return channel.request(op, body, timeout=timeout)
        except ChannelLost as lost:
            return self._after_loss(channel, lost, (op, body, timeout, what))

    def _after_loss(
        self, channel: Channel, lost: ChannelLost, again_as: tuple[str, dict[str, Any], float, str]
    ) -> dict[str, Any] | None:
        op, body, timeout, what = again_as
        phase = CURRENT_PHASE.get() or "between measurements"
        where = f"device '{self.device}', phase {phase}"
        with self._lock:
            if self._channel is channel:
                self._channel = None
            channel.close()
            if self._reconnected:
                self._give_up(f"lost a second time ({where}): {lost.reason}")
                return None
            self._reconnected = True
            try:
                self._channel = self._opener()
            except TransportError as exc:
                self.given_up = f"lost ({where}): {lost.reason}; reconnecting failed: {exc}"
                raise ConnectionLost(
                    self.device, f"{lost.reason} during {what}; reconnecting failed: {_detail(exc)}"
                ) from None
            except AgentError as exc:
                self._give_up(f"lost ({where}): {lost.reason}; reconnecting failed: {exc}")
                return None
            self._notes.append(
                f"persistent channel ({self.label}) lost ({where}): {lost.reason}; reconnected"
            )
            reopened = self._channel
        try:
            return reopened.request(op, body, timeout=timeout)
        except ChannelLost as again:
            with self._lock:
                self._channel = None
                reopened.close()
                self._give_up(f"lost again right after reconnecting ({where}): {again.reason}")
            return None

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None


def _detail(exc: TransportError) -> str:
    prefix = f"device '{exc.device}': "
    text = str(exc)
    return text[len(prefix) :] if text.startswith(prefix) else text


def run_over(
    channel: PersistentChannel,
    op: str,
    argv: Sequence[str],
    *,
    timeout: float,
    body: dict[str, Any] | None = None,
    shown: Sequence[str] | None = None,
) -> CommandResult | None:
    """Run ``argv`` as ``op`` ("exec" or "agent") on the channel; None when it is given up.
    Raises CommandTimeout past ``timeout`` (the agent has stopped the command by then)."""
    args = tuple(argv)
    label = shlex.join(shown if shown is not None else args)
    started = time.monotonic()
    try:
        answer = channel.request(op, {"argv": list(argv), **(body or {})}, timeout=timeout, what=label)
    except TimeoutError:
        raise CommandTimeout(channel.device, label, timeout) from None
    if answer is None:
        return None
    if "error" in answer:
        raise TransportError(channel.device, f"the persistent agent refused {label}: {answer['error']}")
    if answer.get("timed_out"):
        raise CommandTimeout(channel.device, label, timeout)
    return _result(tuple(shown if shown is not None else args), answer, started)


class ChannelTransport(WrappedTransport):
    """A Transport whose commands and small-file pulls go over a persistent channel; pushes and
    streamed input keep the device's own transport, as does everything once the channel is given
    up. Everything above it (deploy, health checks, runners) is unchanged."""

    def __init__(self, base: Transport, channel: PersistentChannel) -> None:
        super().__init__(base)
        self.channel = channel

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
        result = None
        if stdin_file is None and (stdin is None or len(stdin) <= STDIN_MAX_BYTES):
            body = {"cwd": cwd, "stdin": base64.b64encode(stdin).decode("ascii") if stdin else None}
            result = run_over(self.channel, "exec", argv, timeout=timeout, body=body)
        if result is None:
            return self.base_run(
                argv,
                timeout=timeout,
                check=check,
                stdin=stdin,
                cwd=cwd,
                stdin_file=stdin_file,
                stdin_progress=stdin_progress,
            )
        if check and not result.ok:
            raise CommandFailed(self.device, shlex.join(result.argv), result.exit_code, result.stderr)
        return result

    def pull(self, remote: str, local: Path) -> int:
        answer = self.channel.request(
            "read", {"path": remote, "max_bytes": READ_MAX_BYTES}, timeout=60.0, what=f"pull {remote}"
        )
        if answer is None or "too_large" in answer:
            return self.base.pull(remote, local)
        if answer.get("missing"):
            raise TransportError(self.device, f"no such file on the device: {remote}")
        if "error" in answer:
            raise TransportError(self.device, f"pull {remote} -> {local} failed: {answer['error']}")
        data = base64.b64decode(str(answer.get("data", "")))
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        Path(local).write_bytes(data)
        return len(data)

    def close(self) -> None:
        self.channel.close()
        super().close()


@contextlib.contextmanager
def in_phase(name: str) -> Iterator[None]:
    """Requests made inside are noted as belonging to phase ``name``."""
    token = CURRENT_PHASE.set(name)
    try:
        yield
    finally:
        CURRENT_PHASE.reset(token)
