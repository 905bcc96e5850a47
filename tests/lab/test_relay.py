"""Link delay: the relay in front of a virtual device's server (harness.lab.relay), on real TCP
sockets, and a lab started with ``link_delay_ms`` reached over real ADB and SSH through it.

Only lower bounds on time: a delay can make a round trip no shorter than twice itself, whatever
the host's load; how much longer it is depends on the host, so nothing bounds it from above."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time

import pytest

from harness.lab.manager import LabError, VirtualLab
from harness.lab.relay import DelayRelay
from harness.transport import open_transport
from tests.lab.conftest import lab_root

DELAY_S = 0.04


async def echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.close()  # after the client's EOF: the client then sees ours

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def round_trips(port: int, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    for index in range(count):
        message = f"ping {index}\n".encode()
        started = time.perf_counter()
        writer.write(message)
        assert await reader.readexactly(len(message)) == message
        times.append(time.perf_counter() - started)
    writer.close()
    return times


def test_every_round_trip_gains_twice_the_delay_and_direct_ones_do_not():
    async def scenario() -> tuple[list[float], list[float]]:
        server, port = await echo_server()
        relay = DelayRelay("127.0.0.1", port, DELAY_S)
        relay_port = await relay.start()
        try:
            return await round_trips(relay_port, 5), await round_trips(port, 5)
        finally:
            await relay.stop()
            server.close()

    delayed, direct = asyncio.run(scenario())
    assert min(delayed) >= 2 * DELAY_S
    assert min(delayed) > 10 * min(direct)  # the relay, not the host, makes the difference


def test_a_bulk_transfer_arrives_intact_in_order_and_the_end_of_stream_follows_it():
    payload = os.urandom(8 << 20)

    async def scenario() -> bytes:
        server, port = await echo_server()
        relay = DelayRelay("127.0.0.1", port, 0.005)
        relay_port = await relay.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)

            async def send() -> None:
                for start in range(0, len(payload), 100_000):  # odd sizes: chunks never line up
                    writer.write(payload[start : start + 100_000])
                    await writer.drain()
                writer.write_eof()

            sending = asyncio.ensure_future(send())
            echoed = await reader.read()  # to EOF: the server closed after our EOF reached it
            await sending
            writer.close()
            return echoed
        finally:
            await relay.stop()
            server.close()

    echoed = asyncio.run(scenario())
    assert len(echoed) == len(payload)
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_a_server_that_is_gone_closes_the_client_and_the_relay_serves_on():
    async def scenario() -> tuple[bytes, list[float]]:
        server, port = await echo_server()
        server.close()
        await server.wait_closed()  # nothing listens on port now
        relay = DelayRelay("127.0.0.1", port, 0.001)
        relay_port = await relay.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
            closed = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            again, again_port = await echo_server()
            relay.target = ("127.0.0.1", again_port)  # the device's server came back elsewhere
            times = await round_trips(relay_port, 2)
            again.close()
            return closed, times
        finally:
            await relay.stop()

    closed, times = asyncio.run(scenario())
    assert closed == b"" and len(times) == 2


def test_a_negative_delay_is_refused_with_the_value():
    with pytest.raises(ValueError, match="link delay must be >= 0 s, got -0.5"):
        DelayRelay("127.0.0.1", 1, -0.5)


def test_lab_up_refuses_a_delay_out_of_range_before_starting_anything(tmp_path):
    lab = VirtualLab(tmp_path / "lab")
    with pytest.raises(LabError, match="--link-delay-ms -3 is outside 0-10000"):
        lab.up(["pixel8"], link_delay_ms=-3)
    assert not (tmp_path / "lab").exists()


def test_a_lab_with_link_delay_is_that_much_further_away_over_adb_and_ssh(lab_fleet):
    if os.geteuid() != 0:
        pytest.skip("the virtual lab tests need root (namespaces, cgroups, veth links)")
    delay_ms = 25.0
    root = lab_root("delayed")
    delayed = VirtualLab(root)
    try:
        state = delayed.up(["pixel8", "rpi5"], tau_s=2.0, link_delay_ms=delay_ms)
        assert {d.link_delay_ms for d in state.devices} == {delay_ms}
        assert all(d.host == "127.0.0.1" for d in state.devices)  # the relay, in front of the netns
        assert all("(+25 ms each way)" in row.address for row in delayed.status())
        fleet = delayed.fleet()
        for name in ("virtual-pixel8", "virtual-rpi5"):
            far, near = open_transport(fleet[name]), open_transport(lab_fleet[name])
            try:
                timings: dict[str, list[float]] = {"far": [], "near": []}
                for _ in range(3):  # alternating, in one run
                    for key, transport in (("far", far), ("near", near)):
                        started = time.perf_counter()
                        result = transport.run(["echo", "here"], timeout=30)
                        timings[key].append(time.perf_counter() - started)
                        assert (result.exit_code, result.stdout) == (0, "here\n")
                assert min(timings["far"]) >= 2 * delay_ms / 1e3, (name, timings)
                assert min(timings["far"]) > min(timings["near"]), (name, timings)
            finally:
                far.close()
                near.close()
    finally:
        delayed.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)
