"""Two lab hosts, one PostgreSQL: each "host" is a network namespace with a hostname of its own,
its own virtual lab and its own pytest session, and both write to one real PostgreSQL server
(docs/fleet.md). Both reach a device named virtual-pixel8 (as two hosts may both reach one
network device), so the cluster-wide lease makes the second wait for the first."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from harness.report.data import RunReport, merged
from harness.report.markdown import render_markdown
from harness.store.db import ResultsStore
from tests.fixtures.postgres import running_postgres
from tests.lab.conftest import lab_root

SUBNET = "10.232"  # 10.232.N.1 on the root side, .2 in host N's namespace (the lab uses 10.213)

TEST_FILE = """
import os, time
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark(min_s=0.2, max_s=2, warmup_s=0)
    release = os.environ.get("RELEASE")
    deadline = time.monotonic() + 600
    while release and not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.2)  # keeps the lease until the other host has asked for the device
"""


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    folder: Path
    sessions: list[subprocess.Popen[str]] = field(default_factory=list)

    def stop(self) -> None:
        """On every exit path: let a session still running finish (its script brings its lab
        down), else kill it and bring the lab down from here, so that no device or agent of a
        failed run outlives the test."""
        (self.folder / "release").touch()  # the first host waits for it
        for session in self.sessions:
            try:
                session.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(session.pid, signal.SIGKILL)
                session.wait()
        lab = self.folder / "lab"
        if (lab / "lab.json").exists():  # the script's own `lab down` did not run
            down = [sys.executable, "-m", "harness.cli", "lab", "down", "--purge", "--lab-dir", str(lab)]
            subprocess.run(
                ["ip", "netns", "exec", self.namespace, *down], check=False, capture_output=True, timeout=300
            )

    def script(self, database: str) -> str:
        lab = shlex.quote(str(self.folder / "lab"))
        python = shlex.quote(sys.executable)
        pytest_args = [
            python, "-m", "pytest", "test_edge.py", "-q", "-p", "no:cacheprovider", "--device=virtual-pixel8",
            f"--devices-file={self.folder / 'lab' / 'devices.yaml'}", f"--results-db={database}",
            "--energy=none", "--lease-timeout=600", "--no-report", "-s",
        ]  # fmt: skip
        return (
            f"hostname {self.name} && ip link set lo up && "
            f"{python} -m harness.cli lab up --profile pixel8 --lab-dir {lab} >lab.log 2>&1 && "
            f"{{ {' '.join(pytest_args)}; code=$?; {python} -m harness.cli lab down --purge --lab-dir {lab} "
            ">>lab.log 2>&1; exit $code; }"
        )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("two lab hosts need root (network namespaces, unshare)")
    made: list[Host] = []
    tag = os.getpid() % 10000
    try:
        for index, letter in enumerate("ab", start=1):
            namespace = f"edgelab-host-{letter}-{tag}"
            outside, inside = f"elh{letter}{tag}", f"elh{letter}{tag}i"
            folder = lab_root(f"host-{letter}")
            folder.mkdir(parents=True, exist_ok=True)
            _ip("netns", "add", namespace)
            made.append(Host(f"lab-host-{letter}", namespace, f"{SUBNET}.{index}.2", folder))
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("addr", "add", f"{SUBNET}.{index}.1/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", namespace, "addr", "add", f"{SUBNET}.{index}.2/30", "dev", inside)
            _ip("-n", namespace, "link", "set", inside, "up")
            (folder / "test_edge.py").write_text(TEST_FILE)
        yield made
    finally:
        for host in made:
            host.stop()
            subprocess.run(["ip", "netns", "del", host.namespace], check=False, capture_output=True)
            shutil.rmtree(host.folder, ignore_errors=True)
        for letter in "ab":
            subprocess.run(["ip", "link", "del", f"elh{letter}{tag}"], check=False, capture_output=True)


def _start(host: Host, database: str, release: Path | None) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "RELEASE": str(release or ""),
        "PYTHONUNBUFFERED": "1",
        # each host has its own disk: leases on it, health records, caches of its own
        "EDGELAB_LEASE_DIR": str(host.folder / "leases"),
        "EDGELAB_HEALTH_DIR": str(host.folder / "health"),
    }
    session = subprocess.Popen(
        ["ip", "netns", "exec", host.namespace, "unshare", "--uts", "sh", "-c", host.script(database)],
        cwd=host.folder,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, for Host.stop
    )
    host.sessions.append(session)
    return session


def _log(host: Host) -> str:
    path = host.folder / "lab.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _advisory_locks(local_url: str) -> int:
    engine = create_engine(local_url)
    try:
        with engine.connect() as connection:
            query = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            return int(connection.execute(query).scalar() or 0)
    finally:
        engine.dispose()


@pytest.mark.slow  # two virtual labs and two pytest sessions, one after the other: 136 s at load 8-12
def test_two_hosts_share_leases_and_results_and_make_one_merged_report(hosts):
    first, second = hosts
    listen = ("127.0.0.1", f"{SUBNET}.1.1", f"{SUBNET}.2.1")
    with running_postgres(listen=listen, trusted=(f"{SUBNET}.0.0/16",)) as port:
        local = f"postgresql://postgres@127.0.0.1:{port}/edgelab"
        release = first.folder / "release"
        running = _start(first, f"postgresql://postgres@{SUBNET}.1.1:{port}/edgelab", release)
        deadline = time.monotonic() + 600
        while _advisory_locks(local) == 0:  # the first host holds virtual-pixel8's lease
            assert running.poll() is None, running.communicate()[0] + _log(first)
            assert time.monotonic() < deadline, "the first host never leased its device"
            time.sleep(0.5)
        waiting = _start(second, f"postgresql://postgres@{SUBNET}.2.1:{port}/edgelab", None)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(waiting.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        while not any("is leased by another lab host" in line for line in lines):
            assert waiting.poll() is None or reader.is_alive(), "".join(lines) + _log(second)
            assert time.monotonic() < deadline, "the second host never asked for the device"
            time.sleep(0.2)
        released_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        release.touch()  # now the first host may finish and let the device go
        first_output = running.communicate(timeout=900)[0]
        waiting.wait(timeout=900)
        reader.join(timeout=60)
        second_output = "".join(lines)
        assert running.returncode == 0, first_output + _log(first)
        assert waiting.returncode == 0, second_output + _log(second)
        assert (
            "device 'virtual-pixel8' is leased by another lab host (PostgreSQL advisory lock)"
            in second_output
        )
        store = ResultsStore(local)
        try:
            reports = []
            for run in store.runs():
                info = store.run_info(run.id)
                assert info is not None
                reports.append(RunReport(info, store.records(info.id)))
        finally:
            store.close()
    assert len(reports) == 2  # one run id per host
    assert {r.run.host for r in reports} == {"lab-host-a", "lab-host-b"}
    assert len({r.run.id for r in reports}) == 2
    for report in reports:
        assert [(r.device, r.status) for r in report.records] == [("virtual-pixel8", "passed")]
    by_host = {r.run.host: r for r in reports}
    held, waited = by_host["lab-host-a"], by_host["lab-host-b"]
    # the first host measured while it held the device; the second only after it let it go
    # (timestamps in whole seconds, each truncated on its own clock read: one second of slack)
    from datetime import datetime, timedelta

    def at(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    second = timedelta(seconds=1)
    assert at(held.records[0].finished_at) <= at(released_at) + second
    assert at(released_at) <= at(waited.records[0].finished_at) + second
    together = merged(reports)
    assert together.run.id == "+".join(r.run.id for r in reports)
    assert set(together.run.host.split(", ")) == {"lab-host-a", "lab-host-b"}  # type: ignore[union-attr]
    assert together.run.devices == ("virtual-pixel8",)
    assert {r.run_id for r in together.records} == {r.run.id for r in reports}
    summary = render_markdown(together)
    assert f"Run `{together.run.id}`" in summary and "2 result(s)" in summary
