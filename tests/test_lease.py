"""Device leases: one holder at a time on a host (flock) and across hosts (PostgreSQL advisory
locks); a waiting run names the holder; a dead holder frees the device."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from harness.lease import DeviceLease, LeaseTimeout


def test_second_holder_waits_names_the_first_and_gets_it_after_release(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELAB_LEASE_DIR", str(tmp_path))
    notes: list[str] = []
    first = DeviceLease("pixel8", run_id="run-a", timeout_s=1).acquire()
    second = DeviceLease("pixel8", run_id="run-b", timeout_s=0.6, notify=notes.append)
    with pytest.raises(
        LeaseTimeout, match=rf"device 'pixel8' is still leased by run run-a \(pid {os.getpid()} on "
    ):
        second.acquire()
    assert notes and "waiting up to 0.6 s" in notes[0]
    other_device = DeviceLease("rpi5", run_id="run-b", timeout_s=0.5).acquire()  # a different device is free
    other_device.release()
    first.release()
    with DeviceLease("pixel8", run_id="run-b", timeout_s=1) as lease:
        assert lease.holder()["run_id"] == "run-b"


def test_a_killed_holder_frees_the_device(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELAB_LEASE_DIR", str(tmp_path))
    holder = subprocess.Popen(
        [sys.executable, "-c", "from harness.lease import DeviceLease; import time; "
         "lease = DeviceLease('pixel8', run_id='doomed', timeout_s=5).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "EDGELAB_LEASE_DIR": str(tmp_path)},
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(LeaseTimeout, match="run doomed"):
        DeviceLease("pixel8", run_id="me", timeout_s=0.3).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    with DeviceLease("pixel8", run_id="me", timeout_s=30) as lease:  # LeaseTimeout if never freed
        assert lease.holder()["run_id"] == "me"


def test_two_hosts_share_a_device_through_postgresql(postgres_url, tmp_path, monkeypatch):
    from harness.store.db import ResultsStore

    host_a, host_b = ResultsStore(postgres_url), ResultsStore(postgres_url)
    monkeypatch.setenv("EDGELAB_LEASE_DIR", str(tmp_path / "a"))  # separate lock folders: separate hosts
    lease_a = DeviceLease("jetson", run_id="a", timeout_s=1, advisory=host_a.advisory_lock).acquire()
    monkeypatch.setenv("EDGELAB_LEASE_DIR", str(tmp_path / "b"))
    with pytest.raises(LeaseTimeout, match="leased by another lab host"):
        DeviceLease("jetson", run_id="b", timeout_s=0.6, advisory=host_b.advisory_lock).acquire()
    lease_a.release()
    lease_b = DeviceLease("jetson", run_id="b", timeout_s=2, advisory=host_b.advisory_lock).acquire()
    lease_b.release()
    host_a.close()
    host_b.close()


def test_a_run_on_a_held_device_errors_naming_the_holder(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELAB_LEASE_DIR", str(tmp_path))
    pytester.makepyfile(
        test_edge="""
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()
"""
    )
    with DeviceLease("local", run_id="nightly-42", timeout_s=1):
        run = pytester.runpytest_subprocess("--lease-timeout=1", "-p", "no:cacheprovider")
    run.assert_outcomes(errors=1)
    run.stdout.fnmatch_lines(["*device 'local' is still leased by run nightly-42*raise --lease-timeout*"])


def test_the_waiting_notice_reaches_the_terminal_while_pytest_captures(pytester, tmp_path, monkeypatch):
    """The notice comes while the test waits, outside any 'Captured' section: this process holds
    the lease and lets go only once the waiting run has printed it (without the fix it never
    shows, and the run times out)."""
    monkeypatch.setenv("EDGELAB_LEASE_DIR", str(tmp_path / "leases"))
    pytester.makepyfile(
        test_wait="""
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()
"""
    )
    held = DeviceLease("local", run_id="holder-run", timeout_s=5).acquire()
    waiting = pytester.popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lease-timeout=30", "--results-db=none",
         "--no-report", "--warmup-iters=1", "--min-iters=3", "--min-s=0", "--warmup-s=0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert waiting.stdout is not None
        for line in waiting.stdout:
            seen.append(line)
            if "is leased by run holder-run" in line:
                held.release()
    finally:
        held.release()
        waiting.wait(60)
    output = "".join(seen)
    notice = next(line for line in seen if "is leased by run holder-run" in line)
    assert "waiting up to 30 s" in notice
    assert waiting.returncode == 0, output
    assert "Captured" not in output
