"""The persistent channel against the real agent: on the host (LocalTransport) and through a
real OpenSSH sshd (SshTransport). The virtual-lab tests run every benchmark over it on ADB and
SSH, and tests/lab/test_faults.py cuts links and kills devices under it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.errors import AgentError, CommandTimeout, ConnectionLost, TransportError
from harness.runners.python_agent import AGENT_FILE
from harness.transport.channel import (
    Channel,
    ChannelLost,
    ChannelTransport,
    PersistentChannel,
    decode_frames,
    encode_frame,
    in_phase,
    run_over,
)
from harness.transport.local import LocalTransport
from harness.transport.ssh import SshTransport

HOSTILE = ["a b", "it's", '"quoted"', "$(touch PWNED)", "x; touch PWNED", "ünïcødé ✓", "line\nbreak", "*", ""]
AGENT = [sys.executable, str(AGENT_FILE), "channel"]


def opener(transport: LocalTransport | SshTransport, argv: list[str] = AGENT) -> PersistentChannel:
    return PersistentChannel(
        transport.device, "commands", lambda: Channel.open(transport, argv, label="commands")
    )


@pytest.fixture
def local() -> ChannelTransport:
    transport = ChannelTransport(LocalTransport("host"), opener(LocalTransport("host")))
    yield transport
    transport.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    return state != "Z"


def test_frames_round_trip_split_anywhere():
    frames = encode_frame({"id": 1, "op": "exec", "argv": HOSTILE}) + encode_frame({"id": 2, "pong": True})
    buffer = bytearray()
    found = []
    for index in range(len(frames)):  # one byte at a time: frames split at every boundary
        buffer.extend(frames[index : index + 1])
        found += decode_frames(buffer)
    assert found == [{"id": 1, "op": "exec", "argv": HOSTILE}, {"id": 2, "pong": True}]
    assert buffer == bytearray()


def test_a_frame_over_the_limit_is_refused():
    with pytest.raises(ValueError, match="over the"):
        decode_frames(bytearray((1 << 30).to_bytes(4, "big") + b"{}"))


def test_commands_keep_exit_codes_streams_and_any_value(local, tmp_path):
    result = local.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")
    workdir = tmp_path / "work\ndir $(touch PWNED)"
    workdir.mkdir()
    echoed = local.run(["printf", "%s\\0", *HOSTILE], timeout=30, cwd=str(workdir))
    assert echoed.stdout.split("\0")[:-1] == HOSTILE
    assert local.run(["pwd"], timeout=30, cwd=str(workdir)).stdout == f"{workdir}\n"
    assert local.run(["cat"], timeout=30, stdin=b"line\nwith \x00 nul").stdout == "line\nwith \x00 nul"
    assert not list(tmp_path.glob("**/PWNED")) and not Path("PWNED").exists()


def test_requests_are_answered_by_id_out_of_order(local):
    answers: dict[str, float] = {}

    def slow() -> None:
        local.run(["sleep", "1.5"], timeout=30)
        answers["slow"] = time.monotonic()

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    assert local.run(["echo", "quick"], timeout=30).stdout == "quick\n"
    answers["quick"] = time.monotonic()
    thread.join()
    assert answers["quick"] < answers["slow"]  # the quick answer did not wait behind the slow one


def test_a_timeout_stops_the_command_on_the_device(local, tmp_path):
    marker = tmp_path / "pid"
    with pytest.raises(CommandTimeout, match=r"timed out after 0.5s: sh -c"):
        local.run(["sh", "-c", f"echo $$ > {marker}; exec sleep 60"], timeout=0.5)
    pid = int(marker.read_text())
    for _ in range(50):
        if not alive(pid):
            break
        time.sleep(0.1)
    assert not alive(pid)
    assert local.run(["echo", "next"], timeout=30).stdout == "next\n"  # the channel goes on


def test_small_pulls_go_over_the_channel_and_large_ones_do_not(local, tmp_path):
    small = tmp_path / "small\nname.bin"
    small.write_bytes(bytes(range(256)) * 4)
    assert local.pull(str(small), tmp_path / "back.bin") == 1024
    assert (tmp_path / "back.bin").read_bytes() == small.read_bytes()
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(5 << 20))  # over READ_MAX_BYTES: the device transport's own pull
    assert local.pull(str(large), tmp_path / "large-back.bin") == 5 << 20
    assert (tmp_path / "large-back.bin").read_bytes() == large.read_bytes()
    with pytest.raises(TransportError, match="no such file on the device: .*missing"):
        local.pull(str(tmp_path / "missing"), tmp_path / "x")


def test_closing_the_channel_ends_the_agent_and_its_commands(tmp_path):
    transport = ChannelTransport(LocalTransport("host"), opener(LocalTransport("host")))
    marker = tmp_path / "pid"
    thread = threading.Thread(
        target=lambda: transport.run(["sh", "-c", f"echo $$ > {marker}; exec sleep 120"], timeout=300),
        daemon=True,
    )
    thread.start()
    while not marker.exists() or not marker.read_text().strip():
        time.sleep(0.05)
    agent = transport.channel.pid
    assert agent is not None
    transport.close()
    for _ in range(100):
        if not alive(agent) and not alive(int(marker.read_text())):
            break
        time.sleep(0.1)
    assert not alive(agent)
    assert not alive(int(marker.read_text()))


def test_a_silent_channel_is_lost_by_its_heartbeat_not_by_the_command_timeout():
    transport = LocalTransport("host")
    channel = Channel.open(transport, AGENT, label="commands")
    os.kill(channel.pid, signal.SIGSTOP)  # a frozen device: no answer, no EOF
    try:
        with pytest.raises(
            ChannelLost, match="no answer from the device .no heartbeat on the persistent channel"
        ):
            channel.request("exec", {"argv": ["true"]}, timeout=300)
    finally:
        os.kill(channel.pid, signal.SIGCONT)
        channel.close()


def test_a_lost_channel_reconnects_once_then_the_per_command_path_takes_over():
    transport = LocalTransport("host")
    persistent = opener(transport)
    channels = ChannelTransport(transport, persistent)
    try:
        assert channels.run(["echo", "one"], timeout=30).stdout == "one\n"
        first = persistent.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with in_phase("run"):
            assert channels.run(["echo", "two"], timeout=30).stdout == "two\n"  # asked again, reconnected
        second = persistent.pid
        assert second not in (None, first)
        assert persistent.take_notes() == [
            "persistent channel (commands) lost (device 'host', phase run): the device closed the "
            "persistent channel; reconnected"
        ]
        assert second is not None
        os.kill(second, signal.SIGKILL)
        assert channels.run(["echo", "three"], timeout=30).stdout == "three\n"  # the per-command path
        assert persistent.given_up is not None and "lost a second time" in persistent.given_up
        notes = persistent.take_notes()
        assert len(notes) == 1 and notes[0].endswith("one command per request from now on")
        assert persistent.pid is None
    finally:
        channels.close()


def test_an_agent_that_cannot_start_leaves_the_per_command_path(tmp_path):
    transport = LocalTransport("host")
    persistent = opener(transport, ["/bin/false"])
    channels = ChannelTransport(transport, persistent)
    assert channels.run(["echo", "still"], timeout=30).stdout == "still\n"
    # it ends before answering; on a loaded host the start's timeout may come first: either way
    # the channel is given up with the reason and the fix, and commands go one by one
    assert persistent.given_up is not None and (
        "ended before answering" in persistent.given_up or "did not answer in time" in persistent.given_up
    ), persistent.given_up
    assert "could not start" in persistent.given_up
    assert "persistent_channel: false" in persistent.given_up
    channels.close()


def test_an_unreachable_device_after_a_loss_is_a_named_connection_lost(tmp_path):
    transport = LocalTransport("host")
    opened: list[Channel] = []

    def open_once() -> Channel:
        if opened:
            raise TransportError("host", "cannot open a channel: Timeout opening channel.")
        opened.append(Channel.open(transport, AGENT, label="commands"))
        return opened[0]

    persistent = PersistentChannel("host", "commands", open_once)
    thread = threading.Timer(1.0, lambda: os.kill(opened[0].pid, signal.SIGKILL))
    thread.start()
    with (
        in_phase("run"),
        pytest.raises(
            ConnectionLost,
            match=r"device 'host': the device closed the persistent channel during sleep 30; "
            r"reconnecting failed: cannot open a channel",
        ),
    ):
        run_over(persistent, "exec", ["sleep", "30"], timeout=300)
    assert persistent.given_up is not None
    persistent.close()


def test_the_agent_refuses_malformed_requests(local):
    channel = local.channel
    answer = channel.request("nonsense", {}, timeout=30, what="nonsense")
    assert answer is not None and answer["error"] == "unknown op 'nonsense'"
    with pytest.raises(TransportError, match="refused .*exec needs argv"):
        run_over(channel, "exec", [], timeout=30)


def test_the_agent_exits_on_a_frame_over_its_limit():
    process = subprocess.run(
        AGENT, input=(1 << 30).to_bytes(4, "big"), capture_output=True, timeout=60, check=False
    )
    assert process.returncode == 2
    assert b"over the" in process.stderr


def test_an_agent_from_another_version_is_named():
    fake = [
        sys.executable,
        "-c",
        "import sys; sys.stdout.buffer.write(b'\\x00\\x00\\x00\\x02{}'); sys.stdout.flush()",
    ]
    with pytest.raises(AgentError, match="greeted with .*another EdgeLab version"):
        Channel.open(LocalTransport("host"), fake, label="commands")


def test_over_ssh_commands_and_pulls_go_over_one_channel(sshd, tmp_path):
    base = SshTransport(sshd.device())
    remote_agent = str(AGENT_FILE)
    channels = ChannelTransport(base, opener(base, [sys.executable, remote_agent, "channel"]))
    try:
        result = channels.run(["printf", "%s\\0", *HOSTILE], timeout=30)
        assert result.stdout.split("\0")[:-1] == HOSTILE
        (tmp_path / "f.txt").write_text("over ssh\n")
        assert channels.pull(str(tmp_path / "f.txt"), tmp_path / "back.txt") == 9
        assert (tmp_path / "back.txt").read_text() == "over ssh\n"
        pid = channels.channel.pid
        for _ in range(3):
            channels.run(["true"], timeout=30)
        assert channels.channel.pid == pid  # one agent for the session
    finally:
        channels.close()
