"""Devices in a lab that labgrid schedules: reserve and acquire the place, then reach it over SSH or adb.

labgrid's own client (its ClientSession, served by an event loop in a thread of its own) holds the
place for the session, and the SSH and adb transports do the work once the place's resource says
where the device is. Limits: no labgrid proxy (the address must be reachable from this host), no
power, console or boot control, and a lost coordinator is noticed between commands, not during one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import difflib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from harness.config import AdbDevice, LabgridDevice, SshDevice
from harness.errors import ConfigError, ConnectError, ConnectionLost, DeviceBusy, TransportError
from harness.transport.base import CommandResult, RunningCommand, Transport

T = TypeVar("T")

DEFAULT_PORT = 20408  # labgrid-coordinator's
RPC_TIMEOUT_S = 10.0
POLL_S = 1.0  # how often the reservation is polled while waiting (labgrid-client polls as often)
DEFAULT_WAIT_S = 600.0
INSTALL_HINT = "pip install 'edgelab[labgrid]'"

SSH_RESOURCES = ("NetworkService",)
# The ADB resources proposed for labgrid (labgrid-project/labgrid#1564; none in labgrid 26.0.1): an
# adb server on the exporter serving one USB phone, or adbd listening on TCP. An exporter passes
# classes it does not know through with their parameters, so a lab can export them by hand today.
ADB_SERVER_RESOURCES = ("RemoteUSBADBDevice", "NetworkUSBADBDevice")
ADB_TCP_RESOURCES = ("NetworkADBDevice",)
USABLE = (*SSH_RESOURCES, *ADB_SERVER_RESOURCES, *ADB_TCP_RESOURCES)


def _import_labgrid() -> Any:
    """labgrid's client module, or a ConfigError naming the extra that installs it."""
    try:
        from labgrid.remote import client
    except ImportError as exc:
        raise ConfigError(
            f"devices of kind labgrid need labgrid, which is not installed ({exc}): {INSTALL_HINT}"
        ) from None
    return client


@dataclass(frozen=True)
class PlaceInfo:
    """Which labgrid place a device was reached through, for the result's fingerprint."""

    coordinator: str
    place: str
    resource: str  # exporter/group/class/name
    address: str  # host:port over SSH, the adb serial over adb


@dataclass(frozen=True)
class Resource:
    """One resource a place matches, as the coordinator published it."""

    exporter: str
    group: str
    cls: str
    name: str  # the name in the place: the match's rename, else the resource's own
    params: dict[str, Any]
    avail: bool
    proxy_required: bool

    @property
    def path(self) -> str:
        return f"{self.exporter}/{self.group}/{self.cls}/{self.name}"


def choose_resource(
    device: str, place: str, resources: Sequence[Resource], wanted: str | None, coordinator: str
) -> Resource:
    """The one resource EdgeLab reaches the device through: a NetworkService or an ADB device,
    ``wanted`` by name when the place has several."""
    usable = [resource for resource in resources if resource.cls in USABLE]
    show = f"labgrid-client -x {coordinator} -p {place} show"
    if not usable:
        has = (
            f"it matches {', '.join(r.path for r in resources)}"
            if resources
            else f"it matches no exported resource: is its exporter running? ({show})"
        )
        raise ConnectError(
            device,
            f"labgrid place '{place}' has no resource EdgeLab can reach the device through ({has}); "
            f"export a NetworkService (SSH) or an ADB device ({', '.join(USABLE[1:])}) "
            "and add it to the place (labgrid-client -p PLACE add-match EXPORTER/GROUP/CLASS)",
        )
    if wanted is not None:
        named = [resource for resource in usable if resource.name == wanted]
        if not named:
            raise ConfigError(
                f"device '{device}': field 'resource': labgrid place '{place}' has no usable resource "
                f"named '{wanted}' (usable: {', '.join(r.name for r in usable)})"
            )
        usable = named
    if len(usable) > 1:
        raise ConfigError(
            f"device '{device}': labgrid place '{place}' has several resources EdgeLab could use "
            f"({', '.join(r.path for r in usable)}); set field 'resource' to the name of one"
        )
    (chosen,) = usable
    if chosen.proxy_required:
        raise ConnectError(
            device,
            f"labgrid place '{place}': {chosen.path} is reachable only through labgrid's proxy on its "
            "exporter (an isolated exporter, or a link-local address); EdgeLab connects directly: "
            "export an address this host can reach",
        )
    if not chosen.avail:
        raise ConnectError(
            device,
            f"labgrid place '{place}': {chosen.path} is exported but not available (its exporter "
            f"does not see the device: unplugged, or powered off); check it with {show}",
        )
    return chosen


def reach(config: LabgridDevice, resource: Resource) -> SshDevice | AdbDevice:
    """The SSH or adb device a resource points at, completed with the devices.yaml entry's fields."""
    params = resource.params
    try:
        if resource.cls in SSH_RESOURCES:
            user = config.user or params.get("username")
            if not user:
                raise ConnectError(
                    config.name,
                    f"{resource.path} names no username; set field 'user' of device '{config.name}'",
                )
            return config.over_ssh(str(params.get("address", "")), int(params.get("port", 22)), str(user))
        if resource.cls in ADB_SERVER_RESOURCES:
            return config.over_adb(
                str(params.get("serialno", "")), str(params["host"]), int(params["port"]), connect=False
            )
        serial = f"{params['host']}:{int(params['port'])}"
        return config.over_adb(serial, config.adb_host, config.adb_port, connect=True)
    except (ValidationError, KeyError, ValueError, TypeError) as exc:
        detail = f"missing parameter {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise ConnectError(
            config.name,
            f"{resource.path} has unusable parameters {resource.params} ({detail}); fix the exporter",
        ) from None


class _Guard:
    """A watcher process that releases the place if this process dies holding it (SIGTERM,
    SIGKILL, an xdist worker torn down): labgrid itself never releases a place on its own."""

    def __init__(self, address: str, place: str, owner: str, token: str) -> None:
        script = Path(__file__).with_name("labgrid_guard.py")
        self.process = subprocess.Popen(
            # -P: the script's folder must not shadow the labgrid package with this module
            [sys.executable, "-P", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a signal to pytest's process group does not reach it
        )
        assert self.process.stdin is not None
        line = json.dumps({"address": address, "place": place, "owner": owner, "token": token})
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def stand_down(self) -> None:
        """This process released the place itself: the watcher exits without touching it."""
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.write(b"released\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout=RPC_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _shared_loop() -> asyncio.AbstractEventLoop:
    """One event loop, in a thread of its own, for every labgrid session of this process: grpc's
    asyncio layer binds its completion queue to each loop it meets and breaks ("Internal error from
    Core") once one of them is closed, so the loop is never closed; it idles between sessions."""
    global _LOOP  # noqa: PLW0603 - one per process by design
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="edgelab-labgrid", daemon=True).start()
            _LOOP = loop
        return _LOOP


class _RpcFailed(Exception):
    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class Coordinator:
    """labgrid's ClientSession on the shared event loop thread, so its stream from the coordinator is
    read (and its loss noticed) while the test thread measures; every call waits at most a timeout."""

    def __init__(self, address: str, device: str) -> None:
        self.client = _import_labgrid()
        from labgrid.util.proxy import proxymanager

        self.address = address
        self.device = device
        try:
            self.grpc_address = str(proxymanager.get_grpc_address(address, default_port=DEFAULT_PORT))
        except Exception as exc:  # labgrid's ProxyError, or urllib's ValueError for a bad port
            raise ConfigError(
                f"device '{device}': field 'coordinator': {address!r} is not HOST[:PORT] ({exc})"
            ) from None
        self._loop = _shared_loop()
        self._session: Any = None
        try:
            self._session = self._call(self._start(), RPC_TIMEOUT_S)
        except (self.client.Error, concurrent.futures.TimeoutError) as exc:
            self.stop()
            raise ConnectError(
                device,
                f"labgrid coordinator {address} does not answer ({exc or 'timed out'}); start it "
                f"(labgrid-coordinator -l {address}) or fix field 'coordinator'",
            ) from None
        except BaseException:
            self.stop()
            raise

    async def _start(self) -> Any:
        session = self.client.ClientSession(self.grpc_address, self._loop)
        try:
            await session.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await session.close()
            raise
        return session

    def _call(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(timeout)
        except BaseException:  # a timeout, or KeyboardInterrupt in the waiting thread
            future.cancel()
            raise

    def rpc(self, name: str, request: Any) -> Any:
        import grpc

        async def call() -> Any:
            return await getattr(self._session.stub, name)(request, timeout=RPC_TIMEOUT_S)

        try:
            return self._call(call(), RPC_TIMEOUT_S + 5)
        except grpc.RpcError as exc:
            raise _RpcFailed(exc.code().name, exc.details()) from None
        except concurrent.futures.TimeoutError:
            raise _RpcFailed("DEADLINE_EXCEEDED", f"no answer in {RPC_TIMEOUT_S + 5:g} s") from None

    def sync(self) -> None:
        self._call(self._session.sync_with_coordinator(), RPC_TIMEOUT_S)

    @property
    def messages(self) -> Any:
        from labgrid.remote.generated import labgrid_coordinator_pb2

        return labgrid_coordinator_pb2

    @property
    def lost(self) -> bool:
        """The coordinator's stream ended: it stopped, restarted or became unreachable."""
        return self._session is None or self._session.stopping.is_set()

    @property
    def owner(self) -> str:
        """The name labgrid records as holder for this client: host/user."""
        return f"{self._session.gethostname()}/{self._session.getuser()}"

    def places(self) -> dict[str, dict[str, Any]]:
        """Every place as the coordinator published it (name -> labgrid's Place.asdict())."""

        async def read() -> dict[str, dict[str, Any]]:
            return {name: place.asdict() for name, place in self._session.places.items()}

        return self._call(read(), RPC_TIMEOUT_S)

    def resources(self, place: str, *, acquired: bool) -> list[Resource]:
        """The resources ``place`` matches now, or (``acquired``) those it holds."""

        async def read() -> list[Resource]:
            found = self._session.places[place]
            paths = (
                [tuple(path) for path in found.acquired_resources]
                if acquired
                else [
                    (exporter, group, entry.cls, name)
                    for exporter, groups in self._session.resources.items()
                    for group, entries in groups.items()
                    for name, entry in entries.items()
                    if "cls" in entry.data
                ]
            )
            listed = []
            for exporter, group, cls, name in paths:
                match = found.getmatch((exporter, group, cls, name))
                entry = self._session.resources.get(exporter, {}).get(group, {}).get(name)
                if match is None or entry is None:
                    continue
                listed.append(
                    Resource(
                        exporter,
                        group,
                        cls,
                        match.rename or name,
                        dict(entry.args),
                        bool(entry.avail),
                        bool(entry.extra.get("proxy_required")),
                    )
                )
            return listed

        return self._call(read(), RPC_TIMEOUT_S)

    def holder(self, place: str) -> str:
        """Who keeps ``place`` from this run: its acquirer, or the owner of the reservation it is
        allocated to."""
        found = self.places().get(place, {})
        who = found.get("acquired")
        if not who and found.get("reservation"):
            with contextlib.suppress(_RpcFailed):
                listed = self.rpc("GetReservations", self.messages.GetReservationsRequest()).reservations
                who = next((r.owner for r in listed if r.token == found["reservation"]), None)
                who = f"{who} (a reservation)" if who else None
        if not who:
            return "the reservations ahead in labgrid's queue"
        return f"{who} (your own user on this host)" if who == self.owner else str(who)

    def stop(self) -> None:
        """Close the stream and the channel; bounded even when the coordinator is gone."""
        session, self._session = self._session, None
        if session is not None:

            async def close() -> None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(session.stop(), RPC_TIMEOUT_S)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(session.close(), RPC_TIMEOUT_S)

            with contextlib.suppress(Exception):
                self._call(close(), 2 * RPC_TIMEOUT_S + 1)


@dataclass
class Holding:
    """A place acquired under a reservation, with the watcher that releases it if this process dies."""

    place: str
    token: str
    guard: _Guard


class LabgridTransport:
    """A labgrid place held for the session and reached through the SSH or adb transport its
    resource names; every call first checks that the coordinator is still there."""

    def __init__(
        self,
        config: LabgridDevice,
        *,
        wait_s: float | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._notify = notify or (lambda message: None)
        self._wait_s = DEFAULT_WAIT_S if wait_s is None else wait_s
        self._coordinator = Coordinator(config.coordinator, config.name)
        self._holding: Holding | None = None
        self._lost: str | None = None
        try:
            place = self._find_place(config.place)
            self._check_resources(place, acquired=False)  # before waiting for a place that cannot work
            self._holding = self._hold(place)
            resource = self._check_resources(place, acquired=True)
            self.reached = reach(config, resource)
            self.inner: Transport = self._open(self.reached)
        except BaseException:
            self._release()
            raise
        address = (
            f"{self.reached.host}:{self.reached.port}"
            if isinstance(self.reached, SshDevice)
            else self.reached.serial
        )
        self.place = PlaceInfo(config.coordinator, place, resource.path, address)
        self.integrity_in_transit = self.inner.integrity_in_transit

    @property
    def device(self) -> str:
        return self.config.name

    @property
    def acquired_as(self) -> str:
        """The holder labgrid shows for this run's place (``labgrid-client who``): host/user."""
        return self._coordinator.owner

    # -- holding the place ------------------------------------------------------------------------

    def _find_place(self, wanted: str) -> str:
        places = self._coordinator.places()
        if wanted in places:
            return wanted
        aliased = [name for name, place in places.items() if wanted in place.get("aliases", ())]
        if len(aliased) == 1:
            return aliased[0]
        close = difflib.get_close_matches(wanted, list(places), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"device '{self.device}': labgrid place '{wanted}' is not known to the coordinator at "
            f"{self.config.coordinator} (its places: {', '.join(sorted(places)) or 'none'}).{hint} Fix field "
            f"'place', or create it: labgrid-client -x {self.config.coordinator} -p {wanted} create"
        )

    def _check_resources(self, place: str, *, acquired: bool) -> Resource:
        resources = self._coordinator.resources(place, acquired=acquired)
        return choose_resource(self.device, place, resources, self.config.resource, self.config.coordinator)

    def _hold(self, place: str) -> Holding:
        """Reserve ``place`` (labgrid's queue: by priority, then age), wait for the allocation, then
        acquire it under the reservation."""
        messages = self._coordinator.messages
        where = f"labgrid place '{place}' (coordinator {self.config.coordinator})"
        request = messages.CreateReservationRequest(
            filters={"main": messages.Reservation.Filter(filter={"name": place})}, prio=0.0
        )
        try:
            token = str(self._coordinator.rpc("CreateReservation", request).reservation.token)
        except _RpcFailed as exc:
            raise ConnectError(self.device, f"{where}: the reservation was refused: {exc}") from None
        try:
            self._wait_for(place, token, where)
        except BaseException as failure:
            with contextlib.suppress(_RpcFailed):
                self._coordinator.rpc("CancelReservation", messages.CancelReservationRequest(token=token))
            if isinstance(failure, _RpcFailed):
                raise self._rpc_error(where, "waiting for it", failure) from None
            raise
        # The watcher first: from the moment the request leaves, the place may be ours.
        holding = Holding(
            place, token, _Guard(self._coordinator.grpc_address, place, self._coordinator.owner, token)
        )
        try:
            self._coordinator.rpc("AcquirePlace", messages.AcquirePlaceRequest(placename=place))
            self._coordinator.sync()
        except BaseException as failure:
            self._let_go(holding)
            if isinstance(failure, _RpcFailed):
                raise self._rpc_error(where, "acquiring it", failure) from None
            raise
        return holding

    def _wait_for(self, place: str, token: str, where: str) -> None:
        from labgrid.remote.common import ReservationState

        messages = self._coordinator.messages
        deadline = time.monotonic() + self._wait_s
        told = False
        while True:
            answer = self._coordinator.rpc("PollReservation", messages.PollReservationRequest(token=token))
            state = ReservationState(answer.reservation.state).name
            if state in ("allocated", "acquired"):
                return
            if state != "waiting":
                raise ConnectError(self.device, f"{where}: the reservation {token} became {state}; run again")
            holder = self._coordinator.holder(place)
            if time.monotonic() >= deadline:
                raise DeviceBusy(
                    f"device '{self.device}': {where} is still held by {holder} after {self._wait_s:g} s "
                    f"in labgrid's reservation queue; ask them to release it (labgrid-client -x "
                    f"{self.config.coordinator} -p {place} release), or raise --lease-timeout"
                )
            if not told:
                self._notify(
                    f"edgelab: device '{self.device}': {where} is held by {holder}; waiting up to "
                    f"{self._wait_s:g} s in labgrid's reservation queue"
                )
                told = True
            time.sleep(POLL_S)

    def _rpc_error(self, where: str, doing: str, failure: _RpcFailed) -> TransportError:
        if failure.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED") or self._coordinator.lost:
            return ConnectError(
                self.device, f"{where}: the coordinator went away while {doing} ({failure.details})"
            )
        return ConnectError(self.device, f"{where}: {doing} failed: {failure.details}")

    def _release(self) -> str:
        """Release the place and cancel its reservation; say how that went (the coordinator may be
        gone). Safe to call twice."""
        holding, self._holding = self._holding, None
        outcome = self._let_go(holding) if holding is not None else "not held"
        self._coordinator.stop()
        return outcome

    def _let_go(self, holding: Holding) -> str:
        """Release the place if the coordinator still has it acquired for this run (by this owner,
        under this reservation: after a restart it may be someone else's), cancel the reservation,
        and dismiss the watcher."""
        coordinator, messages = self._coordinator, self._coordinator.messages
        try:
            found = next(
                (
                    p
                    for p in coordinator.rpc("GetPlaces", messages.GetPlacesRequest()).places
                    if p.name == holding.place
                ),
                None,
            )
            ours = (
                found is not None
                and found.acquired == coordinator.owner
                and found.reservation == holding.token
            )
            # The reservation first: a place released while it stands is allocated to it again.
            with contextlib.suppress(_RpcFailed):
                coordinator.rpc("CancelReservation", messages.CancelReservationRequest(token=holding.token))
            if ours:
                request = messages.ReleasePlaceRequest(placename=holding.place, fromuser=coordinator.owner)
                coordinator.rpc("ReleasePlace", request)
            outcome = (
                "released" if ours else "not released: the coordinator no longer has it acquired for this run"
            )
        except _RpcFailed as exc:
            outcome = f"release attempted, and failed: {exc.details}"
        holding.guard.stand_down()
        return outcome

    def _check(self) -> None:
        """A lost coordinator no longer holds the place for this run (a restarted one forgets
        who acquired what): stop using the device rather than share it unknowingly."""
        if self._lost is None and self._coordinator.lost and self._holding is not None:
            outcome = self._release()
            self._lost = (
                f"the labgrid coordinator {self.config.coordinator} went away during the session, so "
                f"place '{self.place.place}' is no longer held for this run ({outcome}); nothing more is "
                "measured on it: check the coordinator and run again"
            )
        if self._lost is not None:
            raise ConnectionLost(self.device, self._lost)

    # -- the device ---------------------------------------------------------------------------------

    def _open(self, device: SshDevice | AdbDevice) -> Transport:
        where = f"labgrid place '{self.config.place}'"
        try:
            if isinstance(device, SshDevice):
                from harness.transport.ssh import SshTransport

                return SshTransport(device)
            from harness.transport.adb import AdbTransport

            return AdbTransport(device)
        except ConnectError as exc:
            prefix = f"device '{self.device}': "
            detail = str(exc).removeprefix(prefix)
            raise type(exc)(self.device, f"{detail} (the address {where} gives)") from None

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        check: bool = False,
        stdin: bytes | None = None,
        cwd: str | None = None,
        stdin_file: Path | None = None,
        stdin_progress: Callable[[int], None] | None = None,
    ) -> CommandResult:
        self._check()
        return self.inner.run(
            argv,
            timeout=timeout,
            check=check,
            stdin=stdin,
            cwd=cwd,
            stdin_file=stdin_file,
            stdin_progress=stdin_progress,
        )

    def push(self, local: Path, remote: str) -> int:
        self._check()
        return self.inner.push(local, remote)

    def pull(self, remote: str, local: Path) -> int:
        self._check()
        return self.inner.pull(remote, local)

    def spawn(self, argv: Sequence[str], *, cwd: str | None = None) -> RunningCommand:
        self._check()
        return self.inner.spawn(argv, cwd=cwd)

    def close(self) -> None:
        inner = getattr(self, "inner", None)
        if inner is not None:
            with contextlib.suppress(Exception):
                inner.close()
        self._release()
