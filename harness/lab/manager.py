"""Bring the virtual lab up and down: one adb server, one supervisor process per device.

``up`` starts the lab's own adb server (adbutils' adb binary, on a free port) and a
``harness.lab.device`` supervisor per profile, connects the phones, and writes the lab's
``devices.yaml`` (merged into every fleet while it exists) and ``lab.json`` (what to stop).
``down`` stops every process and removes every namespace, veth link, cgroup and mount the
lab made, then checks that nothing is left; it works from ``lab.json`` alone, so it also
cleans up after a crashed ``up`` or a killed supervisor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config import Fleet, load_fleet
from harness.errors import EdgeLabError
from harness.lab import lab_dir, network
from harness.lab.adbd import android_root
from harness.lab.device import board_root, free_port
from harness.lab.profiles import get_profile
from harness.lab.sandbox import DeviceRoot, mounts_under
from harness.lab.sensors import DeviceCgroup
from harness.lab.stock import write_standin_tools

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
ANDROID_WORKDIR = "/data/local/tmp/edgelab"
BOARD_WORKDIR = "/home/edgelab"


class LabError(EdgeLabError):
    """The virtual lab could not start, answer, or stop cleanly."""


@dataclass
class LabDevice:
    name: str
    profile: str
    kind: str  # "adb" or "ssh"
    state_dir: str
    cgroup: str
    board_index: int = 0
    pid: int = 0
    port: int = 0
    host: str = "127.0.0.1"
    host_key: str = ""
    isolated: bool = False
    metered: bool = False  # inside a cgroup: CPU time metered and capped
    namespace: str | None = None
    link_delay_ms: float = 0.0  # held each way by the supervisor's relay (no netem here)
    tau_s: float | None = None  # the thermal time constant it was started with (None: the profile's)

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class LabState:
    root: str
    adb_port: int = 0
    adb_pid: int = 0
    python: str = sys.executable
    started_at: float = field(default_factory=time.time)
    devices: list[LabDevice] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> LabState:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            devices = [LabDevice(**entry) for entry in raw.pop("devices", [])]
            return cls(**raw, devices=devices)
        except (OSError, ValueError, TypeError) as exc:
            raise LabError(
                f"{path}: unreadable lab state ({exc}); remove it after checking nothing runs"
            ) from None

    def save(self, path: Path) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(temporary, path)


@dataclass(frozen=True)
class DeviceStatus:
    name: str
    profile: str
    kind: str
    address: str
    alive: bool
    connection: str  # adb state or "listening" / "down"
    temp_c: float | None
    throttled: bool | None
    cpu_quota: float | None


def adb_binary() -> Path:
    import adbutils

    binary = Path(adbutils.__file__).parent / "binaries" / "adb"
    if not binary.exists():
        raise LabError(
            f"adbutils ships no adb binary at {binary}; reinstall adbutils (pip install -U adbutils)"
        )
    return binary


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie child of ours is not alive
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def _stop(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.05)


def _wait_port(port: int, timeout_s: float, what: str, pid: int, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if not _alive(pid):
            raise LabError(f"{what} exited while starting; its log {log} says:\n{_tail(log)}")
        time.sleep(0.05)
    raise LabError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s; see {log}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _check_chroot_path(path: Path) -> None:
    """sshd's ChrootDirectory wants every component root-owned and not group/world-writable."""
    current = path.resolve()
    for folder in [current, *current.parents]:
        if not folder.exists():
            continue
        info = folder.stat()
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise LabError(
                f"lab folder {path}: {folder} is not root-owned or is group/world-writable, which sshd "
                f"refuses for a board's chroot; set EDGELAB_LAB_DIR to a folder outside it "
                f"(e.g. /var/lib/edgelab/lab)"
            )


class VirtualLab:
    """The lab under one folder (default ``~/.cache/edgelab/lab``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or lab_dir()).expanduser().absolute()
        self.state_file = self.root / "lab.json"
        self.devices_file = self.root / "devices.yaml"
        self.keys = self.root / "keys"
        self.client_key = self.keys / "client_ed25519"
        self.known_hosts = self.keys / "known_hosts"
        self.lab_id = "lab" + hashlib.sha256(str(self.root).encode()).hexdigest()[:8]

    # -- state ---------------------------------------------------------------------------------

    def state(self) -> LabState | None:
        return LabState.load(self.state_file) if self.state_file.exists() else None

    def is_up(self) -> bool:
        state = self.state()
        return state is not None and any(_alive(device.pid) for device in state.devices)

    # -- up ------------------------------------------------------------------------------------

    def up(self, profiles: list[str], *, tau_s: float | None = None, link_delay_ms: float = 0.0) -> LabState:
        """Start one device per profile. ``link_delay_ms`` is added to every byte each way on every
        device's link (a round trip gains twice that), as a Wi-Fi or remote lab would."""
        if not profiles:
            raise LabError("lab up: give at least one --profile (e.g. pixel8, rpi5, jetson-orin-nano)")
        resolved = [get_profile(name) for name in profiles]  # unknown profiles fail here
        if not 0 <= link_delay_ms <= 10_000:
            raise LabError(
                f"lab up: --link-delay-ms {link_delay_ms:g} is outside 0-10000; give a one-way delay in ms"
            )
        if self.state() is not None:
            if self.is_up():
                raise LabError(f"a lab is already up in {self.root}; run `edgelab lab down` first")
            self.down()  # the leftovers of a lab that died: clean them before starting again
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _check_chroot_path(self.root)
        self._ensure_client_key()
        state = LabState(root=str(self.root))
        state.save(self.state_file)
        try:
            if any(profile.kind == "android" for profile in resolved):
                self._start_adb_server(state)
            counts: Counter[str] = Counter()
            used_indexes = self._free_board_indexes(sum(p.kind != "android" for p in resolved))
            for spec, profile in zip(profiles, resolved, strict=True):
                counts[profile.name] += 1
                suffix = f"-{counts[profile.name]}" if counts[profile.name] > 1 else ""
                name = f"virtual-{profile.name}{suffix}"
                device = LabDevice(
                    name=name,
                    profile=spec,  # with its '@CORES', so the device's supervisor gets the same quota
                    kind="adb" if profile.kind == "android" else "ssh",
                    state_dir=str(self.root / "devices" / name),
                    cgroup=f"{self.lab_id}/{name}",
                    board_index=0 if profile.kind == "android" else used_indexes.pop(0),
                    link_delay_ms=link_delay_ms,
                    tau_s=tau_s,
                )
                state.devices.append(device)
                state.save(self.state_file)
                self._start_device(device, tau_s)
                state.save(self.state_file)
                if device.kind == "adb":
                    self._connect(state, device)
            self._write_devices_file(state)
        except BaseException:
            with contextlib.suppress(LabError):
                self.down()
            raise
        return state

    def _ensure_client_key(self) -> None:
        self.keys.mkdir(parents=True, exist_ok=True)
        if not self.client_key.exists():
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "edgelab-lab",
                    "-f",
                    str(self.client_key),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )

    def _free_board_indexes(self, count: int) -> list[int]:
        taken = set(network.existing_indexes())
        free = [index for index in range(1, 250) if index not in taken]
        return free[:count]

    def _start_adb_server(self, state: LabState) -> None:
        port = free_port()
        log = self.root / "adb-server.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [str(adb_binary()), "-P", str(port), "server", "nodaemon"],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        state.adb_port, state.adb_pid = port, process.pid
        state.save(self.state_file)
        _wait_port(port, READY_TIMEOUT_S, "the lab's adb server", process.pid, log)

    def restart(self, name: str) -> LabDevice:
        """Bring one device back after its supervisor or its server (adbd, sshd) died, as a reboot
        would: stop what is left of it, kill every process still in its cgroup, and start it again
        at the same address (same serial, same board address and host key), so the devices file
        and known_hosts stay valid. Its files and its mount namespace are kept."""
        state = self.state()
        if state is None:
            raise LabError(f"no lab in {self.root}; run `edgelab lab up` first")
        device = next((d for d in state.devices if d.name == name), None)
        if device is None:
            known = ", ".join(d.name for d in state.devices)
            raise LabError(f"lab restart: no device '{name}' in this lab (it has {known})")
        _stop(device.pid)
        _cgroup(device).destroy()  # orphans of a killed supervisor (agents, shells) die with it
        if device.kind == "ssh" and device.board_index:
            network.destroy(network.BoardLink(device.board_index))
        same_port = device.port if device.kind == "adb" and not device.link_delay_ms else 0
        self._start_device(device, device.tau_s, port=same_port)
        state.save(self.state_file)
        if device.kind == "adb":
            import adbutils

            client = adbutils.AdbClient(host="127.0.0.1", port=state.adb_port, socket_timeout=20)
            with contextlib.suppress(adbutils.AdbError):
                client.disconnect(device.serial)  # the server's offline entry would not reconnect soon
            self._connect(state, device)
        self._write_devices_file(state)
        return device

    def _start_device(self, device: LabDevice, tau_s: float | None, *, port: int = 0) -> None:
        state_dir = Path(device.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        ready = state_dir / "ready.json"
        ready.unlink(missing_ok=True)
        log = state_dir / "supervisor.log"
        command = [
            sys.executable,
            "-m",
            "harness.lab.device",
            "--name",
            device.name,
            "--profile",
            device.profile,
            "--state",
            str(state_dir),
            "--ready",
            str(ready),
            "--cgroup",
            device.cgroup,
        ]
        if device.kind == "ssh":
            command += ["--board-index", str(device.board_index)]
            command += ["--authorized-keys", str(self.client_key.with_suffix(".pub"))]
        if tau_s is not None:
            command += ["--tau-s", str(tau_s)]
        if port:
            command += ["--port", str(port)]
        if device.link_delay_ms:
            command += ["--link-delay-ms", str(device.link_delay_ms)]
        with log.open("ab") as sink:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the lab outlives the command that started it
                cwd=str(Path(__file__).resolve().parents[2]),
            )
        device.pid = process.pid
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if process.poll() is not None:
                raise LabError(
                    f"{device.name}: its supervisor exited with {process.returncode} while starting; "
                    f"{log} says:\n{_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise LabError(f"{device.name}: not ready after {READY_TIMEOUT_S:.0f} s; see {log}")
            time.sleep(0.05)
        announced: dict[str, Any] = json.loads(ready.read_text())
        device.port = int(announced["port"])
        device.host = str(announced.get("host", "127.0.0.1"))
        device.host_key = str(announced.get("host_key", ""))
        device.isolated = bool(announced.get("isolated"))
        device.metered = bool(announced.get("cgroup"))
        device.namespace = announced.get("namespace")
        if device.kind == "ssh":
            _wait_for_ssh(device, log)

    def _connect(self, state: LabState, device: LabDevice) -> None:
        import adbutils

        client = adbutils.AdbClient(host="127.0.0.1", port=state.adb_port, socket_timeout=20)
        answer = client.connect(device.serial, timeout=20)
        if "connected" not in answer:
            raise LabError(f"{device.name}: adb connect {device.serial}: {answer.strip()}")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            states = {d.serial: d.state for d in client.list()}
            if states.get(device.serial) == "device":
                return
            time.sleep(0.1)
        raise LabError(
            f"{device.name}: adb lists {device.serial} as {states.get(device.serial)!r}, not 'device'"
        )

    def _write_devices_file(self, state: LabState) -> None:
        entries: dict[str, dict[str, Any]] = {}
        known_hosts: list[str] = []
        for device in state.devices:
            profile = get_profile(device.profile)
            common: dict[str, Any] = {
                "python": state.python,
                "threads": max(1, int(profile.cpu_quota)),
                "virtual": True,
                "cooldown_below_c": profile.thermal.trip_c - 15.0,
                "labels": {"profile": profile.name, "description": profile.description},
            }
            if device.kind == "adb":
                entries[device.name] = {
                    "kind": "adb",
                    "serial": device.serial,
                    "adb_host": "127.0.0.1",
                    "adb_port": state.adb_port,
                    "connect": True,
                    "tags": ["android", "phone", "virtual"],
                    "workdir": ANDROID_WORKDIR,
                    **common,
                }
                if profile.stock:  # no Python there: the runtimes' own tools (the lab's stand-ins)
                    del entries[device.name]["python"]
                    entries[device.name]["tags"].append("stock")
                    entries[device.name]["runner"] = "native"
                    tools = write_standin_tools(self.root / "tools" / "android_arm64")
                    entries[device.name]["native_tools"] = tools
            else:
                entries[device.name] = {
                    "kind": "ssh",
                    "host": device.host,
                    "port": device.port,
                    "user": "root",
                    "key_file": str(self.client_key),
                    "known_hosts": str(self.known_hosts),
                    "tags": ["linux", "board", "virtual"],
                    "workdir": BOARD_WORKDIR,
                    "keepalive_s": 3,  # a lab link: notice a dead device within seconds
                    **common,
                }
                address = device.host if device.port == 22 else f"[{device.host}]:{device.port}"
                known_hosts.append(f"{address} {device.host_key}")
        self.known_hosts.write_text("".join(line + "\n" for line in known_hosts))
        header = "# Written by `edgelab lab up`; removed by `edgelab lab down`. Do not edit.\n"
        body = yaml.safe_dump({"devices": entries}, sort_keys=False)
        temporary = self.devices_file.with_suffix(".tmp")
        temporary.write_text(header + body, encoding="utf-8")
        os.replace(temporary, self.devices_file)

    def fleet(self) -> Fleet:
        """The lab's devices (and ``local``), read from the devices file ``up`` wrote."""
        if not self.devices_file.exists():
            raise LabError(f"no lab devices file at {self.devices_file}; run `edgelab lab up` first")
        return load_fleet(self.devices_file, lab_file=self.root / "no-second-lab-file")

    # -- status --------------------------------------------------------------------------------

    def status(self) -> list[DeviceStatus]:
        state = self.state()
        if state is None:
            return []
        adb_states: dict[str, str] = {}
        if _alive(state.adb_pid):
            with contextlib.suppress(Exception):
                import adbutils

                client = adbutils.AdbClient(host="127.0.0.1", port=state.adb_port, socket_timeout=5)
                adb_states = {d.serial: d.state for d in client.list()}
        rows = []
        for device in state.devices:
            alive = _alive(device.pid)
            sensors = _read_sensor_state(Path(device.state_dir) / "sys" / "edgelab" / "state")
            if device.kind == "adb":
                connection = adb_states.get(device.serial, "absent") if alive else "down"
                address = f"{device.serial} via adb server :{state.adb_port}"
            else:
                connection = "listening" if alive and _port_open(device.host, device.port) else "down"
                address = f"root@{device.host}:{device.port}"
            if device.link_delay_ms:
                address += f" (+{device.link_delay_ms:g} ms each way)"
            quota = None
            with contextlib.suppress(OSError, ValueError):
                quota = _cgroup(device).quota_cores()
            rows.append(
                DeviceStatus(
                    name=device.name,
                    profile=device.profile,
                    kind=device.kind,
                    address=address,
                    alive=alive,
                    connection=connection,
                    temp_c=float(sensors["temp_c"]) if "temp_c" in sensors else None,
                    throttled=sensors.get("throttled") == "1" if "throttled" in sensors else None,
                    cpu_quota=quota,
                )
            )
        return rows

    # -- down ----------------------------------------------------------------------------------

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop everything in lab.json; return what was cleaned. Raises if anything is left."""
        state = self.state()
        done: list[str] = []
        if state is None:
            return done
        for device in state.devices:
            if _alive(device.pid):
                _stop(device.pid)
                done.append(f"stopped {device.name} (pid {device.pid})")
        if _alive(state.adb_pid):
            _stop(state.adb_pid)
            done.append(f"stopped adb server :{state.adb_port} (pid {state.adb_pid})")
        for device in state.devices:
            cgroup = _cgroup(device)
            if cgroup.cpu.exists() or cgroup.cpuacct.exists():
                cgroup.destroy()
                done.append(f"removed cgroup {device.cgroup}")
            root = _device_root(device)
            if root.host_mounts():
                root.destroy()
                done.append(f"removed mount namespace of {device.name}")
            if root.release_memory():
                done.append(f"removed the in-memory /sys of {device.name}")
            if device.board_index:
                link = network.BoardLink(device.board_index)
                if network.exists(link):
                    network.destroy(link)
                    done.append(f"removed netns {link.namespace} and veth {link.host_interface}")
        lab_group = DeviceCgroup(self.lab_id)
        for folder in (lab_group.cpu, lab_group.cpuacct, lab_group.cpu.parent, lab_group.cpuacct.parent):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: another lab may share the parent
        leftovers = self.leftovers(state)
        if leftovers:
            raise LabError("lab down left these behind:\n  " + "\n  ".join(leftovers))
        self.devices_file.unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)
        if purge:
            for device in state.devices:
                _device_root(device).remove_state()
            done.append(f"deleted device state under {self.root / 'devices'}")
        return done

    def leftovers(self, state: LabState | None = None) -> list[str]:
        """Processes, mounts, namespaces, links and cgroups of this lab that still exist."""
        state = state or self.state()
        if state is None:
            return []
        found: list[str] = []
        for device in state.devices:
            if _alive(device.pid):
                found.append(f"process {device.pid} ({device.name} supervisor)")
            cgroup = _cgroup(device)
            for folder in {cgroup.cpu, cgroup.cpuacct}:
                if folder.exists():
                    found.append(f"cgroup {folder}")
            if device.board_index and network.exists(network.BoardLink(device.board_index)):
                found.append(f"network namespace/link of {device.name}")
        if _alive(state.adb_pid):
            found.append(f"process {state.adb_pid} (adb server)")
        found += [f"mount {point}" for point in mounts_under(self.root)]
        return found


def _cgroup(device: LabDevice) -> DeviceCgroup:
    return DeviceCgroup(device.cgroup)


def _device_root(device: LabDevice) -> DeviceRoot:
    state_dir = Path(device.state_dir)
    if device.kind == "adb":
        return android_root(state_dir, stock=get_profile(device.profile).stock)
    return board_root(state_dir)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def _wait_for_ssh(device: LabDevice, log: Path) -> None:
    """sshd is up when it sends its identification string."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((device.host, device.port), timeout=1) as sock,
        ):
            if sock.recv(64).startswith(b"SSH-"):
                return
        if not _alive(device.pid):
            raise LabError(
                f"{device.name}: supervisor exited while sshd was starting; {log} says:\n{_tail(log)}"
            )
        time.sleep(0.1)
    ssh_log = Path(device.state_dir) / "ssh" / "sshd.log"
    raise LabError(f"{device.name}: sshd on {device.host}:{device.port} did not answer; see {ssh_log}")


def _read_sensor_state(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
