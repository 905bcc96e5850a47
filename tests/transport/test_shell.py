"""The persistent shell for devices without Python, on the host's dash and mksh (Android's sh)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import CommandFailed, CommandTimeout
from harness.transport.local import LocalTransport
from harness.transport.shell import persistent_shell

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
