"""labgrid places against a real labgrid-coordinator and labgrid-exporter (PyPI labgrid, gRPC) on
this host: the place's NetworkService points at a real sshd; someone else holds places through
the real labgrid-client; a coordinator is killed mid-session."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from harness.config import AdbDevice, LabgridDevice, SshDevice, parse_device
from harness.errors import ConfigError, ConnectError, ConnectionLost, DeviceBusy
from harness.lease import lease_dir
from harness.transport import device_workdir, labgrid_place, open_transport
from harness.transport.labgrid import LabgridTransport, Resource, choose_resource, reach
from tests.fixtures.labgrid import LabgridLab, snapshot, start_labgrid
from tests.test_plugin import BENCH_TEST, FAST, results_of

PLACES = {
    "rack-board": ["exp1/board/NetworkService"],
    "rack-pdu": ["exp1/pdu/NetworkPowerPort"],
    "rack-empty": ["gone/board/NetworkService"],
}


def exported(sshd) -> dict:
    return {
        "board": {"NetworkService": {"address": "127.0.0.1", "port": sshd.port, "username": sshd.user}},
        "pdu": {"NetworkPowerPort": {"model": "gude", "host": "192.0.2.1", "index": 1}},
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory, sshd):
    lab = start_labgrid(tmp_path_factory.mktemp("labgrid"), PLACES, aliases={"rack-board": ["bench-3"]})
    try:
        lab.export("exp1", exported(sshd))
        yield lab
    finally:
        lab.stop()


def device(lab: LabgridLab, sshd, place: str = "rack-board", **fields) -> LabgridDevice:
    raw = {
        "kind": "labgrid",
        "coordinator": lab.address,
        "place": place,
        "key_file": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
        **fields,
    }
    parsed = parse_device("rack", raw)
    assert isinstance(parsed, LabgridDevice)
    return parsed


def test_a_place_is_reserved_acquired_reached_over_ssh_and_released(lab, sshd):
    transport = open_transport(device(lab, sshd))
    try:
        assert isinstance(transport, LabgridTransport)
        state = snapshot(lab.address)
        held = state.places["rack-board"]
        assert held["acquired"] == transport.acquired_as
        (reservation,) = state.reservations
        assert (reservation["state"], reservation["token"]) == ("acquired", held["reservation"])
        assert transport.run(["sh", "-c", "echo $((6 * 7))"], timeout=30).stdout == "42\n"
        place = labgrid_place(transport)
        assert place is not None
        assert (place.coordinator, place.place) == (lab.address, "rack-board")
        assert place.resource == "exp1/board/NetworkService/NetworkService"
        assert place.address == f"127.0.0.1:{sshd.port}"
        assert transport.integrity_in_transit is True
        assert device_workdir(transport.config, transport) == "~/.cache/edgelab/device"
    finally:
        transport.close()
    state = snapshot(lab.address)
    assert state.places["rack-board"]["acquired"] is None
    assert state.places["rack-board"]["reservation"] is None
    assert state.reservations == []
    transport.close()  # twice is fine


def test_an_alias_names_the_place(lab, sshd):
    transport = open_transport(device(lab, sshd, place="bench-3"))
    try:
        place = labgrid_place(transport)
        assert place is not None and place.place == "rack-board"
    finally:
        transport.close()


def test_a_place_held_by_someone_else_times_out_naming_the_place_the_holder_and_the_fix(lab, sshd):
    lab.client("alice", "-p", "rack-board", "acquire")
    told: list[str] = []
    try:
        with pytest.raises(DeviceBusy) as raised:
            open_transport(device(lab, sshd), wait_s=2, notify=told.append)
        message = str(raised.value)
        assert message.startswith("device 'rack': labgrid place 'rack-board'")
        assert "still held by " in message and "/alice after 2 s" in message
        assert f"labgrid-client -x {lab.address} -p rack-board release" in message
        assert "--lease-timeout" in message
        (waiting,) = told
        assert "/alice" in waiting and "waiting up to 2 s in labgrid's reservation queue" in waiting
        state = snapshot(lab.address)
        assert state.places["rack-board"]["acquired"].endswith("/alice")
        assert state.reservations == []  # the queued reservation was cancelled
    finally:
        lab.client("alice", "-p", "rack-board", "release")


def test_a_place_held_by_someone_else_is_had_once_they_release_it(lab, sshd):
    lab.client("alice", "-p", "rack-board", "acquire")
    told: list[str] = []
    opened: list[object] = []
    waiter = threading.Thread(
        target=lambda: opened.append(open_transport(device(lab, sshd), wait_s=300, notify=told.append))
    )
    try:
        waiter.start()
        deadline = time.monotonic() + 60
        while not told:  # EdgeLab is queued behind alice
            assert waiter.is_alive() and time.monotonic() < deadline, opened
            time.sleep(0.1)
        (queued,) = snapshot(lab.address).reservations
        assert queued["state"] == "waiting" and queued["filters"] == {"main": {"name": "rack-board"}}
    finally:
        lab.client("alice", "-p", "rack-board", "release")
    waiter.join(120)
    (transport,) = opened
    assert isinstance(transport, LabgridTransport)
    try:
        assert lab.acquired_by("rack-board") == transport.acquired_as
        assert transport.run(["true"], timeout=30).ok
    finally:
        transport.close()
    assert lab.acquired_by("rack-board") is None


def test_an_unknown_place_lists_the_known_ones(lab, sshd):
    with pytest.raises(ConfigError) as raised:
        open_transport(device(lab, sshd, place="rack-bord"))
    message = str(raised.value)
    assert f"labgrid place 'rack-bord' is not known to the coordinator at {lab.address}" in message
    assert "rack-board, rack-empty, rack-pdu" in message and "Did you mean 'rack-board'?" in message
    assert snapshot(lab.address).reservations == []


def test_a_place_without_a_usable_resource_says_what_it_has_and_holds_nothing(lab, sshd):
    with pytest.raises(ConnectError) as raised:
        open_transport(device(lab, sshd, place="rack-pdu"))
    message = str(raised.value)
    assert "labgrid place 'rack-pdu' has no resource EdgeLab can reach the device through" in message
    assert "it matches exp1/pdu/NetworkPowerPort/NetworkPowerPort" in message
    assert "export a NetworkService (SSH) or an ADB device (RemoteUSBADBDevice" in message
    with pytest.raises(ConnectError, match="it matches no exported resource: is its exporter running"):
        open_transport(device(lab, sshd, place="rack-empty"))
    state = snapshot(lab.address)
    assert state.reservations == [] and all(p["acquired"] is None for p in state.places.values())


def test_an_unreachable_coordinator_is_a_connect_error_naming_it():
    closed = "127.0.0.1:9"
    raw = {"kind": "labgrid", "coordinator": closed, "place": "p"}
    with pytest.raises(ConnectError, match=r"device 'rack': labgrid coordinator 127.0.0.1:9 does not answer"):
        open_transport(parse_device("rack", raw))


@pytest.mark.parametrize("address", ["host:notaport", "host:99999", ":20408"])
def test_a_malformed_coordinator_address_names_the_field(address):
    raw = {"kind": "labgrid", "coordinator": address, "place": "p"}
    with pytest.raises(
        ConfigError, match=rf"device 'rack': field 'coordinator': '{address}' is not HOST\[:PORT\]"
    ):
        open_transport(parse_device("rack", raw))


def test_ssh_errors_say_the_address_came_from_the_place(lab, sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(ConnectError) as raised:
        open_transport(device(lab, sshd, known_hosts=str(empty)))
    assert "is not in" in str(raised.value) and "(the address labgrid place 'rack-board' gives)" in str(
        raised.value
    )
    assert lab.acquired_by("rack-board") is None  # released when the device could not be reached


def test_without_labgrid_installed_the_error_names_the_extra(monkeypatch, sshd):
    monkeypatch.setitem(sys.modules, "labgrid", None)
    monkeypatch.setitem(sys.modules, "labgrid.remote", None)
    raw = {"kind": "labgrid", "coordinator": "127.0.0.1:9", "place": "p"}
    with pytest.raises(ConfigError, match=r"pip install 'edgelab\[labgrid\]'"):
        open_transport(parse_device("rack", raw))


# -- the coordinator goes away ----------------------------------------------------------------------


def test_a_coordinator_that_goes_away_stops_the_device_with_a_clear_error_and_nothing_hangs(tmp_path, sshd):
    lab = start_labgrid(tmp_path / "labgrid", {"rack-board": ["exp1/board/NetworkService"]})
    try:
        lab.export("exp1", {"board": exported(sshd)["board"]})
        transport = open_transport(device(lab, sshd))
        assert transport.run(["true"], timeout=30).ok
        lab.coordinator.send_signal(signal.SIGKILL)
        lab.coordinator.wait()
        deadline = time.monotonic() + 60
        with pytest.raises(ConnectionLost) as raised:
            while time.monotonic() < deadline:
                transport.run(["true"], timeout=30)
                time.sleep(0.1)
        message = str(raised.value)
        assert message.startswith(f"device 'rack': the labgrid coordinator {lab.address} went away")
        assert "place 'rack-board' is no longer held for this run (release attempted, and failed" in message
        assert "check the coordinator and run again" in message
        with pytest.raises(ConnectionLost, match="went away during the session"):
            transport.push(tmp_path / "labgrid" / "places.yaml", "/tmp/x")
        transport.close()
    finally:
        lab.stop()


# -- the watcher: a process that dies holding a place -------------------------------------------------

HOLD_AND_DIE = """
import os, sys
from harness.config import parse_device
from harness.transport import open_transport
transport = open_transport(parse_device("rack", {raw!r}))
print("held", flush=True)
sys.stdin.readline()
os.kill(os.getpid(), {signal})
"""


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_process_killed_while_holding_a_place_has_it_released_by_its_watcher(lab, sshd, how):
    raw = device(lab, sshd).model_dump(exclude={"name"}, exclude_defaults=True) | {"kind": "labgrid"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_DIE.format(raw=raw, signal=int(how))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline() == "held\n"
    assert lab.acquired_by("rack-board") is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(60) == -how
    state = lab.wait_released("rack-board")
    assert state.reservations == []


# -- choosing the resource (no coordinator needed) --------------------------------------------------


def resource(cls: str, name: str | None = None, **params) -> Resource:
    return Resource("exp1", "grp", cls, name or cls, params, avail=True, proxy_required=False)


def test_several_usable_resources_need_the_resource_field():
    both = [
        resource("NetworkService", "ssh-a", address="a"),
        resource("NetworkService", "ssh-b", address="b"),
    ]
    with pytest.raises(ConfigError, match="several resources EdgeLab could use .*set field 'resource'"):
        choose_resource("rack", "p", both, None, "c:1")
    assert choose_resource("rack", "p", both, "ssh-b", "c:1").params == {"address": "b"}
    with pytest.raises(
        ConfigError, match="field 'resource': .* no usable resource named 'ssh-c' \\(usable: ssh-a, ssh-b\\)"
    ):
        choose_resource("rack", "p", both, "ssh-c", "c:1")


def test_a_resource_behind_labgrids_proxy_or_absent_is_refused_with_the_reason():
    proxied = Resource("exp1", "grp", "NetworkService", "ssh", {"address": "fe80::1%eth0"}, True, True)
    with pytest.raises(ConnectError, match="reachable only through labgrid's proxy"):
        choose_resource("rack", "p", [proxied], None, "c:1")
    absent = Resource("exp1", "grp", "NetworkADBDevice", "adb", {"host": "h", "port": 5555}, False, False)
    with pytest.raises(ConnectError, match="exported but not available"):
        choose_resource("rack", "p", [absent], None, "c:1")


def test_each_resource_class_reaches_the_device_its_way():
    config = parse_device(
        "rack", {"kind": "labgrid", "coordinator": "c", "place": "p", "adb_port": 5038, "tags": ["x"]}
    )
    assert isinstance(config, LabgridDevice)
    board = reach(config, resource("NetworkService", address="10.0.0.5", port=2222, username="pi"))
    assert isinstance(board, SshDevice)
    assert (board.name, board.host, board.port, board.user, board.tags) == (
        "rack",
        "10.0.0.5",
        2222,
        "pi",
        ("x",),
    )
    assert board.workdir == "~/.cache/edgelab/device"
    tcp = reach(config, resource("NetworkADBDevice", host="10.0.0.6", port=5555))
    assert isinstance(tcp, AdbDevice)
    assert (tcp.serial, tcp.adb_host, tcp.adb_port, tcp.connect) == ("10.0.0.6:5555", "127.0.0.1", 5038, True)
    assert tcp.workdir == "/data/local/tmp/edgelab"
    usb = reach(
        config, resource("RemoteUSBADBDevice", host="exporter-3", port=41000, serialno="38101FDJH00ABC")
    )
    assert isinstance(usb, AdbDevice)
    assert (usb.serial, usb.adb_host, usb.adb_port, usb.connect) == (
        "38101FDJH00ABC",
        "exporter-3",
        41000,
        False,
    )
    with pytest.raises(ConnectError, match="names no username; set field 'user'"):
        reach(config, resource("NetworkService", address="10.0.0.5"))
    with pytest.raises(ConnectError, match="has unusable parameters .*missing parameter 'port'"):
        reach(config, resource("NetworkADBDevice", host="10.0.0.6"))


# -- end to end: a pytest run measures on the place --------------------------------------------------

# A test that measures, then does ``after`` while the place is still held.
BENCH = BENCH_TEST + "    {after}\n"


def labgrid_fleet(pytester, lab, sshd) -> None:
    pytester.makefile(
        ".yaml",
        devices=(
            "devices:\n"
            f"  rack: {{kind: labgrid, coordinator: '{lab.address}', place: rack-board, "
            f"key_file: '{sshd.client_key}', known_hosts: '{sshd.known_hosts}', python: '{sys.executable}', "
            f"workdir: '{pytester.path / 'board-workdir'}', tags: [rack]}}\n"
        ),
    )


def records(pytester) -> list[dict]:
    return results_of(pytester)["results"]


def test_a_pytest_run_on_the_place_measures_over_ssh_and_records_the_place(pytester, lab, sshd):
    labgrid_fleet(pytester, lab, sshd)
    pytester.makepyfile(test_edge=BENCH.format(after=""))
    pytester.runpytest(*FAST, "--device=rack").assert_outcomes(passed=1)
    (record,) = records(pytester)
    assert (record["device"], record["device_kind"], record["status"]) == ("rack", "labgrid", "passed")
    assert record["latency_ms"]["median"] > 0 and record["memory"]["peak_rss_mb"] > 0
    assert record["device_fingerprint"]["labgrid"] == {
        "coordinator": lab.address,
        "place": "rack-board",
        "resource": "exp1/board/NetworkService/NetworkService",
        "address": f"127.0.0.1:{sshd.port}",
    }
    assert list((pytester.path / "board-workdir").glob("cas/*/silero_vad.onnx"))
    state = snapshot(lab.address)
    assert state.places["rack-board"]["acquired"] is None and state.reservations == []
    assert not [p for p in lease_dir().glob("rack*")]  # labgrid's queue was the only lease


@pytest.mark.parametrize(
    ("after", "outcome"),
    [("assert False, 'a failed test'", "failed"), ("raise KeyboardInterrupt", "interrupted")],
)
def test_a_failed_or_interrupted_run_releases_the_place(pytester, lab, sshd, after, outcome):
    labgrid_fleet(pytester, lab, sshd)
    pytester.makepyfile(test_edge=BENCH.format(after=after))
    if outcome == "failed":
        pytester.runpytest(*FAST, "--device=rack").assert_outcomes(failed=1)
        (record,) = records(pytester)
        assert record["device_fingerprint"]["labgrid"]["place"] == "rack-board"
    else:
        interrupted = pytester.inline_run(*FAST, "--device=rack", no_reraise_ctrlc=True)
        assert interrupted.ret == pytest.ExitCode.INTERRUPTED
    state = snapshot(lab.address)
    assert state.places["rack-board"]["acquired"] is None and state.reservations == []


def test_a_pytest_run_killed_with_sigterm_leaves_the_place_free(pytester, lab, sshd):
    labgrid_fleet(pytester, lab, sshd)
    held = pytester.path / "held"
    pytester.makepyfile(
        test_edge=BENCH.format(after=f"open({str(held)!r}, 'w').close(); __import__('time').sleep(600)")
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", *FAST, "--device=rack"],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not held.exists():
            assert run.poll() is None and time.monotonic() < deadline, "the run never held the place"
            time.sleep(0.2)
        assert lab.acquired_by("rack-board") is not None
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == -signal.SIGTERM
    finally:
        if run.poll() is None:
            run.kill()
    state = lab.wait_released("rack-board")
    assert state.reservations == []
