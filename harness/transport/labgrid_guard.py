"""Releases a labgrid place when the EdgeLab process that acquired it dies without releasing it.

labgrid keeps a place acquired after its client is gone (that is how `labgrid-client acquire`
works), so a pytest killed by SIGTERM or SIGKILL would block the place for everyone. This watcher
runs in its own session (a Ctrl-C or a signal to pytest's process group does not reach it), reads
what it guards as one JSON line on stdin, then waits for stdin to close: ``released`` first means
EdgeLab released the place itself; anything else means its parent died, and the watcher releases
the place (only if it is still acquired by the same owner under the same reservation) and cancels
the reservation. It imports nothing of the harness and runs as a script (``python -P``), so it
starts in the time it takes to import grpc and labgrid's generated stubs.
"""

from __future__ import annotations

import json
import sys

RPC_TIMEOUT_S = 10.0


def release_if_ours(address: str, place: str, owner: str, token: str) -> str:
    """Release ``place`` when it is still acquired by ``owner`` under reservation ``token``; the
    check keeps a restarted coordinator's new holder (who has the place by then) untouched."""
    import grpc
    from labgrid.remote.generated import labgrid_coordinator_pb2 as messages
    from labgrid.remote.generated import labgrid_coordinator_pb2_grpc as stubs

    with grpc.insecure_channel(address) as channel:
        stub = stubs.CoordinatorStub(channel)
        try:
            places = stub.GetPlaces(messages.GetPlacesRequest(), timeout=RPC_TIMEOUT_S).places
            found = next((entry for entry in places if entry.name == place), None)
            if found is None or found.acquired != owner or found.reservation != token:
                outcome = "not released: no longer held by this run"
            else:
                request = messages.ReleasePlaceRequest(placename=place, fromuser=owner)
                stub.ReleasePlace(request, timeout=RPC_TIMEOUT_S)
                outcome = "released"
            stub.CancelReservation(messages.CancelReservationRequest(token=token), timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            outcome = f"coordinator error: {exc.code().name}: {exc.details()}"
    return outcome


def main() -> int:
    guarded = json.loads(sys.stdin.buffer.readline())
    rest = sys.stdin.buffer.read()  # returns at EOF: EdgeLab closed the pipe, or died
    if rest.startswith(b"released"):
        return 0
    outcome = release_if_ours(guarded["address"], guarded["place"], guarded["owner"], guarded["token"])
    print(f"edgelab labgrid guard: place {guarded['place']!r}: {outcome}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
