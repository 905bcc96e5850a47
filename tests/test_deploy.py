"""Content-addressed deployment: misses, hits, corruption on the device and on the wire."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from harness.deploy import Artifact, Deployer, resolve_workdir
from harness.errors import DeployError
from harness.transport.base import Transport
from harness.transport.local import LocalTransport
from tests.fixtures.terminal import drawn, fake_terminal


class CorruptingLink(LocalTransport):
    """A link that flips one byte of every streamed file: what a flaky USB cable does."""

    integrity_in_transit = False  # like ADB: nothing on the link notices

    def run(self, argv, *, stdin_file=None, **kwargs):
        if stdin_file is not None:
            damaged = Path(str(stdin_file) + ".on-the-wire")
            data = bytearray(Path(stdin_file).read_bytes())
            data[len(data) // 2] ^= 0xFF
            damaged.write_bytes(bytes(data))
            stdin_file = damaged
        return super().run(argv, stdin_file=stdin_file, **kwargs)


class ShortWrite(LocalTransport):
    """A device whose disk fills up halfway: the file on the device is shorter than what arrived."""

    def run(self, argv, *, stdin_file=None, **kwargs):
        result = super().run(argv, stdin_file=stdin_file, **kwargs)
        if stdin_file is not None:
            partial = Path(argv[4])
            partial.write_bytes(partial.read_bytes()[: partial.stat().st_size // 2])
            digest = result.stdout.split()[0]
            result = dataclasses.replace(result, stdout=f"{digest} {partial.stat().st_size}\n")
        return result


@pytest.fixture
def transport() -> Transport:
    return LocalTransport("local")


@pytest.fixture
def artifacts(tmp_path) -> list[Artifact]:
    made = []
    for name, size in (("model one.tflite", 200_000), ("inputs.npz", 5_000)):
        path = tmp_path / "host" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(size))
        made.append(Artifact.from_file(path))
    return made


def test_first_run_pushes_second_run_moves_zero_bytes(transport, artifacts, tmp_path):
    deployer = Deployer(transport, str(tmp_path / "device"))
    first = deployer.ensure(artifacts)
    assert sorted(first.pushed) == ["inputs.npz", "model one.tflite"]
    assert first.bytes_pushed == 205_000
    for artifact in artifacts:
        placed = Path(deployer.remote_path(artifact))
        assert placed.read_bytes() == artifact.local.read_bytes()
        assert placed.parent.name == artifact.sha256
    second = deployer.ensure(artifacts)
    assert (second.bytes_pushed, second.pushed, sorted(second.present)) == (
        0,
        [],
        ["inputs.npz", "model one.tflite"],
    )
    assert not list((tmp_path / "device").rglob("*.partial-*"))


def test_corrupted_file_on_device_is_detected_and_replaced(transport, artifacts, tmp_path):
    deployer = Deployer(transport, str(tmp_path / "device"))
    deployer.ensure(artifacts)
    model = artifacts[0]
    Path(deployer.remote_path(model)).write_bytes(b"truncated")
    report = deployer.ensure(artifacts)
    assert report.replaced == [model.name]
    assert report.bytes_pushed == model.size_bytes
    assert Path(deployer.remote_path(model)).read_bytes() == model.local.read_bytes()


def test_corruption_on_the_wire_fails_and_leaves_nothing_half_written(artifacts, tmp_path):
    deployer = Deployer(CorruptingLink("flaky"), str(tmp_path / "device"))
    with pytest.raises(DeployError) as error:
        deployer.ensure(artifacts[:1])
    message = str(error.value)
    assert "device 'flaky'" in message and "arrived corrupted" in message
    assert artifacts[0].sha256 in message
    assert not Path(deployer.remote_path(artifacts[0])).exists()
    assert not list((tmp_path / "device").rglob("*.partial-*"))


def test_a_short_write_on_the_device_is_refused(artifacts, tmp_path):
    deployer = Deployer(ShortWrite("full-disk"), str(tmp_path / "device"))
    with pytest.raises(DeployError, match=r"arrived corrupted .*100000 of 200000 bytes written"):
        deployer.ensure(artifacts[:1])
    assert not Path(deployer.remote_path(artifacts[0])).exists()
    assert not list((tmp_path / "device").rglob("*.partial-*"))


def test_push_streams_once_and_needs_no_second_hash_pass(artifacts, tmp_path):
    """A cold push is one command per file plus one rename: the device hashes while it writes."""
    calls = []

    class Counting(LocalTransport):
        def run(self, argv, **kwargs):
            calls.append((argv[3] if len(argv) > 3 else argv[0], kwargs.get("stdin_file")))
            return super().run(argv, **kwargs)

    deployer = Deployer(Counting("local"), str(tmp_path / "device"))
    deployer.ensure(artifacts)
    assert [name for name, _ in calls] == [
        "edgelab-hash",
        "edgelab-receive",
        "edgelab-receive",
        "edgelab-finalize",
    ]
    assert [source for _, source in calls if source is not None] == [a.local for a in artifacts]


@pytest.mark.parametrize(("integrity", "check"), [(True, "size"), (False, "sha256")])
def test_the_push_check_follows_the_links_own_integrity(artifacts, tmp_path, integrity, check):
    """SSH MACs every packet: the size is checked. ADB has no checksum: the device hashes."""
    checks = []

    class Link(LocalTransport):
        integrity_in_transit = integrity

        def run(self, argv, **kwargs):
            if len(argv) > 3 and argv[3] == "edgelab-receive":
                checks.append(argv[-1])
            return super().run(argv, **kwargs)

    deployer = Deployer(Link("d"), str(tmp_path / "device"))
    assert deployer.ensure(artifacts).bytes_pushed == 205_000
    assert checks == [check, check]
    for artifact in artifacts:
        assert Path(deployer.remote_path(artifact)).read_bytes() == artifact.local.read_bytes()


def test_an_unwritable_workdir_names_the_file_and_the_fix(artifacts, tmp_path):
    blocker = tmp_path / "device"
    blocker.write_text("a file where the workdir should be")
    deployer = Deployer(LocalTransport("local"), str(blocker))
    with pytest.raises(
        DeployError, match=r"receiving model one.tflite into .* failed .*free space and permissions"
    ):
        deployer.ensure(artifacts[:1])


def test_hash_check_is_one_round_trip(artifacts, tmp_path):
    calls = []

    class Counting(LocalTransport):
        def run(self, argv, **kwargs):
            calls.append(argv)
            return super().run(argv, **kwargs)

    deployer = Deployer(Counting("local"), str(tmp_path / "device"))
    deployer.ensure(artifacts)
    calls.clear()
    deployer.ensure(artifacts)
    assert len(calls) == 1


def test_python_fallback_when_sha256sum_is_missing(artifacts, tmp_path):
    """Old Android builds have no sha256sum; the device's python hashes instead."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "mv", "rm", "cat", "mkdir", "wc"):
        real = next(Path(d, tool) for d in ("/bin", "/usr/bin") if Path(d, tool).exists())
        (bin_dir / tool).symlink_to(real)

    class NoSha(LocalTransport):
        integrity_in_transit = False  # hash the push too, so the fallback runs for both checks

        def run(self, argv, **kwargs):
            return super().run(["env", f"PATH={bin_dir}", *argv], **kwargs)

    import sys

    deployer = Deployer(NoSha("old-phone"), str(tmp_path / "device"), python=sys.executable)
    assert deployer.ensure(artifacts).bytes_pushed == 205_000
    assert deployer.ensure(artifacts).bytes_pushed == 0


def test_resolve_workdir_expands_home_and_rejects_relative(transport):
    assert resolve_workdir(transport, "~/edgelab") == os.path.expanduser("~/edgelab")
    assert resolve_workdir(transport, "/data/local/tmp/edgelab/") == "/data/local/tmp/edgelab"
    with pytest.raises(DeployError, match="workdir 'relative/dir' must be absolute"):
        resolve_workdir(transport, "relative/dir")


def test_missing_host_file_is_named():
    with pytest.raises(DeployError, match="absent.onnx: file not found on the host"):
        Artifact.from_file(Path("/nonexistent/absent.onnx"))


def test_over_ssh_miss_hit_and_corruption(sshd, artifacts, tmp_path):
    """The same cache contract through the real ssh transport (sha256sum on the board)."""
    from harness.transport.ssh import SshTransport

    transport = SshTransport(sshd.device())
    try:
        deployer = Deployer(transport, resolve_workdir(transport, str(tmp_path / "board")))
        assert deployer.ensure(artifacts).bytes_pushed == 205_000
        assert deployer.ensure(artifacts).bytes_pushed == 0
        Path(deployer.remote_path(artifacts[1])).write_bytes(b"bit rot")
        report = deployer.ensure(artifacts)
        assert (report.replaced, report.bytes_pushed) == (["inputs.npz"], 5_000)
    finally:
        transport.close()


def test_trusted_ensure_skips_the_round_trip_for_what_this_deployer_checked(artifacts, tmp_path):
    calls = []

    class Counting(LocalTransport):
        def run(self, argv, **kwargs):
            calls.append(argv[3] if len(argv) > 3 else argv[0])
            return super().run(argv, **kwargs)

    deployer = Deployer(Counting("local"), str(tmp_path / "device"))
    deployer.ensure(artifacts)
    calls.clear()
    report = deployer.ensure(artifacts, trust_verified=True)
    assert (calls, sorted(report.present), report.bytes_pushed) == ([], ["inputs.npz", "model one.tflite"], 0)
    deployer.forget(artifacts[:1])
    Path(deployer.remote_path(artifacts[0])).write_bytes(b"damaged at rest")
    report = deployer.ensure(artifacts, trust_verified=True)
    assert calls == ["edgelab-hash", "edgelab-receive", "edgelab-finalize"]
    assert report.replaced == [artifacts[0].name]
    # a new deployer (a new session) trusts nothing: it checks in one round trip
    calls.clear()
    fresh = Deployer(Counting("local"), str(tmp_path / "device")).ensure(artifacts, trust_verified=True)
    assert (calls, len(fresh.present)) == (["edgelab-hash"], 2)


def test_a_model_damaged_on_the_device_between_tests_is_caught_by_the_agent_and_pushed_again(tmp_path):
    """The session skips the cache round trip for files it checked; the agent hashes them at
    every run, so a file changed since is never measured: it is pushed again and the run repeated."""
    from harness.config import load_fleet
    from harness.measurement import LatencyProtocol
    from harness.models.variants import variants_for
    from harness.session import Lab, RunOptions

    devices = tmp_path / "devices.yaml"
    devices.write_text(f"devices:\n  host:\n    kind: local\n    workdir: {tmp_path / 'device'}\n")
    lab = Lab(
        load_fleet(devices, lab_file=tmp_path / "no-lab.yaml"),
        RunOptions(reports_dir=tmp_path / "r", devices=("host",)),
    )
    heard: list[str] = []
    lab.notify = heard.append
    variant = variants_for("silero_vad")[0]
    protocol = LatencyProtocol(warmup_iters=1, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=10.0, idle_s=0.0)
    try:
        first = lab.benchmark("host", variant, protocol, energy="none").deploy
        trusted = lab.benchmark("host", variant, protocol, energy="none").deploy
        model = next((tmp_path / "device" / "cas").rglob("silero_vad.onnx"))
        model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
        measured = lab.benchmark("host", variant, protocol, energy="none")
        result, repaired = measured.result, measured.deploy
    finally:
        lab.close()
    assert "silero_vad.onnx" in first.pushed and trusted.pushed == [] and trusted.replaced == []
    assert repaired.replaced == ["silero_vad.onnx"] and result.iterations >= 5
    assert len(heard) == 1 and "silero_vad.onnx: sha256" in heard[0] and "pushing again" in heard[0]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == model.parent.name


# -- progress on pushes ----------------------------------------------------------------------------


def test_a_push_on_a_terminal_draws_its_bar(transport, artifacts, tmp_path, monkeypatch):
    leader = fake_terminal(monkeypatch)
    deployer = Deployer(transport, str(tmp_path / "device"))
    report = deployer.ensure(artifacts)
    bar = drawn(leader)
    os.close(leader)
    assert sorted(report.pushed) == ["inputs.npz", "model one.tflite"]
    assert "push model one.tflite to local" in bar
    assert "/195k" in bar  # 200,000 bytes in KiB: the bar's total is the artifact's size
    for artifact in artifacts:
        assert Path(deployer.remote_path(artifact)).read_bytes() == artifact.local.read_bytes()


def test_a_push_under_ci_draws_nothing_even_on_a_terminal(transport, artifacts, tmp_path, monkeypatch):
    leader = fake_terminal(monkeypatch)
    monkeypatch.setenv("CI", "true")
    Deployer(transport, str(tmp_path / "device")).ensure(artifacts)
    bar = drawn(leader)
    os.close(leader)
    assert bar == ""


def test_a_push_off_a_terminal_draws_nothing_and_sends_no_progress(artifacts, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    listened: list[object] = []

    class Recording(LocalTransport):
        def run(self, argv, **kwargs):
            if kwargs.get("stdin_file") is not None:
                listened.append(kwargs.get("stdin_progress"))
            return super().run(argv, **kwargs)

    Deployer(Recording("local"), str(tmp_path / "device")).ensure(artifacts)
    assert listened == [None, None]  # nobody watches: the transports keep their silent path
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
@pytest.mark.parametrize("integrity", [True, False])
def test_a_push_into_a_full_disk_fails_naming_the_space_and_leaves_no_partial(artifacts, tmp_path, integrity):
    """The device's disk fills during the push (ENOSPC): the push fails and removes what it wrote,
    so the failed push does not keep the space it took."""
    device = tmp_path / "device"
    device.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "edgelab-test", str(device)], check=True)
    try:
        link = LocalTransport("local")
        link.integrity_in_transit = integrity  # size check (ssh) or streamed hash (adb)
        with pytest.raises(DeployError, match=r"device 'local': .*model one.tflite.*check free space"):
            Deployer(link, str(device)).ensure(artifacts)
        assert not list(device.rglob("*.partial-*"))
    finally:
        subprocess.run(["umount", str(device)], check=True)
