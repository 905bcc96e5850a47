"""The ADB wire format of the virtual device: message headers, shell v2 frames and the sync
byte stream, each fed split at every possible point."""

from __future__ import annotations

import struct

import pytest

from harness.lab import adb_protocol as wire


def test_message_header_is_six_little_endian_words_with_magic():
    packed = wire.Message(wire.A_OPEN, 7, 0, b"shell:ls\0").pack()
    command, arg0, arg1, length, checksum, magic = struct.unpack("<6I", packed[:24])
    assert (command, arg0, arg1, length) == (0x4E45504F, 7, 0, 9)
    assert magic == command ^ 0xFFFFFFFF
    assert checksum == sum(b"shell:ls\0")
    assert packed[24:] == b"shell:ls\0"
    assert wire.parse_header(packed[:24]) == (wire.A_OPEN, 7, 0, 9)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (struct.pack("<6I", wire.A_OPEN, 1, 0, 0, 0, 0), "bad magic"),
        (struct.pack("<6I", 0x11111111, 1, 0, 0, 0, 0x11111111 ^ 0xFFFFFFFF), "unknown command"),
        (struct.pack("<6I", wire.A_WRTE, 1, 2, (1 << 20) + 1, 0, wire.A_WRTE ^ 0xFFFFFFFF), "exceeds"),
        (b"\0" * 23, "24 bytes"),
    ],
)
def test_malformed_headers_are_rejected_with_the_reason(header, message):
    with pytest.raises(wire.ProtocolError, match=message):
        wire.parse_header(header)


def test_shell_frames_reassemble_across_every_split():
    stream = wire.shell_frame(wire.SHELL_STDIN, b"hello") + wire.shell_frame(wire.SHELL_CLOSE_STDIN, b"")
    for cut in range(len(stream) + 1):
        reader = wire.ShellFrameReader()
        frames = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert frames == [(wire.SHELL_STDIN, b"hello"), (wire.SHELL_CLOSE_STDIN, b"")]


def test_unknown_shell_frame_id_is_an_error():
    with pytest.raises(wire.ProtocolError, match="unknown frame id 9"):
        wire.ShellFrameReader().feed(struct.pack("<BI", 9, 0))


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("shell:getprop", (False, "getprop")),
        ("shell,v2,raw:exit 3", (True, "exit 3")),
        ("shell,v2,TERM=xterm,pty:ls -l", (True, "ls -l")),
        ("shell:", (False, "")),
    ],
)
def test_shell_service_options(service, expected):
    assert wire.parse_shell_service(service) == expected


def _sync_stream() -> bytes:
    path = b"/data/local/tmp/f.bin,33188"
    data = b"x" * 1000
    return (
        struct.pack("<4sI", b"SEND", len(path))
        + path
        + struct.pack("<4sI", b"DATA", len(data))
        + data
        + struct.pack("<4sI", b"DONE", 1700000000)
        + struct.pack("<4sI", b"QUIT", 0)
    )


def test_sync_requests_reassemble_when_split_anywhere():
    stream = _sync_stream()
    for cut in range(0, len(stream) + 1, 7):
        reader = wire.SyncReader()
        requests = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [r.id for r in requests] == [b"SEND", b"DATA", b"DONE", b"QUIT"]
        assert requests[0].payload == b"/data/local/tmp/f.bin,33188"
        assert requests[1].payload == b"x" * 1000
        assert requests[2].argument == 1700000000  # DONE carries the mtime, no payload


def test_sync_byte_by_byte():
    reader = wire.SyncReader()
    requests = [r for byte in _sync_stream() for r in reader.feed(bytes([byte]))]
    assert [r.id for r in requests] == [b"SEND", b"DATA", b"DONE", b"QUIT"]


def test_sync_rejects_unknown_ids_and_oversized_lengths():
    with pytest.raises(wire.ProtocolError, match="unknown request"):
        wire.SyncReader().feed(b"NOPE\0\0\0\0")
    with pytest.raises(wire.ProtocolError, match="DATA length 65537 exceeds 65536"):
        wire.SyncReader().feed(struct.pack("<4sI", b"DATA", 65537))
    with pytest.raises(wire.ProtocolError, match="STAT length 2000 exceeds 1024"):
        wire.SyncReader().feed(struct.pack("<4sI", b"STAT", 2000))


def test_sync_replies():
    assert wire.sync_status(b"OKAY") == b"OKAY\0\0\0\0"
    assert wire.sync_fail("no such file") == b"FAIL" + struct.pack("<I", 12) + b"no such file"
    assert wire.stat_v1(0o100644, 5, 7) == b"STAT" + struct.pack("<III", 0o100644, 5, 7)
    missing = wire.stat_v2(b"STA2", 2, None)
    assert len(missing) == 4 + wire.V2_STAT.size and struct.unpack_from("<I", missing, 4)[0] == 2
