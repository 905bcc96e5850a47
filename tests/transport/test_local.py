"""The local transport: real subprocesses and the real filesystem."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from harness.errors import CommandFailed, CommandTimeout, TransportError
from harness.transport.local import LocalTransport

HOSTILE = ["a b", "it's", '"quoted"', "$(touch PWNED)", "x; touch PWNED", "ünïcødé ✓", "`touch PWNED`"]


@pytest.fixture
def local() -> LocalTransport:
    return LocalTransport("local")


def test_exit_code_stdout_stderr_are_separate(local):
    result = local.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert not result.ok


def test_stdin_and_cwd(local, tmp_path):
    result = local.run(["sh", "-c", "pwd; cat"], timeout=30, stdin=b"hello", cwd=str(tmp_path))
    assert result.stdout == f"{tmp_path}\nhello"


def test_hostile_arguments_arrive_intact_and_never_run(local, tmp_path):
    result = local.run(["printf", "%s\\n", *HOSTILE], timeout=30, cwd=str(tmp_path))
    assert result.stdout.splitlines() == HOSTILE
    assert not (tmp_path / "PWNED").exists()


def test_timeout_kills_the_whole_process_group(local, tmp_path):
    marker = tmp_path / "child.pid"
    with pytest.raises(CommandTimeout) as error:
        local.run(["sh", "-c", f"sleep 60 & echo $! > {marker}; wait"], timeout=0.5)
    assert "timed out after 0.5s" in str(error.value)
    child = int(marker.read_text())
    for _ in range(50):
        stat = Path(f"/proc/{child}/stat")
        if not stat.exists() or stat.read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the background child {child} survived the timeout")


def test_check_raises_with_stderr(local):
    with pytest.raises(CommandFailed) as error:
        local.run(["sh", "-c", "echo boom >&2; exit 3"], timeout=30, check=True)
    assert error.value.exit_code == 3
    assert "boom" in str(error.value)
    assert "device 'local'" in str(error.value)


def test_missing_program_is_a_transport_error(local):
    with pytest.raises(TransportError, match="cannot start 'no-such-program-edgelab'"):
        local.run(["no-such-program-edgelab"], timeout=5)


def test_push_pull_round_trip_into_new_directories(local, tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "model.bin"
    source.write_bytes(payload)
    remote = str(tmp_path / "device" / "deep" / "dir" / "model.bin")
    assert local.push(source, remote) == len(payload)
    back = tmp_path / "back.bin"
    assert local.pull(remote, back) == len(payload)
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(payload).digest()


@pytest.mark.parametrize("listened", [False, True], ids=["silent", "with-progress"])
def test_stdin_file_streams_the_file_into_the_command(local, tmp_path, listened):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "model.bin"
    source.write_bytes(payload)
    blocks: list[int] = []
    progress = blocks.append if listened else None
    # cat reads every byte (wc -c alone may only stat a file it is given as stdin)
    result = local.run(
        ["sh", "-c", "cat | wc -c; exit 2"], timeout=60, stdin_file=source, stdin_progress=progress
    )
    assert (result.exit_code, result.stdout.strip()) == (2, str(len(payload)))
    assert sum(blocks) == (len(payload) if listened else 0)


def test_progress_follows_what_the_command_read_not_the_file_size(local, tmp_path):
    """The listener hears the command's read position: a command that reads 10 bytes and exits
    reports far less than the file, and its exit code is what the caller sees."""
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(8 * 1024 * 1024))
    blocks: list[int] = []
    result = local.run(
        ["sh", "-c", "head -c 10 >/dev/null; exit 3"],
        timeout=60,
        stdin_file=source,
        stdin_progress=blocks.append,
    )
    assert result.exit_code == 3
    assert 10 <= sum(blocks) < 8 * 1024 * 1024


def test_push_of_missing_file_names_the_path(local, tmp_path):
    with pytest.raises(TransportError, match="no such file: .*absent.bin"):
        local.push(tmp_path / "absent.bin", str(tmp_path / "x"))


def test_spawn_streams_lines_before_exit(local, tmp_path):
    gate = tmp_path / "gate"
    running = local.spawn(
        ["sh", "-c", f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second; exit 4"]
    )
    lines = running.lines()
    assert next(lines) == "first"  # the command is still blocked on the gate here
    gate.touch()
    assert list(lines) == ["second"]
    result = running.wait(timeout=30)
    assert result.exit_code == 4


def test_spawn_kill_stops_the_command(local):
    running = local.spawn(["sleep", "60"])
    running.kill()
    assert running.wait(timeout=10).exit_code != 0
