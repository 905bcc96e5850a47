"""Devices that disappear mid-test, on a lab of their own: the run errors quickly naming the
device and what it was doing, and the other device goes on. Every run here goes over the
persistent channel (the default): its heartbeat notices a cut link, a closed stream a dead phone,
and one reconnection is tried before the error."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from harness.errors import ConnectionLost, TransportError
from harness.lab import network
from harness.lab.manager import VirtualLab
from harness.measurement import LatencyProtocol
from harness.models.variants import variants_for
from harness.session import Lab, RunOptions
from tests.lab.conftest import lab_root

LONG = LatencyProtocol(warmup_iters=1, warmup_s=0.0, min_iters=1, min_s=30.0, max_s=30.0, idle_s=0.0)
SHORT = LatencyProtocol(warmup_iters=1, warmup_s=0.0, min_iters=5, min_s=0.2, max_s=10.0, idle_s=0.0)


@pytest.fixture(scope="module")
def fault_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the virtual lab needs root")
    root = lab_root("faults")
    lab = VirtualLab(root)
    try:
        lab.up(["pixel8", "rpi5"])
        session = Lab(
            lab.fleet(),
            RunOptions(
                reports_dir=tmp_path_factory.mktemp("r"),
                devices=("virtual-pixel8", "virtual-rpi5"),
                lease_timeout_s=None,  # the pytester runs of this module lease these devices
            ),
        )
        yield lab, session
        session.close()
    finally:
        lab.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)


def after(seconds: float, action) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_board_link_down_mid_run_is_noticed_in_seconds(fault_lab):
    lab, session = fault_lab
    board = next(d for d in lab.state().devices if d.name == "virtual-rpi5")
    link = network.BoardLink(board.board_index)
    session.benchmark(
        "virtual-rpi5", variants_for("silero_vad")[0], SHORT, energy="none"
    )  # connected, deployed
    cut = after(2.0, lambda: subprocess.run(["ip", "link", "set", link.host_interface, "down"], check=True))
    try:
        with pytest.raises(
            ConnectionLost,
            match=r"device 'virtual-rpi5': phase run: no answer from the device .*edgelab_agent.py run",
        ):
            session.benchmark("virtual-rpi5", variants_for("silero_vad")[0], LONG, energy="none")
        # ConnectionLost (not CommandTimeout): noticed by the liveness probe while the 30-s run was
        # still going, not at the command's budget
    finally:
        cut.join()
        subprocess.run(["ip", "link", "set", link.host_interface, "up"], check=True)
    result = session.benchmark("virtual-pixel8", variants_for("silero_vad")[0], SHORT, energy="none").result
    assert result.latency_ms.samples >= 5  # the other device went on


def test_retries_reconnect_after_a_link_outage(fault_lab, pytester):
    lab, _session = fault_lab
    board = next(d for d in lab.state().devices if d.name == "virtual-rpi5")
    link = network.BoardLink(board.board_index)
    pytester.makepyfile(
        test_edge=f"""
import subprocess, threading, time
import pytest

def outage():
    time.sleep(2)
    subprocess.run(["ip", "link", "set", "{link.host_interface}", "down"], check=True)
    time.sleep(12)
    subprocess.run(["ip", "link", "set", "{link.host_interface}", "up"], check=True)

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark(min_s=0.2, max_s=1, warmup_s=0)  # connected, deployed, warm agent up
    threading.Thread(target=outage, daemon=True).start()  # so the outage falls in the next run
    edge.benchmark(min_s=6, max_s=6, warmup_s=0)
"""
    )
    run = pytester.runpytest_subprocess(
        f"--devices-file={lab.devices_file}", "--device=virtual-rpi5", "--retries=2", "--energy=none",
        "-p", "no:cacheprovider", "--junitxml=j.xml",
    )  # fmt: skip
    run.assert_outcomes(passed=1)
    assert "edgelab.retry" in (pytester.path / "j.xml").read_text()  # it was lost, then measured again


def test_a_lost_device_is_listed_and_the_other_device_goes_on(fault_lab, pytester):
    lab, _session = fault_lab
    board = next(d for d in lab.state().devices if d.name == "virtual-rpi5")
    link = network.BoardLink(board.board_index)
    pytester.makepyfile(
        test_edge=f"""
import subprocess, threading, time
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    if edge.device == "virtual-rpi5":
        threading.Thread(target=lambda: (time.sleep(2), subprocess.run(
            ["ip", "link", "set", "{link.host_interface}", "down"], check=True)), daemon=True).start()
        edge.benchmark(min_s=20, max_s=20, warmup_s=0)
    else:
        edge.benchmark()
"""
    )
    try:
        run = pytester.runpytest_subprocess(
            f"--devices-file={lab.devices_file}", "--device=virtual-rpi5,virtual-pixel8", "--energy=none",
            "-p", "no:cacheprovider", "--min-s=0.5", "--warmup-s=0",
        )  # fmt: skip
    finally:
        subprocess.run(["ip", "link", "set", link.host_interface, "up"], check=True)
    run.assert_outcomes(passed=1, failed=1)
    # lost in whichever phase the link went down (a running command, or opening the next channel)
    run.stdout.fnmatch_lines(["*LOST DEVICE virtual-rpi5: *: device 'virtual-rpi5': *"])
    import json

    records = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())["results"]
    assert {r["device"]: r["status"] for r in records} == {
        "virtual-rpi5": "failed",
        "virtual-pixel8": "passed",
    }


# Last: it kills the phone the tests above use.
def test_phone_gone_mid_run_errors_at_once(fault_lab):
    lab, session = fault_lab
    phone = next(d for d in lab.state().devices if d.name == "virtual-pixel8")
    session.benchmark("virtual-pixel8", variants_for("silero_vad")[0], SHORT, energy="none")
    killer = after(2.0, lambda: os.kill(phone.pid, signal.SIGKILL))  # its adbd dies with it
    with pytest.raises(
        TransportError,
        match=r"device 'virtual-pixel8': phase run: the device closed the persistent channel during "
        r".*edgelab_agent.py run .*; reconnecting failed: cannot open shell",
    ):
        session.benchmark("virtual-pixel8", variants_for("silero_vad")[0], LONG, energy="none")
    killer.join()
