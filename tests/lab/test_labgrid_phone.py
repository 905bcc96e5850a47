"""The virtual phone as a labgrid place: a real labgrid-exporter exports its adbd on TCP
(NetworkADBDevice) and the lab's adb server serving it (RemoteUSBADBDevice, as an exporter serves a
USB phone), and EdgeLab reaches and measures it through the place."""

from __future__ import annotations

import pytest

from harness.config import Fleet, LabgridDevice, parse_device
from harness.measurement import LatencyProtocol
from harness.models.variants import variants_for
from harness.session import Lab, RunOptions
from harness.transport import device_workdir, labgrid_place, open_transport
from tests.fixtures.labgrid import snapshot, start_labgrid

PROTOCOL = LatencyProtocol(warmup_iters=1, warmup_s=0.0, min_iters=10, min_s=0.0, max_s=20.0, idle_s=0.0)


@pytest.fixture(scope="module")
def phone_places(lab, tmp_path_factory):
    state = lab.state()
    phone = next(device for device in state.devices if device.kind == "adb" and "stock" not in device.profile)
    coordinator = start_labgrid(
        tmp_path_factory.mktemp("labgrid"),
        {
            "phone-tcp": ["exp1/phone-tcp/NetworkADBDevice"],
            "phone-usb": ["exp1/phone-usb/RemoteUSBADBDevice"],
        },
    )
    try:
        coordinator.export(
            "exp1",
            {
                "phone-tcp": {"NetworkADBDevice": {"host": "127.0.0.1", "port": phone.port}},
                "phone-usb": {
                    "RemoteUSBADBDevice": {
                        "host": "127.0.0.1",
                        "port": state.adb_port,
                        "serialno": phone.serial,
                    }
                },
            },
        )
        yield coordinator, state, phone
    finally:
        coordinator.stop()


def place_device(coordinator, state, place: str) -> LabgridDevice:
    config = parse_device(
        "rack-phone",
        {
            "kind": "labgrid",
            "coordinator": coordinator.address,
            "place": place,
            "adb_port": state.adb_port,  # the adb server that `adb connect`s to a NetworkADBDevice
            "python": state.python,
        },
    )
    assert isinstance(config, LabgridDevice)
    return config


@pytest.mark.parametrize(
    ("place", "resource"),
    [("phone-tcp", "NetworkADBDevice"), ("phone-usb", "RemoteUSBADBDevice")],
)
def test_each_adb_resource_reaches_the_phone(phone_places, place, resource):
    coordinator, state, phone = phone_places
    config = place_device(coordinator, state, place)
    transport = open_transport(config)
    try:
        assert transport.run(["getprop", "ro.product.model"], timeout=30).stdout == "Pixel 8\n"
        assert transport.integrity_in_transit is False  # adb, as the transport it delegates to
        assert device_workdir(config, transport) == "/data/local/tmp/edgelab"
        reached = labgrid_place(transport)
        assert reached is not None
        assert reached.resource == f"exp1/{place}/{resource}/{resource}"
        assert reached.address == phone.serial
    finally:
        transport.close()
    assert snapshot(coordinator.address).places[place]["acquired"] is None


def test_a_model_is_measured_on_the_phone_through_its_place(phone_places, tmp_path):
    coordinator, state, _ = phone_places
    config = place_device(coordinator, state, "phone-tcp")
    session = Lab(Fleet([config], "test"), RunOptions(reports_dir=tmp_path, devices=("rack-phone",)))
    try:
        measured = session.benchmark("rack-phone", variants_for("silero_vad")[0], PROTOCOL)
        assert measured.result.latency_ms.samples >= 10 and measured.result.latency_ms.median > 0
        fingerprint = session.device("rack-phone").fingerprint()
        assert fingerprint.kind == "labgrid" and fingerprint.android is not None
        assert fingerprint.labgrid is not None and fingerprint.labgrid.place == "phone-tcp"
        assert session.device("rack-phone").workdir == "/data/local/tmp/edgelab"
    finally:
        session.close()
    assert snapshot(coordinator.address).places["phone-tcp"]["acquired"] is None
