"""The ssh transport against a real OpenSSH sshd on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.errors import CommandFailed, CommandTimeout, ConnectError, ConnectionLost, HostKeyError
from harness.transport.ssh import SshTransport
from tests.fixtures.sshd import start_sshd, stop_sshd

HOSTILE = ["a b", "it's", '"quoted"', "$(touch PWNED)", "x; touch PWNED", "ünïcødé ✓", "`touch PWNED`", "*"]


@pytest.fixture(scope="module")
def board(sshd):
    transport = SshTransport(sshd.device())
    yield transport
    transport.close()


def test_exit_code_and_separate_streams(board):
    result = board.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")


def test_small_writes_are_not_held_back_by_nagle(board):
    # a request written while the previous segment waits for a delayed ACK would wait up to
    # 40 ms with it: a persistent channel's bare request took 44 ms instead of 4 ms without this
    board.run(["true"], timeout=30)
    sock = board._client.get_transport().sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_stdin_and_cwd(board, tmp_path):
    result = board.run(["sh", "-c", "pwd; cat"], timeout=30, stdin=b"hello", cwd=str(tmp_path))
    assert result.stdout == f"{tmp_path}\nhello"


def test_hostile_arguments_arrive_intact_and_never_run(board, tmp_path):
    result = board.run(["printf", "%s\\n", *HOSTILE], timeout=30, cwd=str(tmp_path))
    assert result.stdout.splitlines() == HOSTILE
    assert not (tmp_path / "PWNED").exists()


def test_large_stdout_and_stderr_together_do_not_deadlock(board):
    script = "head -c 4000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2"
    result = board.run(["sh", "-c", script], timeout=120)
    assert (len(result.stdout), len(result.stderr)) == (4_000_000, 3_000_000)
    assert set(result.stdout) == {"a"} and set(result.stderr) == {"b"}


def test_timeout_kills_the_remote_process(board, tmp_path):
    marker = tmp_path / "sleeper.pid"
    with pytest.raises(CommandTimeout) as error:
        board.run(["sh", "-c", f"echo $$ > {marker}; sleep 300"], timeout=1)
    assert "device 'board'" in str(error.value)
    pid = int(marker.read_text())
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"remote process {pid} survived the timeout")


def test_timeout_is_enforced_while_output_keeps_coming(board):
    with pytest.raises(CommandTimeout):
        board.run(["sh", "-c", "while :; do echo tick; sleep 0.1; done"], timeout=1)


def test_check_raises_with_stderr(board):
    with pytest.raises(CommandFailed) as error:
        board.run(["sh", "-c", "echo boom >&2; exit 3"], timeout=30, check=True)
    assert error.value.exit_code == 3 and "boom" in error.value.stderr


def test_push_pull_round_trip_with_nested_dirs(board, tmp_path):
    payload = os.urandom(5 * 1024 * 1024 + 3)
    source = tmp_path / "model.bin"
    source.write_bytes(payload)
    remote = str(tmp_path / "remote" / "a b" / "c" / "model.bin")
    assert board.push(source, remote) == len(payload)
    assert hashlib.sha256(Path(remote).read_bytes()).hexdigest() == hashlib.sha256(payload).hexdigest()
    back = tmp_path / "back.bin"
    assert board.pull(remote, back) == len(payload)
    assert back.read_bytes() == payload


@pytest.mark.parametrize("listened", [False, True], ids=["silent", "with-progress"])
def test_stdin_file_streams_through_the_channel(board, tmp_path, listened):
    payload = os.urandom(5 * 1024 * 1024 + 3)
    source = tmp_path / "model.bin"
    source.write_bytes(payload)
    target = tmp_path / "streamed.bin"
    blocks: list[int] = []
    result = board.run(
        ["sh", "-c", 'tee "$1" | sha256sum', "sh", str(target)],
        timeout=60,
        stdin_file=source,
        stdin_progress=blocks.append if listened else None,
    )
    assert result.stdout.split()[0] == hashlib.sha256(payload).hexdigest()
    assert target.read_bytes() == payload
    assert sum(blocks) == (len(payload) if listened else 0)


def test_home_is_expanded_for_files(board, tmp_path):
    source = tmp_path / "x.txt"
    source.write_text("home")
    relative = f"edgelab-test-{os.getpid()}/x.txt"
    board.push(source, f"~/{relative}")
    target = Path.home() / relative
    try:
        assert target.read_text() == "home"
    finally:
        target.unlink()
        target.parent.rmdir()


def test_pull_of_missing_file_names_it(board, tmp_path):
    with pytest.raises(Exception, match="no such file on the device: /nonexistent/edgelab.bin"):
        board.pull("/nonexistent/edgelab.bin", tmp_path / "x")


def test_spawn_streams_before_exit(board, tmp_path):
    gate = tmp_path / "gate"
    running = board.spawn(
        ["sh", "-c", f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second; exit 5"]
    )
    lines = running.lines()
    assert next(lines) == "first"
    gate.touch()
    assert list(lines) == ["second"]
    assert running.wait(timeout=30).exit_code == 5


def test_unknown_host_key_is_refused_with_the_fix(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError) as error:
        SshTransport(sshd.device(known_hosts=str(empty)))
    message = str(error.value)
    assert f"127.0.0.1:{sshd.port}" in message and "ssh-ed25519" in message
    assert "trust_on_first_use: true" in message and "ssh-keyscan" in message


def test_trust_on_first_use_records_the_key(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    SshTransport(sshd.device(known_hosts=str(known), trust_on_first_use=True)).close()
    assert known.read_text().split() == [f"[127.0.0.1]:{sshd.port}", *sshd.host_public_key.split()]
    # now verified from the file, without trust
    transport = SshTransport(sshd.device(known_hosts=str(known)))
    assert transport.run(["true"], timeout=30).exit_code == 0
    transport.close()


def test_changed_host_key_is_refused_even_with_trust(sshd, other_sshd, tmp_path):
    impostor = tmp_path / "known_hosts"
    impostor.write_text(f"[127.0.0.1]:{other_sshd.port} {sshd.host_public_key}\n")
    for trust in (False, True):
        with pytest.raises(HostKeyError, match="does NOT match"):
            SshTransport(other_sshd.device(known_hosts=str(impostor), trust_on_first_use=trust))


def test_wrong_client_key_is_an_auth_error(sshd, tmp_path):
    import subprocess

    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(ConnectError, match=f"authentication failed for .*@127.0.0.1:{sshd.port}"):
        SshTransport(sshd.device(key_file=str(stranger)))


def test_missing_key_file_is_named(sshd):
    with pytest.raises(ConnectError, match="key_file /nonexistent/id_ed25519 does not exist"):
        SshTransport(sshd.device(key_file="/nonexistent/id_ed25519"))


def test_refused_port_names_host_and_port(sshd):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(ConnectError, match=f"device 'board': cannot connect to .*@127.0.0.1:{closed}"):
        SshTransport(sshd.device(port=closed))


def test_silent_host_times_out(sshd):
    """A host that accepts TCP but never speaks SSH (a hung board) must not hang us."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
    thread.start()
    try:
        with pytest.raises(ConnectError, match="board"):
            SshTransport(sshd.device(port=listener.getsockname()[1], connect_timeout_s=1))
    finally:
        listener.close()
        for connection, _ in accepted:
            connection.close()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def test_sshd_killed_mid_command_is_a_lost_connection_not_an_exit_code(tmp_path):
    """sshd and its sessions SIGKILLed (a crash, a reboot): the command has no exit status. That is
    a lost connection (retried with --retries), never a result with exit code -1."""
    server = start_sshd(tmp_path / "sshd")
    transport = SshTransport(server.device(keepalive_s=30))
    try:
        transport.run(["true"], timeout=30, check=True)

        def crash() -> None:
            time.sleep(1.0)
            for pid in [server.pid, *_descendants(server.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=crash)
        killer.start()
        with pytest.raises(
            ConnectionLost, match=r"device 'board': .*closed without an exit status.*sleep 20"
        ):
            transport.run(["sleep", "20"], timeout=60)
        killer.join()
        with pytest.raises(
            ConnectionLost, match=r"device 'board': the connection to 127.0.0.1:\d+ closed \(sshd"
        ):
            transport.run(["true"], timeout=30)  # the next command: lost too (retried), with the reason
    finally:
        transport.close()
        stop_sshd(server)
