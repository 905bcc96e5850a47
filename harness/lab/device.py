"""One virtual device as one process: its cgroup, its server (adbd or sshd) and its sensor loop.

``python -m harness.lab.device --name virtual-pixel8 --profile pixel8 --state DIR --ready FILE``;
SIGTERM stops the server, kills the device's processes and removes its cgroup.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from harness.lab import network
from harness.lab.adbd import VirtualAdbDevice
from harness.lab.profiles import DeviceProfile, get_profile
from harness.lab.relay import DelayRelay
from harness.lab.sandbox import DeviceRoot
from harness.lab.sensors import DeviceCgroup, SensorModel
from harness.lab.services import DeviceServices

LOG = logging.getLogger("edgelab.lab.device")
SENSOR_PERIOD_S = 0.1
BOARD_WRITABLE = {"/home": "home", "/tmp": "tmp", "/var/tmp": "vartmp", "/opt": "opt"}

VCGENCMD = """#!/usr/bin/awk -f
# vcgencmd of the virtual Raspberry Pi: the firmware's view of the sensor model. One process per
# call, as the real tool is (no shell in front): the agent reads the flags before and after a run.
function fields(path, into,    line, parts) {
  while ((getline line < path) > 0) {
    split(line, parts, "=")
    into[parts[1]] = parts[2]
  }
  close(path)
}
function first_line(path,    line) {
  getline line < path
  close(path)
  return line
}
BEGIN {
  if (ARGV[1] == "get_throttled") {
    # 0xA: frequency capped + soft temperature limit now; 0xA0000: both have occurred
    fields("/sys/edgelab/state", state)
    flags = 0
    if (state["throttled"] == 1) flags += 10
    if (state["throttle_events"] + 0 != 0) flags += 655360
    printf "throttled=0x%x\\n", flags
  } else if (ARGV[1] == "measure_temp") {
    printf "temp=%.1f%cC\\n", first_line("/sys/class/thermal/thermal_zone0/temp") / 1000, 39
  } else if (ARGV[1] == "measure_clock") {
    khz = first_line("/sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq")
    printf "frequency(48)=%.0f\\n", khz * 1000
  } else {
    print "Command not registered" > "/dev/stderr"
    exit 1
  }
  exit 0
}
"""


def board_root(state_dir: Path) -> DeviceRoot:
    return DeviceRoot(state_dir, writable=BOARD_WRITABLE)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sshd_config(state: Path, root: DeviceRoot, address: str, port: int, authorized_keys: Path) -> Path:
    ssh = state / "ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    host_key = ssh / "host_ed25519"
    if not host_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    lines = [
        f"ListenAddress {address}",
        f"Port {port}",
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized_keys}",
        f"PidFile {ssh / 'sshd.pid'}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "StrictModes no",
        "UsePAM no",
        "UseDNS no",
        "Subsystem sftp internal-sftp",
        "LogLevel ERROR",
    ]
    if root.isolated:
        lines.append(f"ChrootDirectory {root.rootfs}")
    config = ssh / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    return config


class Supervisor:
    def __init__(self, arguments: argparse.Namespace) -> None:
        profile = get_profile(arguments.profile)
        if arguments.tau_s:
            profile = dataclasses.replace(
                profile, thermal=dataclasses.replace(profile.thermal, tau_s=arguments.tau_s)
            )
        self.profile: DeviceProfile = profile
        self.name: str = arguments.name
        self.state = Path(arguments.state)
        self.ready_file = Path(arguments.ready)
        self.arguments = arguments
        self.cgroup = DeviceCgroup(arguments.cgroup or self.name) if DeviceCgroup.available() else None
        self.sshd: subprocess.Popen[bytes] | None = None
        self.relay: DelayRelay | None = None

    async def reachable_at(self, host: str, port: int) -> tuple[str, int]:
        """Where clients connect: the server itself, or with ``--link-delay-ms`` a relay on
        127.0.0.1 that holds every byte that long each way."""
        if not self.arguments.link_delay_ms:
            return host, port
        self.relay = DelayRelay(host, port, self.arguments.link_delay_ms / 1e3)
        return "127.0.0.1", await self.relay.start()

    async def run(self) -> None:
        if self.cgroup is not None:
            self.cgroup.create(self.profile.cpu_quota)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            if self.profile.kind == "android":
                await self.run_android(stop)
            else:
                await self.run_board(stop)
        finally:
            if self.relay is not None:
                await self.relay.stop()
            if self.sshd is not None and self.sshd.poll() is None:
                self.sshd.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.sshd.wait(10)
            if self.cgroup is not None:
                self.cgroup.destroy()

    async def sensor_loop(self, model: SensorModel, stop: asyncio.Event) -> None:
        while not stop.is_set():
            model.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SENSOR_PERIOD_S)

    def announce(self, details: dict[str, object]) -> None:
        document = {"name": self.name, "profile": self.profile.name, "pid": os.getpid(), **details}
        temporary = self.ready_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(document))
        os.replace(temporary, self.ready_file)

    async def run_android(self, stop: asyncio.Event) -> None:
        device = VirtualAdbDevice(
            self.profile, self.state, preexec=self.cgroup.enter if self.cgroup else None
        )
        _, port = await self.reachable_at("127.0.0.1", await device.start(self.arguments.port))
        model = SensorModel(self.profile, self.state / "sys", self.state / "sys/edgelab/dumpsys", self.cgroup)
        services = None
        if self.profile.stock:  # its perfetto and stand-in tools call the lab: no Python there
            services = DeviceServices(self.profile, device.root, self.cgroup, self.state / "sys")
            await services.start()
        self.announce(
            {"kind": "adb", "port": port, "isolated": device.root.isolated, "cgroup": bool(self.cgroup)}
        )
        try:
            await self.sensor_loop(model, stop)
        finally:
            if services is not None:
                await services.stop()
            await device.stop()

    async def run_board(self, stop: asyncio.Event) -> None:
        root = board_root(self.state)
        root.prepare()
        (self.state / "home").mkdir(exist_ok=True)
        if self.profile.name == "rpi5":  # Raspberry Pi OS keeps the legacy /opt/vc/bin path too
            tool = self.state / "opt" / "vc" / "bin" / "vcgencmd"
            tool.parent.mkdir(parents=True, exist_ok=True)
            tool.write_text(VCGENCMD)
            tool.chmod(0o755)
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not Path(sshd).exists():
            raise SystemExit(
                f"{self.name}: no sshd at {sshd}; install openssh-server (apt-get install -y openssh-server)"
            )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        link = network.BoardLink(self.arguments.board_index) if root.isolated else None
        if link is not None:
            network.create(link)
            address, port = link.board_address, 22
        else:
            address, port = "127.0.0.1", free_port()
        config = sshd_config(self.state, root, address, port, Path(self.arguments.authorized_keys))
        command = [sshd, "-D", "-e", "-f", str(config)]
        if link is not None:
            command = ["nsenter", f"--mount={root.nsfile}", f"--net={link.namespace_file}", "--", *command]
        log = (self.state / "ssh" / "sshd.log").open("ab")
        self.sshd = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self.cgroup.enter if self.cgroup else None,  # noqa: PLW1509 (no threads here)
        )
        model = SensorModel(self.profile, self.state / "sys", None, self.cgroup)
        host_key = (self.state / "ssh" / "host_ed25519.pub").read_text().split()
        host, reachable_port = await self.reachable_at(address, port)
        self.announce(
            {
                "kind": "ssh",
                "host": host,
                "port": reachable_port,
                "host_key": f"{host_key[0]} {host_key[1]}",
                "isolated": root.isolated,
                "cgroup": bool(self.cgroup),
                "namespace": link.namespace if link else None,
            }
        )
        try:
            await self.sensor_loop(model, stop)
        finally:
            if link is not None:
                self.sshd.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.sshd.wait(10)
                network.destroy(link)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.lab.device", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--ready", required=True, help="JSON written here once the device serves")
    parser.add_argument("--port", type=int, default=0, help="adbd port on 127.0.0.1 (0: any)")
    parser.add_argument("--board-index", type=int, default=1, help="selects the board's 10.213.N.0/30")
    parser.add_argument("--authorized-keys", default="", help="public keys allowed to log in (boards)")
    parser.add_argument("--cgroup", default="", help="cgroup path under edgelab/ (default: the name)")
    parser.add_argument("--tau-s", type=float, default=None, help="override the thermal time constant")
    parser.add_argument(
        "--link-delay-ms", type=float, default=0.0, help="delay added to every byte, each way (0: none)"
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(Supervisor(arguments).run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
