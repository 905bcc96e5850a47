"""Hostile names and paths (spaces, quotes, $(), ;, backticks, globs, non-ASCII) reach the device
intact and never run as commands: fuzzed through the local and ssh transports, file transfers,
and a whole run whose device name and workdir are hostile."""

from __future__ import annotations

import json
import random

import pytest

from harness.config import parse_device
from harness.transport.local import LocalTransport
from harness.transport.ssh import SshTransport

PIECES = [
    "a",
    " ",
    "'",
    '"',
    "$(touch PWNED)",
    "`touch PWNED`",
    ";",
    "&&",
    "|",
    ">",
    "<",
    "*",
    "?",
    "\\",
    "ü",
    "✓",
    "\t",
    "$HOME",
    "!",
    "#",
    "~",
    "%s",
    "-n",
]


def fuzzed(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6))) for _ in range(count)]


@pytest.fixture(params=["local", "ssh"])
def transport(request, tmp_path):
    if request.param == "local":
        connection = LocalTransport(parse_device("local", {"kind": "local"}, "test"))
    else:
        connection = SshTransport(request.getfixturevalue("sshd").device())
    yield connection
    connection.close()


def test_fuzzed_arguments_arrive_byte_for_byte(transport, tmp_path):
    strings = fuzzed(80, seed=11)
    result = transport.run(["printf", "%s\\0", *strings], timeout=60, cwd=str(tmp_path))
    assert result.exit_code == 0
    assert result.stdout.split("\0")[:-1] == strings
    assert not list(tmp_path.glob("PWNED*")) and not (tmp_path.parent / "PWNED").exists()


def test_hostile_file_names_survive_push_and_pull(transport, tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"\x00payload\xff" * 100)
    for index, name in enumerate(["a b", "it's", "$(touch PWNED)", "x;y", "ünï ✓", "`id`"]):
        remote = str(tmp_path / "remote dir $(x)" / f"{index}-{name}")
        assert transport.push(source, remote) == source.stat().st_size
        back = tmp_path / f"back-{index}"
        transport.pull(remote, back)
        assert back.read_bytes() == source.read_bytes()
    assert not list(tmp_path.rglob("PWNED"))


def test_a_run_on_a_hostile_device_name_and_workdir(pytester, tmp_path):
    name = "lab board; $(touch PWNED) ü"
    workdir = tmp_path / "work $(touch PWNED) 'dir'"
    pytester.makefile(
        ".yaml",
        devices=f"devices:\n  {json.dumps(name)}: {{kind: local, workdir: {json.dumps(str(workdir))}}}\n",
    )
    pytester.makepyfile(
        test_edge="""
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()
"""
    )
    run = pytester.runpytest(
        "--warmup-iters=1", "--min-iters=3", "--min-s=0", "--warmup-s=0", f"--device={name}"
    )
    run.assert_outcomes(passed=1)
    (record,) = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())["results"]
    assert record["device"] == name
    assert (workdir / "cas").is_dir()  # the literal path, not an expansion
    assert not list(pytester.path.rglob("PWNED")) and not list(tmp_path.rglob("PWNED"))
