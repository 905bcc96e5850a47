"""Soak test on the virtual lab: many short pytest runs on two devices with faults injected.

Run (as root, after ``pip install -e .``)::

    python benchmarks/soak.py --runs 200 [--every 3] [--seed 0] [--deadline 2026-11-30T20:05:00Z]

A lab with ``virtual-pixel8`` (adbd over the real ADB protocol) and ``virtual-rpi5`` (sshd in a
network namespace) is started in its own folder; each device's workdir is a 224 MB tmpfs inside
the device's mount namespace (so "disk full" fills that, not the host's disk). Then ``--runs``
pytest processes run one short latency test of ``silero_vad`` (onnxruntime, fp32) on both
devices, all against one SQLite results database, with ``--retries 1``. Every ``--every`` runs a
fault is injected while the run uses the device, rotating through:

- ``adbd-killed``: the phone's supervisor (its adbd) is SIGKILLed; restored after the run by
  ``VirtualLab.restart`` (a reboot: same serial);
- ``sshd-killed``: the board's sshd and every session under it are SIGKILLed; restored likewise;
- ``link-cut``: the board's veth is set down for 10 s, then up again;
- ``db-locked``: another connection holds ``BEGIN EXCLUSIVE`` on the results database for the
  whole run (beyond SQLite's 30-s busy wait: results stay in results.json) or for 8 s (writes wait);
- ``disk-full``: the device's workdir is filled before the run (the health check refuses), or its
  cache is emptied and the disk fills as the first push starts (the push fails).

A last run without a fault follows (it stores what a locked database left in results.json, as
any next run does). Then it checks: every test in every run's junit XML is in that run's
results.json and in the database exactly once; no device is quarantined although the last run
passed on it; no leftover processes in the devices' cgroups, adb forwards, partial or temporary
files (device workdirs, reports, leases, health), or held leases. Figures go to
benchmarks/results/soak.json (``--output``); the exit status is 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.lab import network
from harness.lab.adbd import android_root
from harness.lab.device import board_root
from harness.lab.manager import ANDROID_WORKDIR, BOARD_WORKDIR, LabDevice, VirtualLab
from harness.lab.sandbox import DeviceRoot
from harness.lab.sensors import DeviceCgroup

RESULTS = Path(__file__).parent / "results" / "soak.json"
ROOT = Path(__file__).resolve().parents[1]
FAULTS = ("adbd-killed", "sshd-killed", "link-cut", "db-locked", "disk-full")
PHONE, BOARD = "virtual-pixel8", "virtual-rpi5"
WORKDIR_MB = 224  # above the health check's 200 MB floor, small enough to fill in a moment
RUN_TIMEOUT_S = 600.0  # a run that takes longer is a hang: killed and counted
LINK_CUT_S = 10.0
DB_LOCK_SHORT_S = 8.0

TARGET = """
import pytest


@pytest.mark.edge(model="silero_vad", precisions=["fp32"], runtimes=["onnxruntime"])
def test_latency(edge):
    result = edge.benchmark(warmup_iters=2, warmup_s=0.0, min_iters=10, min_s=1.5, max_s=5.0)
    assert result.latency_ms.samples >= 10
"""


@dataclass
class RunOutcome:
    index: int
    run_id: str
    fault: str | None
    fault_detail: str
    exit_code: int | None  # None: killed after RUN_TIMEOUT_S
    wall_s: float
    outcomes: dict[str, str] = field(default_factory=dict)  # test name -> junit outcome


@dataclass
class Figures:
    runs: int = 0
    runs_requested: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    tests_finished: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    results_stored: int = 0
    duplicates: int = 0
    lost: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    hung_runs: int = 0
    quarantined_while_healthy: list[str] = field(default_factory=list)
    leftover_processes: list[str] = field(default_factory=list)
    leftover_files: list[str] = field(default_factory=list)
    held_leases: list[str] = field(default_factory=list)
    adb_forwards: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    per_fault_outcomes: dict[str, dict[str, int]] = field(default_factory=dict)

    def problems(self) -> list[str]:
        found = []
        if self.duplicates:
            found.append(f"{self.duplicates} result(s) stored more than once")
        found += [f"lost: {item}" for item in self.lost]
        found += [f"in the database but in no results.json: {item}" for item in self.extra]
        if self.hung_runs:
            found.append(f"{self.hung_runs} run(s) hung and were killed")
        found += [f"quarantined while healthy: {name}" for name in self.quarantined_while_healthy]
        found += [f"leftover process: {item}" for item in self.leftover_processes]
        found += [f"leftover file: {item}" for item in self.leftover_files]
        found += [f"lease still held: {item}" for item in self.held_leases]
        found += [f"adb forward left: {item}" for item in self.adb_forwards]
        return found


class Soak:
    """A lab, a work folder and the faults; ``run_all`` runs the soak, ``check`` counts."""

    def __init__(self, folder: Path, *, seed: int = 0, log: Callable[[str], None] = print) -> None:
        self.folder = folder
        self.lab = VirtualLab(folder / "lab")
        self.work = folder / "work"
        self.reports = self.work / "reports"
        self.db = self.reports / "results.db"
        self.random = random.Random(seed)
        self.log = log
        self.outcomes: list[RunOutcome] = []
        self.environment = {
            **os.environ,
            "EDGELAB_LAB_DIR": str(self.lab.root),
            "EDGELAB_HEALTH_DIR": str(folder / "health"),
            "EDGELAB_LEASE_DIR": str(folder / "leases"),
            "PYTHONUNBUFFERED": "1",
        }
        self.environment.pop("EDGELAB_RESULTS_DB", None)
        self._disk_full_count = 0
        self._db_lock_count = 0

    # -- lab -----------------------------------------------------------------------------------

    def up(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.work.mkdir(parents=True)
        (self.work / "test_soak_target.py").write_text(TARGET)
        self.lab.up(["pixel8", "rpi5"])
        for device in self._devices():
            self._mount_workdir(device)

    def down(self, *, keep_work: bool = False) -> list[str]:
        """Stop the lab; returns what ``lab down`` found left behind (it must find nothing)."""
        left: list[str] = []
        try:
            self.lab.down(purge=True)
        except Exception as exc:
            left.append(str(exc))
        if keep_work:
            shutil.rmtree(self.lab.root, ignore_errors=True)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
        return left

    def _devices(self) -> list[LabDevice]:
        state = self.lab.state()
        assert state is not None, "the lab is not up"
        return state.devices

    def _device(self, name: str) -> LabDevice:
        return next(d for d in self._devices() if d.name == name)

    @staticmethod
    def _root(device: LabDevice) -> DeviceRoot:
        state_dir = Path(device.state_dir)
        return android_root(state_dir) if device.kind == "adb" else board_root(state_dir)

    @staticmethod
    def _workdir(device: LabDevice) -> str:
        return ANDROID_WORKDIR if device.kind == "adb" else BOARD_WORKDIR

    def _in_namespace(self, device: LabDevice, script: str, *, check: bool = True) -> str:
        """Run ``script`` on the host side of the device's mount namespace ($W: the workdir there)."""
        root = self._root(device)
        workdir = f"{root.rootfs}{self._workdir(device)}"
        completed = subprocess.run(
            ["nsenter", f"--mount={root.nsfile}", "--", "sh", "-c", script, "soak", workdir],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and completed.returncode != 0:
            raise RuntimeError(f"{device.name}: {script!r} failed: {completed.stderr.strip()}")
        return completed.stdout

    def _mount_workdir(self, device: LabDevice) -> None:
        self._in_namespace(
            device,
            f'W="$1"; mkdir -p "$W" && mountpoint -q "$W" || '
            f'mount -t tmpfs -o size={WORKDIR_MB}m,mode=0755 edgelab-soak "$W"',
        )

    # -- faults --------------------------------------------------------------------------------

    def _holder_file(self, name: str) -> Path:
        from harness.lease import _file_name

        return self.folder / "leases" / f"{_file_name(name)}.holder.json"

    def _when_in_use(self, name: str, process: subprocess.Popen[bytes], extra_s: float) -> bool:
        """Wait until the run holds ``name`` (its lease), then ``extra_s``; False if it ended first."""
        holder = self._holder_file(name)
        while not holder.exists():
            if process.poll() is not None:
                return False
            time.sleep(0.05)
        time.sleep(extra_s)
        return process.poll() is None

    def _kill_phone(self, process: subprocess.Popen[bytes]) -> str:
        delay = self.random.uniform(0.5, 4.0)
        if not self._when_in_use(PHONE, process, delay):
            return "run ended before the phone was in use"
        phone = self._device(PHONE)
        os.kill(phone.pid, signal.SIGKILL)  # adbd is served by the supervisor: it dies with it
        return f"supervisor pid {phone.pid} SIGKILLed {delay:.1f} s after the lease"

    def _kill_sshd(self, process: subprocess.Popen[bytes]) -> str:
        delay = self.random.uniform(0.5, 4.0)
        if not self._when_in_use(BOARD, process, delay):
            return "run ended before the board was in use"
        board = self._device(BOARD)
        listener = int((Path(board.state_dir) / "ssh" / "sshd.pid").read_text().split()[0])
        victims = [listener, *_descendants(listener)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return f"sshd pid {listener} and {len(victims) - 1} session process(es) SIGKILLed {delay:.1f} s in"

    def _cut_link(self, process: subprocess.Popen[bytes]) -> str:
        delay = self.random.uniform(0.5, 4.0)
        if not self._when_in_use(BOARD, process, delay):
            return "run ended before the board was in use"
        link = network.BoardLink(self._device(BOARD).board_index)
        subprocess.run(["ip", "link", "set", link.host_interface, "down"], check=True, timeout=30)
        try:
            time.sleep(LINK_CUT_S)
        finally:
            subprocess.run(["ip", "link", "set", link.host_interface, "up"], check=True, timeout=30)
        return f"{link.host_interface} down for {LINK_CUT_S:g} s, {delay:.1f} s after the lease"

    def _lock_db(self, process: subprocess.Popen[bytes]) -> str:
        """Every other time the lock lasts the whole run, so the first write waits out SQLite's busy
        timeout and fails (results stay in results.json); otherwise DB_LOCK_SHORT_S (writes wait)."""
        self._db_lock_count += 1
        whole_run = self._db_lock_count % 2 == 1
        if not self._when_in_use(PHONE, process, 0.0):
            return "run ended before it used a device"
        connection = sqlite3.connect(self.db, timeout=60, isolation_level=None)
        held = time.monotonic()
        try:
            connection.execute("BEGIN EXCLUSIVE")
            deadline = held + (RUN_TIMEOUT_S if whole_run else DB_LOCK_SHORT_S)
            while time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.1)
            connection.execute("ROLLBACK")
        finally:
            connection.close()
        return f"BEGIN EXCLUSIVE held {time.monotonic() - held:.0f} s from the phone's lease" + (
            " (to the end of the run)" if whole_run else ""
        )

    def _fill_disk_before(self, name: str) -> Callable[[subprocess.Popen[bytes]], str]:
        device = self._device(name)
        self._in_namespace(device, 'dd if=/dev/zero of="$1/filler" bs=1M 2>/dev/null; true')
        return lambda process: f"{name}: workdir filled before the run"

    def _fill_disk_during_push(self, name: str) -> Callable[[subprocess.Popen[bytes]], str]:
        device = self._device(name)
        self._in_namespace(device, 'rm -rf "$1/cas"')  # as `edgelab cache prune` would: pushes follow

        def fill(process: subprocess.Popen[bytes]) -> str:
            script = (
                'W="$1"; i=0; while [ $i -lt 6000 ]; do '
                'for f in "$W"/cas/*/*.partial-*; do [ -e "$f" ] && break 2; done; '
                "sleep 0.02; i=$((i+1)); done; "
                'dd if=/dev/zero of="$W/filler" bs=1M 2>/dev/null; echo $i'
            )
            waited = self._in_namespace(device, script, check=False).strip()
            return f"{name}: cache emptied; workdir filled when a push started (polls {waited})"

        return fill

    def _restore(self, fault: str, name: str | None) -> None:
        if fault in ("adbd-killed", "sshd-killed") and name is not None:
            self.lab.restart(name)
        if fault == "disk-full" and name is not None:
            self._in_namespace(self._device(name), 'rm -f "$1/filler"')

    # -- runs ----------------------------------------------------------------------------------

    def _command(self, run_id: str) -> list[str]:
        return [
            sys.executable, "-m", "pytest", "test_soak_target.py", "-q", "-p", "no:cacheprovider",
            f"--device={PHONE},{BOARD}", "--energy=none", "--retries=1", "--no-report",
            f"--reports-dir={self.reports}", f"--results-db=sqlite:///{self.db}", f"--run-id={run_id}",
            f"--junitxml={self.reports / 'junit' / (run_id + '.xml')}", "--lease-timeout=120",
        ]  # fmt: skip

    def run_once(self, index: int, fault: str | None) -> RunOutcome:
        run_id = f"soak-{index:04d}"
        injector: Callable[[subprocess.Popen[bytes]], str] | None = None
        target: str | None = None
        if fault == "adbd-killed":
            injector, target = self._kill_phone, PHONE
        elif fault == "sshd-killed":
            injector, target = self._kill_sshd, BOARD
        elif fault == "link-cut":
            injector, target = self._cut_link, BOARD
        elif fault == "db-locked":
            injector = self._lock_db
        elif fault == "disk-full":
            self._disk_full_count += 1
            target = PHONE if self._disk_full_count % 2 else BOARD
            before = (self._disk_full_count // 2) % 2 == 0
            injector = self._fill_disk_before(target) if before else self._fill_disk_during_push(target)
        log_file = self.reports / "logs" / f"{run_id}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        detail = ""
        started = time.perf_counter()
        with log_file.open("wb") as sink:
            process = subprocess.Popen(
                self._command(run_id), cwd=self.work, env=self.environment, stdout=sink, stderr=sink
            )
            details: list[str] = []
            thread = None
            if injector is not None:
                chosen = injector

                def inject() -> None:
                    try:
                        details.append(chosen(process))
                    except Exception as exc:  # the soak reports a failed injection, it does not stop
                        details.append(f"injection failed: {exc}")

                thread = threading.Thread(target=inject, daemon=True)
                thread.start()
            interrupted = False
            try:
                exit_code: int | None = process.wait(RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                exit_code = None
            except KeyboardInterrupt:  # pytest ends the test it is in, records it and exits
                interrupted = True
                process.send_signal(signal.SIGINT)
                exit_code = process.wait(RUN_TIMEOUT_S)
            if thread is not None:
                thread.join(120)
            detail = "; ".join(details)
        wall = time.perf_counter() - started
        if fault is not None:
            self._restore(fault, target)
        outcome = RunOutcome(index, run_id, fault, detail, exit_code, round(wall, 2))
        outcome.outcomes = _junit_outcomes(self.reports / "junit" / f"{run_id}.xml")
        self.outcomes.append(outcome)
        if interrupted:
            raise KeyboardInterrupt
        return outcome

    def run_all(self, runs: int, every: int, deadline: float | None = None) -> None:
        faults = 0
        for index in range(1, runs + 1):
            if deadline is not None and time.time() > deadline:
                self.log(f"deadline reached after {index - 1} runs")
                break
            fault = None
            if index % every == 0:
                fault = FAULTS[faults % len(FAULTS)]
                faults += 1
            try:
                outcome = self.run_once(index, fault)
            except KeyboardInterrupt:  # stop early, but settle and count what ran
                self.log(f"interrupted during run {index}")
                break
            self.log(
                f"run {index:4d} {fault or '-':12s} exit {outcome.exit_code} {outcome.wall_s:6.1f} s "
                f"{dict(Counter(outcome.outcomes.values()))} {outcome.fault_detail}"
            )
        settle = self.run_once(len(self.outcomes) + 1, None)  # the next run stores what was left over
        self.log(f"settle run exit {settle.exit_code} {dict(Counter(settle.outcomes.values()))}")

    # -- checks --------------------------------------------------------------------------------

    def check(self, wall_s: float, runs_requested: int) -> Figures:
        figures = Figures(runs=len(self.outcomes), runs_requested=runs_requested, wall_s=round(wall_s, 1))
        figures.faults = dict(Counter(o.fault for o in self.outcomes if o.fault))
        per_fault: dict[str, Counter[str]] = {}
        for outcome in self.outcomes:
            figures.tests_finished += len(outcome.outcomes)
            if outcome.exit_code is None:
                figures.hung_runs += 1
            if outcome.fault:
                per_fault.setdefault(outcome.fault, Counter()).update(outcome.outcomes.values())
        figures.per_fault_outcomes = {k: dict(v) for k, v in per_fault.items()}
        figures.outcomes = dict(Counter(v for o in self.outcomes for v in o.outcomes.values()))
        self._check_stored(figures)
        self._check_health(figures)
        self._check_leftovers(figures)
        return figures

    def _check_stored(self, figures: Figures) -> None:
        rows: Counter[tuple[str, str, str]] = Counter()
        with contextlib.closing(sqlite3.connect(self.db, timeout=60)) as connection:
            for run_id, test, kind, finished_at in connection.execute(
                "SELECT run_id, test, kind, finished_at FROM measurements"
            ):
                rows[(run_id, test, f"{kind}@{finished_at}")] += 1
        figures.results_stored = len(rows)
        figures.duplicates = sum(count - 1 for count in rows.values() if count > 1)
        in_json: set[tuple[str, str, str]] = set()
        for outcome in self.outcomes:
            records = _results_json(self.reports / outcome.run_id / "results.json")
            names = {record["test"].rsplit("::", 1)[-1] for record in records}
            for record in records:
                in_json.add((record["run_id"], record["test"], f"{record['kind']}@{record['finished_at']}"))
            figures.lost += [
                f"{outcome.run_id} {name}: finished ({state}) but not in results.json"
                for name, state in outcome.outcomes.items()
                if name not in names
            ]
        figures.lost += [
            f"{key[0]} {key[1]}: in results.json, not in the database" for key in in_json - set(rows)
        ]
        figures.extra = [f"{key[0]} {key[1]}" for key in set(rows) - in_json]

    def _check_health(self, figures: Figures) -> None:
        from unittest import mock

        from harness import health

        last = self.outcomes[-1].outcomes if self.outcomes else {}
        for name in (PHONE, BOARD):
            # the soak's health folder for this read only: set for good, it sent every later
            # health record of the same process (the test session's other tests) into this folder
            with mock.patch.dict(os.environ, {"EDGELAB_HEALTH_DIR": self.environment["EDGELAB_HEALTH_DIR"]}):
                state = health.status(name)
            passed_last = any(
                n.startswith(f"test_latency[{name}-") and v == "passed" for n, v in last.items()
            )
            if state.get("quarantined") and passed_last:
                figures.quarantined_while_healthy.append(f"{name} ({state.get('last_problem')})")
            elif state.get("quarantined") or not passed_last:
                figures.quarantined_while_healthy.append(
                    f"{name}: the last run did not pass on it ({last}); health {state}"
                )

    def _check_leftovers(self, figures: Figures) -> None:
        for device in self._devices():
            expected = set()
            if device.kind == "ssh":
                pid_file = Path(device.state_dir) / "ssh" / "sshd.pid"
                with contextlib.suppress(OSError, ValueError):
                    expected.add(int(pid_file.read_text().split()[0]))
            for pid in DeviceCgroup(device.cgroup).pids():
                if pid not in expected:
                    figures.leftover_processes.append(f"{device.name}: pid {pid} {_cmdline(pid)}")
            listing = self._in_namespace(
                device,
                'cd "$1" || exit 0; '
                'find . \\( -name "*.partial-*" -o -name "call-*" -o -name "*.tmp" \\) -print; '
                "ls -d servers/* 2>/dev/null",  # no session runs now: no warm agent folder may be left
                check=False,
            )
            figures.leftover_files += [f"{device.name}: {line}" for line in listing.split()]
        for folder in (self.reports, self.folder / "leases", self.folder / "health"):
            figures.leftover_files += [
                str(path.relative_to(self.folder))
                for path in folder.rglob("*")
                if path.is_file() and (".tmp" in path.name or ".partial" in path.name)
            ]
        figures.leftover_files += [
            str(path.relative_to(self.folder)) for path in self.reports.glob("*/.unstored")
        ]
        for holder in (self.folder / "leases").glob("*.holder.json"):
            figures.held_leases.append(f"{holder.name}: {holder.read_text()[:200]}")
        for lock in (self.folder / "leases").glob("*.lock"):
            with lock.open("a+") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(handle, fcntl.LOCK_UN)
                except BlockingIOError:
                    figures.held_leases.append(f"{lock.name}: locked")
        state = self.lab.state()
        if state is not None and state.adb_port:
            from harness.lab.manager import adb_binary

            listed = subprocess.run(
                [str(adb_binary()), "-P", str(state.adb_port), "forward", "--list"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
            figures.adb_forwards = [line for line in listed.splitlines() if line.strip()]
        for pid in _host_processes("edgelab_agent"):
            figures.leftover_processes.append(f"host: pid {pid} {_cmdline(pid)}")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return "(gone)"


def _host_processes(needle: str) -> list[int]:
    """Processes of this Python installation (not another checkout's), outside any lab cgroup,
    whose command line holds ``needle`` (none should be left)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        command = _cmdline(int(entry.name))
        if needle in command and command.startswith(sys.prefix):
            with contextlib.suppress(OSError):
                if "edgelab" not in (entry / "cgroup").read_text():
                    found.append(int(entry.name))
    return found


def _junit_outcomes(path: Path) -> dict[str, str]:
    """test name -> passed / failed / error / skipped, for every test the run finished."""
    try:
        tree = ElementTree.parse(path)
    except (OSError, ElementTree.ParseError):
        return {}
    outcomes = {}
    for case in tree.iter("testcase"):
        state = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                state = {"failure": "failed"}.get(child.tag, child.tag)
                break
        outcomes[case.get("name", "?")] = state
    return outcomes


def _results_json(path: Path) -> list[dict[str, Any]]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return list(document.get("results", []))


@contextlib.contextmanager
def soak_folder(tag: str) -> Iterator[Path]:
    # sshd's ChrootDirectory refuses world-writable parents such as /tmp.
    folder = Path.home() / ".cache" / "edgelab" / "soak" / f"{tag}-{os.getpid()}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    yield folder


def write_figures(figures: Figures, outcomes: list[RunOutcome], output: Path, command: list[str]) -> None:
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    document = {
        "command": " ".join(command),
        "commit": git.stdout.strip() or None,
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"cpus": os.cpu_count(), "system": platform.platform()},
        "figures": asdict(figures),
        "problems": figures.problems(),
        "runs": [asdict(outcome) for outcome in outcomes],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=1) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--every", type=int, default=3, help="a fault every N runs (default: 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", default=None, help="UTC time (ISO) after which no run starts")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the reports and logs of every run")
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        print("the soak needs root (the virtual lab: namespaces, cgroups, veth links)", file=sys.stderr)
        return 2
    # Started in the background, SIGINT may be ignored: SIGINT and SIGTERM both stop after the run.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    deadline = None
    if arguments.deadline:
        deadline = datetime.fromisoformat(arguments.deadline.replace("Z", "+00:00")).timestamp()
    with soak_folder("soak") as folder:
        soak = Soak(folder, seed=arguments.seed, log=lambda line: print(line, flush=True))
        started = time.perf_counter()
        try:
            soak.up()
            soak.run_all(arguments.runs, arguments.every, deadline)
            figures = soak.check(time.perf_counter() - started, arguments.runs)
        finally:
            left = soak.down(keep_work=arguments.keep)
        figures.leftover_processes += left
    write_figures(figures, soak.outcomes, arguments.output, ["python", "benchmarks/soak.py", *sys.argv[1:]])
    summary = {k: v for k, v in asdict(figures).items() if k != "per_fault_outcomes"}
    print(json.dumps(summary, indent=1))
    for problem in figures.problems():
        print("PROBLEM:", problem)
    return 1 if figures.problems() else 0


if __name__ == "__main__":
    raise SystemExit(main())
