"""The virtual phone through the real adb server (adbutils' adb binary), through adbutils, and
through EdgeLab's AdbTransport; plus sync edge cases driven at the ADB message level."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
from pathlib import Path

import adbutils
import pytest

from harness.errors import CommandTimeout, TransportError
from harness.lab import adb_protocol as wire
from harness.lab.manager import adb_binary
from harness.transport.adb import AdbTransport

BIG_FILE_MB = 100


@pytest.fixture(scope="module")
def phone(lab):
    state = lab.state()
    device = next(d for d in state.devices if d.kind == "adb")
    return state, device


def adb(
    state, *args: str, serial: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    command = [str(adb_binary()), "-P", str(state.adb_port)]
    if serial:
        command += ["-s", serial]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, check=False)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the real adb client ----------------------------------------------------------------------------


def test_adb_devices_lists_the_virtual_pixel8(phone):
    state, device = phone
    listed = adb(state, "devices", "-l").stdout
    line = next(line for line in listed.splitlines() if line.startswith(device.serial))
    assert line.split()[1] == "device"
    assert "product:shiba" in line and "model:Pixel_8" in line and "device:shiba" in line


def test_adb_shell_getprop_and_exit_code(phone):
    state, device = phone
    assert adb(state, "shell", "getprop", "ro.product.model", serial=device.serial).stdout == "Pixel 8\n"
    assert adb(state, "shell", "getprop ro.build.version.sdk", serial=device.serial).stdout.strip() == "34"
    assert adb(state, "shell", "exit 3", serial=device.serial).returncode == 3
    failed = adb(state, "shell", "echo out; echo err >&2; exit 7", serial=device.serial)
    assert (failed.returncode, failed.stdout, failed.stderr) == (7, "out\n", "err\n")


def test_adb_push_and_pull_100_mb_keep_the_sha256(phone, tmp_path):
    state, device = phone
    source = tmp_path / "big.bin"
    with source.open("wb") as handle:
        for _ in range(BIG_FILE_MB):
            handle.write(os.urandom(1 << 20))
    pushed = adb(state, "push", str(source), "/data/local/tmp/big.bin", serial=device.serial)
    assert pushed.returncode == 0, pushed.stderr
    remote_sum = adb(
        state, "shell", "sha256sum /data/local/tmp/big.bin", serial=device.serial
    ).stdout.split()[0]
    assert remote_sum == sha256(source)
    back = tmp_path / "back.bin"
    pulled = adb(state, "pull", "/data/local/tmp/big.bin", str(back), serial=device.serial)
    assert pulled.returncode == 0, pulled.stderr
    assert back.stat().st_size == BIG_FILE_MB << 20
    assert sha256(back) == sha256(source)
    adb(state, "shell", "rm /data/local/tmp/big.bin", serial=device.serial)


def test_adb_pull_of_a_missing_path_fails_with_the_path(phone, tmp_path):
    state, device = phone
    result = adb(state, "pull", "/data/local/tmp/nope.bin", str(tmp_path / "x"), serial=device.serial)
    assert result.returncode != 0
    assert "/data/local/tmp/nope.bin" in result.stderr and "No such file" in result.stderr


def test_adb_pull_follows_a_device_symlink(phone, tmp_path):
    state, device = phone
    adb(
        state,
        "shell",
        "echo linked > /data/local/tmp/target.txt && ln -sf target.txt /data/local/tmp/link.txt",
        serial=device.serial,
    )
    assert (
        adb(state, "pull", "/data/local/tmp/link.txt", str(tmp_path / "l"), serial=device.serial).returncode
        == 0
    )
    assert (tmp_path / "l").read_text() == "linked\n"


def test_the_phone_looks_like_a_phone(phone):
    state, device = phone
    listing = adb(
        state,
        "shell",
        "ls -d /sdcard /data/local/tmp /system/bin/getprop /sys/class/thermal/thermal_zone0 "
        "/sys/class/power_supply/battery; cat /sys/class/thermal/thermal_zone6/type; dumpsys battery",
        serial=device.serial,
    ).stdout
    for path in ("/sdcard", "/data/local/tmp", "/system/bin/getprop", "/sys/class/thermal/thermal_zone0"):
        assert path in listing
    assert "skin" in listing
    assert "Current Battery Service state:" in listing and "level: 78" in listing
    thermal = adb(state, "shell", "dumpsys thermalservice", serial=device.serial).stdout
    assert "Thermal Status:" in thermal and "mName=skin" in thermal


# -- adbutils -------------------------------------------------------------------------------------


def test_adbutils_shell_and_sync(phone, tmp_path):
    state, device = phone
    client = adbutils.AdbClient(host="127.0.0.1", port=state.adb_port)
    handle = client.device(device.serial)
    assert handle.prop.model == "Pixel 8"
    assert handle.shell("getprop ro.soc.model").strip() == "Tensor G3"
    payload = os.urandom(3 * (1 << 20) + 17)
    source = tmp_path / "x.bin"
    source.write_bytes(payload)
    handle.sync.push(str(source), "/data/local/tmp/adbutils.bin")
    assert handle.sync.read_bytes("/data/local/tmp/adbutils.bin") == payload
    names = [entry.path for entry in handle.sync.list("/data/local/tmp")]
    assert "adbutils.bin" in names
    assert handle.sync.stat("/data/local/tmp/adbutils.bin").size == len(payload)


# -- EdgeLab's AdbTransport end to end ---------------------------------------------------------------


@pytest.fixture(scope="module")
def transport(lab_fleet):
    connection = AdbTransport(lab_fleet["virtual-pixel8"])
    yield connection
    connection.close()


def test_transport_run_reports_real_exit_codes_and_stderr(transport):
    result = transport.run(["sh", "-c", "echo to-out; echo to-err >&2; exit 42"], timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (42, "to-out\n", "to-err\n")
    assert transport.run(["getprop", "ro.product.model"], timeout=30).stdout == "Pixel 8\n"


def test_transport_quotes_hostile_arguments(transport):
    hostile = "a b; echo INJECTED $(id) 'q' \"dq\" ünï"
    result = transport.run(["printf", "%s", hostile], timeout=30)
    assert result.stdout == hostile


def test_transport_stdin_cwd_and_timeout(transport):
    assert transport.run(["cat"], stdin=b"piped\n", timeout=30).stdout == "piped\n"
    assert transport.run(["pwd"], cwd="/data/local/tmp", timeout=30).stdout.strip() == "/data/local/tmp"
    with pytest.raises(CommandTimeout):
        transport.run(["sleep", "30"], timeout=1)
    assert transport.run(["true"], timeout=30).exit_code == 0  # the device is fine after it


def test_transport_spawn_streams_lines(transport):
    running = transport.spawn(["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.1; done; exit 5"])
    assert list(running.lines()) == ["line1", "line2", "line3"]
    assert running.wait(timeout=30).exit_code == 5


def test_transport_push_pull_and_missing_path(transport, tmp_path):
    source = tmp_path / "m.bin"
    source.write_bytes(os.urandom(5 << 20))
    assert transport.push(source, "/data/local/tmp/edgelab-t/sub/m.bin") == 5 << 20
    back = tmp_path / "back.bin"
    assert transport.pull("/data/local/tmp/edgelab-t/sub/m.bin", back) == 5 << 20
    assert back.read_bytes() == source.read_bytes()
    with pytest.raises(TransportError, match="nope"):
        transport.pull("/data/local/tmp/edgelab-t/nope", tmp_path / "n")


@pytest.mark.parametrize("listened", [False, True], ids=["silent", "with-progress"])
def test_transport_streams_a_file_as_shell_v2_stdin(transport, tmp_path, listened):
    source = tmp_path / "m.bin"
    source.write_bytes(os.urandom((5 << 20) + 11))
    script = 'mkdir -p "${1%/*}" && tee "$1" | sha256sum'
    blocks: list[int] = []
    result = transport.run(
        ["sh", "-c", script, "sh", "/data/local/tmp/edgelab-t/streamed.bin"],
        timeout=60,
        stdin_file=source,
        stdin_progress=blocks.append if listened else None,
    )
    assert result.exit_code == 0, result.stderr
    assert sum(blocks) == ((5 << 20) + 11 if listened else 0)
    assert result.stdout.split()[0] == hashlib.sha256(source.read_bytes()).hexdigest()
    back = tmp_path / "back.bin"
    assert transport.pull("/data/local/tmp/edgelab-t/streamed.bin", back) == (5 << 20) + 11
    assert back.read_bytes() == source.read_bytes()


# -- sync at the message level: what the adb server never does on purpose -----------------------------


class RawHost:
    """A minimal ADB host: CNXN, one stream, WRTEs cut where the test wants."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.send(wire.A_CNXN, wire.VERSION, 256 * 1024, b"host::\0")
        reply = self.receive()
        assert reply.command == wire.A_CNXN and reply.payload.startswith(b"device::")
        self.banner = reply.payload

    def send(self, command: int, arg0: int, arg1: int, payload: bytes = b"") -> None:
        self.sock.sendall(wire.Message(command, arg0, arg1, payload).pack())

    def receive(self) -> wire.Message:
        header = self._exactly(24)
        command, arg0, arg1, length = wire.parse_header(header)
        return wire.Message(command, arg0, arg1, self._exactly(length))

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("adbd closed the connection")
            data += chunk
        return data

    def open(self, service: str) -> int:
        self.send(wire.A_OPEN, 1, 0, service.encode() + b"\0")
        reply = self.receive()
        assert reply.command == wire.A_OKAY, reply.name
        self.remote = reply.arg0
        return reply.arg0

    def write(self, data: bytes) -> None:
        self.send(wire.A_WRTE, 1, self.remote, data)
        reply = self.receive()
        assert reply.command == wire.A_OKAY, reply.name  # one WRTE in flight, acknowledged

    def read_reply(self) -> bytes:
        message = self.receive()
        assert message.command == wire.A_WRTE, message.name
        self.send(wire.A_OKAY, 1, self.remote)
        return message.payload

    def close(self) -> None:
        self.sock.close()


def test_banner_advertises_only_implemented_features(phone):
    _, device = phone
    host = RawHost(device.port)
    features = host.banner.decode().split("features=")[1].rstrip(";\0").split(",")
    assert set(features) == {"shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir"}
    host.close()


def test_sync_send_with_headers_split_byte_by_byte(phone):
    _, device = phone
    host = RawHost(device.port)
    host.open("sync:")
    path = b"/data/local/tmp/split.bin,33188"
    data = bytes(range(256)) * 40
    stream = (
        struct.pack("<4sI", b"SEND", len(path))
        + path
        + struct.pack("<4sI", b"DATA", len(data))
        + data
        + struct.pack("<4sI", b"DONE", 1_700_000_000)
    )
    for index in range(0, 64):  # headers and path one byte per WRTE
        host.write(stream[index : index + 1])
    host.write(stream[64:])
    assert host.read_reply()[:4] == b"OKAY"
    stat_request = b"/data/local/tmp/split.bin"
    host.write(struct.pack("<4sI", b"STAT", len(stat_request)) + stat_request)
    reply = host.read_reply()
    ident, mode, size, mtime = struct.unpack("<4sIII", reply)
    assert (ident, size, mtime, mode & 0o170000) == (b"STAT", len(data), 1_700_000_000, 0o100000)
    missing = b"/data/local/tmp/none"
    host.write(struct.pack("<4sI", b"STAT", len(missing)) + missing)
    assert struct.unpack("<4sIII", host.read_reply()) == (b"STAT", 0, 0, 0)
    host.write(struct.pack("<4sI", b"RECV", len(missing)) + missing)
    failure = host.read_reply()
    assert failure[:4] == b"FAIL" and b"No such file" in failure
    host.close()


def test_dumpsys_meminfo_reports_a_real_process_in_android_14_layout(phone):
    state, device = phone
    script = "sleep 5 & pid=$!; dumpsys meminfo $pid; grep VmRSS /proc/$pid/status; kill $pid"
    output = adb(state, "shell", script, serial=device.serial).stdout
    assert "** MEMINFO in pid " in output and "[sleep] **" in output
    totals = output.split("TOTAL PSS:")[1].split()
    pss, rss = int(totals[0]), int(totals[3])
    vmrss = int(output.split("VmRSS:")[1].split()[0])
    assert 0 < pss <= rss
    assert abs(rss - vmrss) <= 64  # the same pages, counted by the kernel twice
    assert (
        "No process found for: 999999"
        in adb(state, "shell", "dumpsys meminfo 999999", serial=device.serial).stdout
    )
