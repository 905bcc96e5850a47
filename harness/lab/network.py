"""A board's own network: a namespace joined to the host by a veth pair, shaped with tc tbf.

Addresses are 10.213.N.1 (host side) and 10.213.N.2 (board side) on a /30 that exists only
between this host and the namespace the lab made. This kernel has no netem: no delay emulation.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from harness.lab.sandbox import SandboxError


@dataclass(frozen=True)
class BoardLink:
    index: int
    rate_mbit: int = 1000

    @property
    def namespace(self) -> str:
        return f"edgelab-board{self.index}"

    @property
    def host_interface(self) -> str:
        return f"elh{self.index}"

    @property
    def board_interface(self) -> str:
        return f"eld{self.index}"

    @property
    def host_address(self) -> str:
        return f"10.213.{self.index}.1"

    @property
    def board_address(self) -> str:
        return f"10.213.{self.index}.2"

    @property
    def namespace_file(self) -> str:
        return f"/var/run/netns/{self.namespace}"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and completed.returncode != 0:
        raise SandboxError(f"ip {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed


def create(link: BoardLink) -> None:
    destroy(link)
    _ip("netns", "add", link.namespace)
    _ip("link", "add", link.host_interface, "type", "veth", "peer", "name", link.board_interface)
    _ip("link", "set", link.board_interface, "netns", link.namespace)
    _ip("addr", "add", f"{link.host_address}/30", "dev", link.host_interface)
    _ip("link", "set", link.host_interface, "up")
    inside = ("netns", "exec", link.namespace, "ip")
    _ip(*inside, "addr", "add", f"{link.board_address}/30", "dev", link.board_interface)
    _ip(*inside, "link", "set", link.board_interface, "up")
    _ip(*inside, "link", "set", "lo", "up")
    shape = ["qdisc", "replace", "dev"]
    rate = ["root", "tbf", "rate", f"{link.rate_mbit}mbit", "burst", "1mb", "latency", "50ms"]
    host_side = ["tc", *shape, link.host_interface, *rate]
    board_side = ["ip", "netns", "exec", link.namespace, "tc", *shape, link.board_interface, *rate]
    for command in (host_side, board_side):
        completed = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if completed.returncode != 0:
            raise SandboxError(f"{' '.join(command)} failed: {completed.stderr.strip()}")


def destroy(link: BoardLink) -> None:
    """Deleting the namespace deletes the board end of the pair, and with it the host end."""
    _ip("netns", "del", link.namespace, check=False)
    _ip("link", "del", link.host_interface, check=False)


def exists(link: BoardLink) -> bool:
    listed = _ip("netns", "list", check=False).stdout.split()
    interfaces = _ip("link", "show", link.host_interface, check=False).returncode == 0
    return link.namespace in listed or interfaces


def existing_indexes() -> list[int]:
    """Board indexes whose namespace or host link exists already (another lab's, or a leak)."""
    names = _ip("netns", "list", check=False).stdout.split()
    links = _ip("-o", "link", "show", check=False).stdout
    indexes = {
        int(n[len("edgelab-board") :]) for n in names if n.startswith("edgelab-board") and n[13:].isdigit()
    }
    for line in links.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            interface = parts[1].strip().split("@")[0]
            if interface.startswith("elh") and interface[3:].isdigit():
                indexes.add(int(interface[3:]))
    return sorted(indexes)
