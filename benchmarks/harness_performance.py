"""The harness's own costs on the virtual lab: deployment throughput against scp / adb push, bytes
moved on a warm re-run, and per-test orchestration overhead on ssh and adb.

Run (as root, after ``pip install -e .``)::

    edgelab lab up --profile pixel8 --profile rpi5 [--link-delay-ms 10]
    python benchmarks/harness_performance.py [--size-mb 100] [--rounds 3] [--modes channel,per-command]

Each measurement alternates EdgeLab and the reference tool in one process (A/B/A/B...) and keeps
the median; orchestration alternates the persistent channel, today's per-command path and a fresh
interpreter per run. Writes benchmarks/results/harness_performance.json (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.deploy import Artifact, Deployer
from harness.lab.manager import VirtualLab, adb_binary
from harness.measurement import LatencyProtocol
from harness.models.variants import variants_for
from harness.runners.cooldown import wait_until_cool
from harness.runners.python_agent import FORKED_BY_CHANNEL, FORKED_BY_SERVER
from harness.session import Lab, RunOptions
from harness.transport.adb import AdbTransport
from harness.transport.ssh import SshTransport

RESULTS = Path(__file__).parent / "results" / "harness_performance.json"
COOL_BELOW_C = 45.0


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def deployment(lab: VirtualLab, size_mb: int, rounds: int) -> dict[str, Any]:
    fleet = lab.fleet()
    state = lab.state()
    assert state is not None
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, kind in (("virtual-rpi5", "ssh"), ("virtual-pixel8", "adb")):
            config = fleet[name]
            transport = SshTransport(config) if kind == "ssh" else AdbTransport(config)  # type: ignore[arg-type]
            ours, theirs = [], []
            for index in range(rounds):
                payload = Path(folder) / f"payload-{index}.bin"
                payload.write_bytes(os.urandom(size_mb << 20))  # fresh content: a cold push every time
                workdir = "/home/edgelab/bench" if kind == "ssh" else "/data/local/tmp/edgelab/bench"
                deployer = Deployer(transport, workdir, config.python)
                ours.append(timed(lambda d=deployer, p=payload: d.ensure([Artifact.from_file(p)])))
                target = f"{workdir}/ref-{index}.bin"
                if kind == "ssh":
                    command = [
                        "scp", "-q", "-i", str(lab.client_key), "-o", f"UserKnownHostsFile={lab.known_hosts}",
                        str(payload), f"root@{config.host}:{target}",  # type: ignore[union-attr]
                    ]  # fmt: skip
                else:
                    command = [
                        str(adb_binary()),
                        "-P",
                        str(state.adb_port),
                        "-s",
                        config.serial,
                        "push",
                        str(payload),
                        target,
                    ]  # type: ignore[union-attr]
                theirs.append(timed(lambda c=command: subprocess.run(c, check=True, capture_output=True)))
                warm = deployer.ensure([Artifact.from_file(payload)])
                rows.setdefault(name, {})["warm_rerun_bytes"] = warm.bytes_pushed
            transport.run(["rm", "-rf", workdir], timeout=120)
            transport.close()
            ours_mbps = size_mb / statistics.median(ours)
            theirs_mbps = size_mb / statistics.median(theirs)
            rows[name].update(
                {
                    "transport": kind,
                    "reference": "scp" if kind == "ssh" else "adb push",
                    "edgelab_mb_per_s": round(ours_mbps, 1),
                    "reference_mb_per_s": round(theirs_mbps, 1),
                    "ratio": round(ours_mbps / theirs_mbps, 3),
                    "note": "EdgeLab verifies every push: sha256 on the device as the file arrives "
                    "(adb), the size written (ssh, whose packets are MAC-checked)",
                }
            )
            print(name, rows[name], flush=True)
    return rows


# how each mode's run says it was made (BenchmarkResult.notes)
MODE_NOTES = {
    "channel": FORKED_BY_CHANNEL,
    "per-command": FORKED_BY_SERVER,
    "cold": None,
}


MODES = tuple(MODE_NOTES)


def bare_command(lab: VirtualLab, repeats: int = 15) -> dict[str, Any]:
    """One trivial command (`true`), alternating a new SSH channel / adb shell per command with
    the persistent channel: the transport's own cost per request, nothing of the agent's."""
    rows: dict[str, Any] = {}
    for name in ("virtual-rpi5", "virtual-pixel8"):
        with tempfile.TemporaryDirectory() as folder:
            options = RunOptions(reports_dir=Path(folder), devices=(name,), lease_timeout_s=None)
            session = Lab(lab.fleet(), options)
            channel = session.device(name).transport
            base = getattr(channel, "base", channel)
            times: dict[str, list[float]] = {"per_command": [], "channel": []}
            for _ in range(repeats):
                times["per_command"].append(timed(lambda b=base: b.run(["true"], timeout=30, check=True)))
                times["channel"].append(timed(lambda c=channel: c.run(["true"], timeout=30, check=True)))
            session.close()
        rows[name] = {f"{k}_ms_median": round(statistics.median(v) * 1e3, 2) for k, v in times.items()}
        print(name, "bare command", rows[name], flush=True)
    return rows


def _fleet_for(lab: VirtualLab, mode: str, names: list[str]) -> Any:
    """The lab's fleet as each mode wants it: the persistent channel (the default), today's
    per-command path (an SSH channel or adb shell per command, the FIFO warm agent), or a fresh
    interpreter per run."""
    fleet = lab.fleet()
    update = {
        "channel": {},
        "per-command": {"persistent_channel": False},
        "cold": {"persistent_channel": False, "warm_agent": False},
    }[mode]
    for name in names:
        fleet.devices[name] = fleet.devices[name].model_copy(update=update)
    return fleet


def _check_mode(name: str, mode: str, notes: tuple[str, ...]) -> None:
    """A run made on another path than its mode's (a channel given up falls back to the
    per-command path, a warm agent that did not start to a fresh interpreter) would be measured
    as that mode's: stop instead, with the run's notes."""
    made = next((p for p in MODE_NOTES.values() if p and any(note.startswith(p) for note in notes)), None)
    if made != MODE_NOTES[mode]:
        raise SystemExit(f"{name}: a '{mode}' run was made another way; its notes: {list(notes)}")


def orchestration(lab: VirtualLab, rounds: int, modes: list[str]) -> dict[str, Any]:
    """Per-test cost around the inference, the modes alternating in one process. overhead = wall
    time of one Lab.benchmark() minus model load, first inference and the timed loop as the agent
    reports them. The load subtracted is the run's own load_ms (session creation) in the warm
    modes; a cold run's load_ms also holds importing the runtime, which is its overhead, so the
    warm runs' median is subtracted there (``overhead_median_load`` is every mode that way, as
    stops before 2026-12 measured it: a shared host's load time varies by tens of ms between
    runs, and that variation then lands in the overhead). What is left: transport, deploy check,
    argv, JSON, the environment check, and, cold, starting Python and importing numpy and the
    runtime. ``host_cpu_ms`` is this process's CPU time (all threads: transport, channel readers)
    per test."""
    rows: dict[str, Any] = {}
    protocol = LatencyProtocol(
        warmup_iters=1, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=10.0, idle_s=0.0, sample_period_s=0.0
    )
    variant = variants_for("silero_vad")[0]
    names = ["virtual-rpi5", "virtual-pixel8"]
    state = lab.state()
    delay_ms = max((device.link_delay_ms for device in state.devices), default=0.0) if state else 0.0
    with tempfile.TemporaryDirectory() as folder:
        sessions = {
            mode: Lab(
                _fleet_for(lab, mode, names),
                RunOptions(reports_dir=Path(folder) / mode, devices=tuple(names), lease_timeout_s=None),
            )
            for mode in modes
        }
        for name in names:
            walls: dict[str, list[float]] = {mode: [] for mode in modes}
            cpus: dict[str, list[float]] = {mode: [] for mode in modes}
            inference: dict[str, list[float]] = {mode: [] for mode in modes}
            own_loads: dict[str, list[float]] = {mode: [] for mode in modes}
            phases: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
            loads: list[float] = []
            for session in sessions.values():
                # connect, deploy, start the agents: not counted
                session.benchmark(name, variant, protocol, energy="none")
            for _ in range(rounds * 3):
                for mode, session in sessions.items():
                    # from cool: a throttled board (the lab's CPU quota drops past its trip point)
                    # would stretch the CPU work around the inference, not measure it
                    wait_until_cool(session.device(name).transport, COOL_BELOW_C, 180.0)
                    cpu = time.process_time()
                    started = time.perf_counter()
                    result = session.benchmark(name, variant, protocol, energy="none").result
                    walls[mode].append(time.perf_counter() - started)
                    cpus[mode].append(time.process_time() - cpu)
                    _check_mode(name, mode, result.notes)
                    timed_s = sum(result.latency_samples_ns) / 1e9
                    inference[mode].append(result.first_inference_ms / 1e3 + timed_s)
                    phases[mode].append(result.agent_phases_ms or {})
                    own_loads[mode].append(result.load_ms / 1e3)
                    if mode != "cold":
                        loads.append(result.load_ms / 1e3)
            load = statistics.median(loads)
            row: dict[str, Any] = {"model_load_ms_median": round(load * 1e3, 1), "link_delay_ms": delay_ms}
            if delay_ms:
                row["goal_ms"] = {"two_round_trips_plus_10": 2 * 2 * delay_ms + 10}
            for mode in modes:
                subtracted = [load] * len(walls[mode]) if mode == "cold" else own_loads[mode]
                overheads = [
                    w - i - s for w, i, s in zip(walls[mode], inference[mode], subtracted, strict=True)
                ]
                with_median = [w - i - load for w, i in zip(walls[mode], inference[mode], strict=True)]
                row[f"{mode}_wall_ms_median"] = round(statistics.median(walls[mode]) * 1e3, 1)
                row[f"{mode}_overhead_ms_median"] = round(statistics.median(overheads) * 1e3, 1)
                row[f"{mode}_overhead_median_load_ms_median"] = round(statistics.median(with_median) * 1e3, 1)
                row[f"{mode}_host_cpu_ms_median"] = round(statistics.median(cpus[mode]) * 1e3, 1)
                # where it goes: the agent's own steps on the device, and the rest (the round trip,
                # the client and fork, or a fresh interpreter's start and imports)
                measured = ("load", "first_inference", "warmup", "timed")
                steps = [n for n in phases[mode][0] if n not in measured]
                row[f"{mode}_agent_phases_ms_median"] = {
                    n: round(statistics.median(p.get(n, 0.0) for p in phases[mode]), 1) for n in steps
                }
                outside = [w * 1e3 - sum(p.values()) for w, p in zip(walls[mode], phases[mode], strict=True)]
                row[f"{mode}_outside_agent_ms_median"] = round(statistics.median(outside), 1)
            rows[name] = row
            print(name, row, flush=True)
        for session in sessions.values():
            session.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="channel,per-command,cold", help=f"some of {','.join(MODES)}")
    parser.add_argument("--skip-deployment", action="store_true", help="orchestration only")
    parser.add_argument("--output", type=Path, default=RESULTS)
    arguments = parser.parse_args()
    modes = [mode for mode in arguments.modes.split(",") if mode]
    if not modes or any(mode not in MODES for mode in modes):
        raise SystemExit(f"--modes {arguments.modes}: give some of {', '.join(MODES)}")
    lab = VirtualLab()
    if not lab.is_up():
        raise SystemExit("no virtual lab is up: run `edgelab lab up --profile pixel8 --profile rpi5` first")
    figures: dict[str, Any] = {
        "host": platform.node(),
        "host_cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "size_mb": arguments.size_mb,
    }
    if not arguments.skip_deployment:
        figures["deployment"] = deployment(lab, arguments.size_mb, arguments.rounds)
    figures["bare_command"] = bare_command(lab)
    figures["orchestration"] = orchestration(lab, arguments.rounds, modes)
    figures["load_average_after"] = os.getloadavg()
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(figures, indent=1))
    print(f"written {arguments.output}")


if __name__ == "__main__":
    main()
