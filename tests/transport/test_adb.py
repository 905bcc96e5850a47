"""The adb transport without a phone: the shell v2 codec and session against a peer socket
that speaks adbd's side, and connection errors against the real adb server (adbutils' binary)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import adbutils
import pytest

from harness.config import parse_device
from harness.errors import CommandTimeout, ConnectError, ConnectionLost, TransportError
from harness.transport.adb import (
    CLOSE_STDIN,
    EXIT,
    STDERR,
    STDIN,
    STDOUT,
    AdbRunning,
    Packet,
    ShellV2Decoder,
    ShellV2Session,
    device_shell_command,
    encode_packet,
)

ADB = Path(adbutils.__file__).parent / "binaries" / "adb"


# -- codec ---------------------------------------------------------------------------------------


def test_packet_round_trip_byte_by_byte():
    stream = encode_packet(STDOUT, b"hello\n") + encode_packet(STDERR, b"oops") + encode_packet(EXIT, b"\x03")
    decoder = ShellV2Decoder()
    packets = []
    for index in range(len(stream)):
        packets += decoder.feed(stream[index : index + 1])
    assert packets == [Packet(STDOUT, b"hello\n"), Packet(STDERR, b"oops"), Packet(EXIT, b"\x03")]
    assert decoder.pending == 0


def test_header_layout_is_id_then_little_endian_length():
    assert encode_packet(STDIN, b"ab") == b"\x00\x02\x00\x00\x00ab"
    assert encode_packet(CLOSE_STDIN) == b"\x04\x00\x00\x00\x00"


def test_partial_packet_waits_for_the_rest():
    decoder = ShellV2Decoder()
    whole = encode_packet(STDOUT, b"x" * 100_000)
    assert decoder.feed(whole[:70_000]) == []
    assert decoder.feed(whole[70_000:]) == [Packet(STDOUT, b"x" * 100_000)]


def test_unknown_packet_id_is_a_clear_error():
    with pytest.raises(TransportError, match="device 'pixel8': shell v2: unknown packet id 9"):
        ShellV2Decoder("pixel8").feed(b"\x09\x00\x00\x00\x00")


def test_device_command_quotes_every_argument():
    assert device_shell_command(["printf", "%s", "a b", "$(reboot)"], "/data/local/tmp/my dir") == (
        "cd '/data/local/tmp/my dir' && printf %s 'a b' '$(reboot)'"
    )


# -- a session against a peer speaking adbd's side of shell v2 ------------------------------------


def fake_adbd(peer: socket.socket, script) -> threading.Thread:
    """Read the host's stdin until close-stdin, then let ``script(stdin, send)`` answer."""

    def serve() -> None:
        decoder = ShellV2Decoder()
        stdin = bytearray()
        closed = False
        while not closed:
            data = peer.recv(65536)
            if not data:
                return
            for packet in decoder.feed(data):
                if packet.kind == STDIN:
                    stdin.extend(packet.payload)
                elif packet.kind == CLOSE_STDIN:
                    closed = True
        with contextlib.suppress(OSError):
            script(bytes(stdin), peer.sendall)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def session_pair(script):
    host, device = socket.socketpair()
    fake_adbd(device, script)
    return ShellV2Session("pixel8", ("cmd",), host), device


def test_exit_code_of_a_command_that_calls_exit_itself():
    def script(stdin, send):
        send(encode_packet(STDOUT, b"before exit\n"))
        send(encode_packet(STDERR, b"warning\n"))
        send(encode_packet(EXIT, b"\x03"))

    session, _ = session_pair(script)
    session.send_stdin(None)
    result = session.finish(timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "before exit\n", "warning\n")


def test_stdin_reaches_the_device_in_chunks():
    payload = os.urandom(200_000)

    def script(stdin, send):
        send(encode_packet(STDOUT, str(len(stdin)).encode() + b" " + str(stdin == payload).encode()))
        send(encode_packet(EXIT, b"\x00"))

    session, _ = session_pair(script)
    session.send_stdin(payload)
    assert session.finish(timeout=30).stdout == "200000 True"


def test_timeout_closes_the_socket_so_adbd_hangs_up():
    def script(stdin, send):
        send(encode_packet(STDOUT, b"started\n"))
        time.sleep(30)

    session, device_side = session_pair(script)
    session.send_stdin(None)
    with pytest.raises(CommandTimeout, match="device 'pixel8': command timed out after 0.5s"):
        session.finish(timeout=0.5)
    device_side.settimeout(5)
    assert device_side.recv(1) == b""  # the host end is closed: adbd sees EOF and kills the command


def test_device_gone_without_exit_packet_is_an_error():
    host, device = socket.socketpair()
    fake_adbd(device, lambda stdin, send: (send(encode_packet(STDOUT, b"partial")), device.close()))
    session = ShellV2Session("pixel8", ("cmd",), host)
    session.send_stdin(None)
    with pytest.raises(ConnectionLost, match="device 'pixel8': shell closed without an exit code during cmd"):
        session.finish(timeout=30)  # a lost device: --retries reconnects, in setup as in a measurement


def test_spawn_streams_lines_before_exit():
    gate = threading.Event()

    def script(stdin, send):
        send(encode_packet(STDOUT, b"first\nsec"))
        gate.wait(10)
        send(encode_packet(STDOUT, b"ond\n"))
        send(encode_packet(EXIT, b"\x05"))

    session, _ = session_pair(script)
    session.send_stdin(None)
    running = AdbRunning(session)
    lines = running.lines()
    assert next(lines) == "first"
    gate.set()
    assert list(lines) == ["second"]
    assert running.wait(timeout=30).exit_code == 5


# -- the real adb server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def adb_server():
    port = free_port()
    subprocess.run([str(ADB), "-P", str(port), "start-server"], check=True, capture_output=True, timeout=60)
    yield port
    subprocess.run([str(ADB), "-P", str(port), "kill-server"], capture_output=True, timeout=60, check=False)


def test_unknown_serial_lists_what_the_server_sees(adb_server):
    from harness.transport.adb import AdbTransport

    config = parse_device("pixel8", {"kind": "adb", "serial": "38101FDJH00ABC", "adb_port": adb_server})
    with pytest.raises(ConnectError) as error:
        AdbTransport(config)  # type: ignore[arg-type]
    message = str(error.value)
    assert f"serial 38101FDJH00ABC is not attached to the adb server 127.0.0.1:{adb_server}" in message
    assert "(it sees: none)" in message and "adb devices" in message


def test_no_server_on_that_port_names_it_and_the_fix_and_starts_none(monkeypatch):
    from harness.transport.adb import AdbTransport

    port, default = free_port(), free_port()
    # adbutils answers a refused connection with `adb start-server`, on ANDROID_ADB_SERVER_PORT
    # (5037 when unset), not on the port asked for: no server may appear there.
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(default))
    config = parse_device("pixel8", {"kind": "adb", "serial": "X", "adb_port": port})
    with pytest.raises(ConnectError, match=f"no adb server at 127.0.0.1:{port} .*start-server"):
        AdbTransport(config)  # type: ignore[arg-type]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", default)) != 0


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"FAIL0014device 'X' not found", "device 'X' not found"),
        (b"FAILzzzz", "FAIL with a bad length b'zzzz'"),
        (b"WHAT", "answered b'WHAT', not OKAY or FAIL"),
        (b"OK", "closed the connection"),
    ],
)
def test_host_requests_read_the_servers_reason_or_name_what_is_odd(answer, error):
    from harness.transport.adb import _host_request

    ours, server = socket.socketpair()
    with ours, server:
        server.sendall(answer)
        server.shutdown(socket.SHUT_WR)
        with pytest.raises(adbutils.AdbError, match=error):
            _host_request(ours, "host:transport:X")
        assert server.recv(64) == b"0010host:transport:X"


def test_a_host_request_answered_okay_returns():
    from harness.transport.adb import _host_request

    ours, server = socket.socketpair()
    with ours, server:
        server.sendall(b"OKAY")
        _host_request(ours, "shell,v2,raw:echo hi")
        assert server.recv(64) == b"0014shell,v2,raw:echo hi"


def test_connect_to_an_absent_network_device_fails_clearly(adb_server):
    from harness.transport.adb import AdbTransport

    closed = free_port()
    config = parse_device(
        "tablet", {"kind": "adb", "serial": f"127.0.0.1:{closed}", "adb_port": adb_server, "connect": True}
    )
    with pytest.raises(ConnectError, match=f"device 'tablet': adb connect 127.0.0.1:{closed}"):
        AdbTransport(config)  # type: ignore[arg-type]
