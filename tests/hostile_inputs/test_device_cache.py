"""The device's artifact cache after killed pushes and months of runs: partial files whose writer
is gone are removed at the next session (never one still being written), and `edgelab cache`
reports and prunes the cache to its budget, least recently used first, under the device's lease.
On the local transport and a real sshd."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import Fleet, parse_device
from harness.deploy import HOST_TAG, STALE_FOREIGN_PARTIAL_MIN, Artifact, Deployer
from harness.lease import DeviceLease
from harness.session import Lab, RunOptions
from harness.transport.local import LocalTransport
from harness.transport.ssh import SshTransport

MB = 1 << 20


@pytest.fixture(params=["local", "ssh"])
def transport(request):
    if request.param == "local":
        connection = LocalTransport("local")
    else:
        connection = SshTransport(request.getfixturevalue("sshd").device())
    yield connection
    connection.close()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def make_artifact(folder: Path, name: str, size: int) -> Artifact:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return Artifact.from_file(path)


def age(path: Path, minutes: float) -> None:
    stamp = time.time() - minutes * 60
    os.utime(path, (stamp, stamp))


def test_only_partials_whose_writer_is_gone_are_removed(transport, tmp_path):
    deployer = Deployer(transport, str(tmp_path / "device"))
    artifact = make_artifact(tmp_path / "host", "model.onnx", 1000)
    deployer.ensure([artifact])
    folder = Path(deployer.remote_path(artifact)).parent
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        partials = {
            "dead writer here": folder / f"model.onnx.partial-{dead_pid()}-{HOST_TAG}",
            "live writer here": folder / f"model.onnx.partial-{running.pid}-{HOST_TAG}",
            "old, other host": folder / f"model.onnx.partial-{running.pid}-0badc0de",
            "recent, other host": folder / "model.onnx.partial-1-0badc0de",
            "old, untagged (before tags)": folder / "model.onnx.partial-4242",
        }
        for path in partials.values():
            path.write_bytes(b"half a model")
        for key in ("old, other host", "old, untagged (before tags)"):
            age(partials[key], STALE_FOREIGN_PARTIAL_MIN + 5)
        removed = deployer.clean_partials()
    finally:
        running.kill()
        running.wait()
    gone = {key for key, path in partials.items() if not path.exists()}
    assert gone == {"dead writer here", "old, other host", "old, untagged (before tags)"}
    assert sorted(removed) == sorted(str(partials[key]) for key in gone)
    assert Path(deployer.remote_path(artifact)).read_bytes() == artifact.local.read_bytes()


def test_the_next_session_cleans_what_a_killed_push_left(tmp_path):
    device = parse_device("local", {"kind": "local", "workdir": str(tmp_path / "device")}, "test")
    stale = tmp_path / "device" / "cas" / ("ab" * 32) / f"big.onnx.partial-{dead_pid()}-{HOST_TAG}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * 4096)
    options = RunOptions(
        reports_dir=tmp_path / "reports", lease_timeout_s=None, health_checks=False, speed_reference=False
    )
    lab = Lab(Fleet([device], "test"), options)
    notices: list[str] = []
    lab.notify = notices.append
    try:
        lab.device("local")
    finally:
        lab.close()
    assert not stale.exists()
    assert notices == ["device 'local': removed 1 partial file(s) of killed pushes"]


def test_prune_removes_the_least_recently_used_down_to_the_budget(transport, tmp_path):
    deployer = Deployer(transport, str(tmp_path / "device"))
    made = {name: make_artifact(tmp_path / "host", name, MB) for name in ("a", "b", "c", "d")}
    for minutes, name in zip((40, 30, 20, 10), "abcd", strict=True):
        deployer.ensure([made[name]])
        age(Path(deployer.remote_path(made[name])), minutes)
    deployer.ensure([made["a"]])  # checked now: 'a' was used last
    status = deployer.status()
    assert {e.sha256 for e in status.entries} == {a.sha256 for a in made.values()}
    assert status.size_bytes == 4 * MB
    report = deployer.prune(2 * MB + 10)
    assert [e.files for e in report.removed] == [("b",), ("c",)]
    assert (report.size_before, report.size_after) == (4 * MB, 2 * MB)
    left = {e.files for e in deployer.status().entries}
    assert left == {("a",), ("d",)}
    again = deployer.ensure([made["b"]])  # a pruned artifact is simply pushed again
    assert again.pushed == ["b"]


def test_cli_cache_status_and_prune(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGELAB_LEASE_DIR", str(tmp_path / "leases"))
    workdir = tmp_path / "device"
    fleet = tmp_path / "devices.yaml"
    fleet.write_text(f"devices:\n  local: {{kind: local, workdir: '{workdir}', cache_max_mb: 1.5}}\n")
    deployer = Deployer(LocalTransport("local"), str(workdir))
    for index, name in enumerate(("old.onnx", "new.onnx")):
        artifact = make_artifact(tmp_path / "host", name, MB)
        deployer.ensure([artifact])
        age(Path(deployer.remote_path(artifact)), 60 - index * 30)
    stale = Path(deployer.remote_path(artifact) + f".partial-{dead_pid()}-{HOST_TAG}")
    stale.write_bytes(b"x")
    assert main(["--devices-file", str(fleet), "cache", "status", "local"]) == 0
    out = capsys.readouterr().out
    assert "2 entries, 2.0 MB; budget 1.5 MB (cache_max_mb)" in out
    assert out.index("new.onnx") < out.index("old.onnx")  # newest use first
    assert "1 partial file(s) left by killed pushes" in out
    assert main(["--devices-file", str(fleet), "cache", "prune", "local"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 entries (1.0 MB) and 1 stale partial file(s)" in out and "old.onnx" in out
    assert not stale.exists()
    assert [e.files for e in deployer.status().entries] == [("new.onnx",)]


def test_prune_waits_for_a_running_session_and_removes_nothing_meanwhile(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGELAB_LEASE_DIR", str(tmp_path / "leases"))
    workdir = tmp_path / "device"
    fleet = tmp_path / "devices.yaml"
    fleet.write_text(f"devices:\n  local: {{kind: local, workdir: '{workdir}'}}\n")
    deployer = Deployer(LocalTransport("local"), str(workdir))
    deployer.ensure([make_artifact(tmp_path / "host", "model.onnx", 1000)])
    with DeviceLease("local", run_id="busy-run", timeout_s=5):
        code = main(["--devices-file", str(fleet), "cache", "prune", "local", "--max-mb", "0", "--lease-timeout", "0.5"])
    assert code == 1
    err = capsys.readouterr().err
    assert "device 'local' is still leased by run busy-run" in err
    assert len(deployer.status().entries) == 1


def test_prune_without_a_budget_says_where_to_set_one(tmp_path, capsys):
    fleet = tmp_path / "devices.yaml"
    fleet.write_text(f"devices:\n  local: {{kind: local, workdir: '{tmp_path / 'device'}'}}\n")
    assert main(["--devices-file", str(fleet), "cache", "prune", "local"]) == 1
    assert "no cache budget: set cache_max_mb for it in" in capsys.readouterr().err
