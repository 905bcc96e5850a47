"""The persistent shell for devices without Python, on the host's dash and mksh (Android's sh)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

from harness.errors import CommandFailed, CommandTimeout, ConnectionLost
from harness.transport.local import LocalTransport
from harness.transport.shell import LOST_AFTER_S, persistent_shell

HOSTILE = ["a b", "it's", '"quoted"', "$(touch PWNED)", "x; touch PWNED", "ünïcødé ✓", "line\nbreak", "*", ""]
SHELLS = ["sh", *(["mksh"] if shutil.which("mksh") else [])]


@pytest.fixture(params=SHELLS)
def shell(request, tmp_path):
    transport = persistent_shell(LocalTransport("phone"), tmpdir=str(tmp_path), shell=request.param)
    yield transport
    transport.close()


def test_exit_codes_and_separate_streams(shell):
    result = shell.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")
    with pytest.raises(CommandFailed, match="exited 3"):
        shell.run(["sh", "-c", "exit 3"], timeout=30, check=True)


def test_any_value_arrives_intact_and_never_runs(shell, tmp_path):
    workdir = tmp_path / "work\ndir $(touch PWNED)"
    workdir.mkdir()
    result = shell.run(["printf", "%s\\0", *HOSTILE], timeout=30, cwd=str(workdir))
    assert result.stdout.split("\0")[:-1] == HOSTILE
    assert shell.run(["pwd"], timeout=30, cwd=str(workdir)).stdout == f"{workdir}\n"
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()


def test_output_without_a_final_newline_and_a_command_that_reads_stdin(shell):
    assert shell.run(["printf", "no newline"], timeout=30).stdout == "no newline"
    assert shell.run(["cat"], timeout=30).stdout == ""  # stdin is /dev/null, not the shell's input
    assert shell.run(["echo", "next"], timeout=30).stdout == "next\n"


def test_a_timeout_closes_the_shell_and_the_next_command_opens_another(shell):
    with pytest.raises(CommandTimeout, match="timed out after 0.5s: sleep 30"):
        shell.run(["sleep", "30"], timeout=0.5)
    assert shell.run(["echo", "again"], timeout=30).stdout == "again\n"


def test_input_goes_the_device_transport_s_way_and_empty_input_stays_in_the_shell(shell):
    assert shell.run(["cat"], timeout=30, stdin=b"from the host").stdout == "from the host"
    session = ["sh", "-c", "awk '{print $6}' /proc/$$/stat"]  # the session id of the command
    kept = shell.run(session, timeout=30).stdout
    assert shell.run(session, timeout=30, stdin=b"").stdout == kept  # the native runner's script call
    assert shell.run(session, timeout=30, stdin=b"x").stdout != kept


def test_a_command_longer_than_the_silence_limit_is_kept_alive_by_the_heartbeat(shell):
    result = shell.run(["sh", "-c", f"sleep {LOST_AFTER_S + 1}; echo done"], timeout=60)
    assert (result.exit_code, result.stdout) == (0, "done\n")  # no heartbeat line in the output
    assert shell.run(["printf", "%s .\\n", "x"], timeout=30).stdout == "x .\n"


def test_a_device_that_falls_silent_is_a_lost_connection_before_the_commands_timeout(tmp_path):
    """Every process of the device's shell stopped (a hung device, a cut link that sends nothing):
    the heartbeat is missed, so the command is lost within LOST_AFTER_S, not after its 600 s."""
    transport = persistent_shell(LocalTransport("phone"), tmpdir=str(tmp_path))
    pidfile = tmp_path / "pid"
    try:
        transport.run(["sh", "-c", f"echo $PPID > {pidfile}"], timeout=30)  # the command's subshell
        group = os.getpgid(int(pidfile.read_text()))
        stopper = threading.Timer(0.5, os.killpg, (group, signal.SIGSTOP))
        stopper.start()
        with pytest.raises(ConnectionLost, match=r"no heartbeat from the device shell for 2\.\d s during sleep 30"):
            transport.run(["sleep", "30"], timeout=600)
        stopper.join()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGCONT)
        transport.close()
    assert transport.run(["echo", "reopened"], timeout=30).stdout == "reopened\n"
    transport.close()
