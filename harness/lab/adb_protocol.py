"""The device side of the ADB wire format: transport messages, shell v2 frames, sync requests.

Pure codecs, written from AOSP's protocol.txt / SYNC.TXT / shell_protocol.h; they do not share
code with the host-side transport on purpose (one bug must not cancel its twin).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_STLS = 0x534C5453
COMMAND_NAMES = {
    A_SYNC: "SYNC",
    A_CNXN: "CNXN",
    A_AUTH: "AUTH",
    A_OPEN: "OPEN",
    A_OKAY: "OKAY",
    A_CLSE: "CLSE",
    A_WRTE: "WRTE",
    A_STLS: "STLS",
}
VERSION = 0x01000001  # skips the payload checksum
HEADER = struct.Struct("<6I")
MAX_PAYLOAD_LIMIT = 1 << 20


class ProtocolError(Exception):
    """The peer sent bytes that are not ADB."""


@dataclass(frozen=True)
class Message:
    command: int
    arg0: int
    arg1: int
    payload: bytes = b""

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command, hex(self.command))

    def pack(self) -> bytes:
        checksum = sum(self.payload) & 0xFFFFFFFF
        header = HEADER.pack(
            self.command, self.arg0, self.arg1, len(self.payload), checksum, self.command ^ 0xFFFFFFFF
        )
        return header + self.payload


def parse_header(data: bytes) -> tuple[int, int, int, int]:
    """(command, arg0, arg1, payload length) of a 24-byte header, validated."""
    if len(data) != HEADER.size:
        raise ProtocolError(f"header must be {HEADER.size} bytes, got {len(data)}")
    command, arg0, arg1, length, _checksum, magic = HEADER.unpack(data)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic {magic:#010x} for command {command:#010x}")
    if command not in COMMAND_NAMES:
        raise ProtocolError(f"unknown command {command:#010x}")
    if length > MAX_PAYLOAD_LIMIT:
        raise ProtocolError(f"payload of {length} bytes exceeds {MAX_PAYLOAD_LIMIT}")
    return command, arg0, arg1, length


# -- shell protocol v2 -----------------------------------------------------------------------------

SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN, SHELL_WINDOW = range(6)
SHELL_HEADER = struct.Struct("<BI")


def shell_frame(kind: int, payload: bytes) -> bytes:
    return SHELL_HEADER.pack(kind, len(payload)) + payload


class ShellFrameReader:
    """Frames from the host (stdin, close-stdin, window size), across arbitrary WRTE splits."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer.extend(data)
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= SHELL_HEADER.size:
            kind, length = SHELL_HEADER.unpack_from(self._buffer)
            if kind > SHELL_WINDOW:
                raise ProtocolError(f"shell v2: unknown frame id {kind}")
            end = SHELL_HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append((kind, bytes(self._buffer[SHELL_HEADER.size : end])))
            del self._buffer[:end]
        return frames


def parse_shell_service(service: str) -> tuple[bool, str]:
    """``shell[,v2][,raw][,TERM=..]:CMD`` -> (uses v2, command)."""
    head, _, command = service.partition(":")
    options = head.split(",")[1:]
    return "v2" in options, command


# -- sync ----------------------------------------------------------------------------------------

SYNC_ID_LENGTH = struct.Struct("<4sI")
MAX_SYNC_PATH = 1024
SYNC_DATA_MAX = 64 * 1024
SYNC_REQUESTS = {b"STAT", b"STA2", b"LST2", b"LIST", b"LIS2", b"SEND", b"RECV", b"QUIT", b"DATA", b"DONE"}


@dataclass(frozen=True)
class SyncRequest:
    id: bytes
    argument: int  # path length, data length, or mtime (DONE)
    payload: bytes


class SyncReader:
    """The sync service is a byte stream cut anywhere by WRTEs: reassemble whole requests."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[SyncRequest]:
        self._buffer.extend(data)
        requests: list[SyncRequest] = []
        while len(self._buffer) >= SYNC_ID_LENGTH.size:
            ident, argument = SYNC_ID_LENGTH.unpack_from(self._buffer)
            if ident not in SYNC_REQUESTS:
                raise ProtocolError(f"sync: unknown request {ident!r}")
            if ident == b"DONE":  # the argument is an mtime, no payload follows
                requests.append(SyncRequest(ident, argument, b""))
                del self._buffer[: SYNC_ID_LENGTH.size]
                continue
            limit = SYNC_DATA_MAX if ident == b"DATA" else MAX_SYNC_PATH
            if argument > limit:
                raise ProtocolError(f"sync: {ident.decode()} length {argument} exceeds {limit}")
            end = SYNC_ID_LENGTH.size + argument
            if len(self._buffer) < end:
                break
            requests.append(SyncRequest(ident, argument, bytes(self._buffer[SYNC_ID_LENGTH.size : end])))
            del self._buffer[:end]
        return requests


def sync_status(ident: bytes, value: int = 0) -> bytes:
    return SYNC_ID_LENGTH.pack(ident, value)


def sync_fail(message: str) -> bytes:
    encoded = message.encode()
    return SYNC_ID_LENGTH.pack(b"FAIL", len(encoded)) + encoded


def stat_v1(mode: int, size: int, mtime: int) -> bytes:
    return b"STAT" + struct.pack("<III", mode, size & 0xFFFFFFFF, mtime & 0xFFFFFFFF)


V2_STAT = struct.Struct("<IQQIIIIQqqq")


def stat_v2(
    ident: bytes, error: int, values: tuple[int, int, int, int, int, int, int, int, int, int] | None
) -> bytes:
    """STA2/LST2 body: error, dev, ino, mode, nlink, uid, gid, size, atime, mtime, ctime."""
    if values is None:
        return ident + V2_STAT.pack(error, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return ident + V2_STAT.pack(error, *values)


def dent_v1(mode: int, size: int, mtime: int, name: bytes) -> bytes:
    return b"DENT" + struct.pack("<IIII", mode, size & 0xFFFFFFFF, mtime & 0xFFFFFFFF, len(name)) + name
