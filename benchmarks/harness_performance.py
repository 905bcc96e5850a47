"""The harness's own costs on the virtual lab: deployment throughput against scp / adb push, bytes
moved on a warm re-run, and per-test orchestration overhead on ssh and adb.

Run (as root, after ``pip install -e .``)::

    edgelab lab up --profile pixel8 --profile rpi5
    python benchmarks/harness_performance.py [--size-mb 100] [--rounds 3]

Each measurement alternates EdgeLab and the reference tool in one process (A/B/A/B...) and keeps
the median. Writes benchmarks/results/harness_performance.json.
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
from harness.session import Lab
from harness.transport.adb import AdbTransport
from harness.transport.ssh import SshTransport

RESULTS = Path(__file__).parent / "results" / "harness_performance.json"


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
                    "note": "EdgeLab's time includes hashing on the device to verify the push",
                }
            )
            print(name, rows[name], flush=True)
    return rows


def orchestration(lab: VirtualLab, rounds: int) -> dict[str, Any]:
    """Wall time of one Lab.benchmark() minus what the agent itself reports (load, first
    inference, warm-up, timed loop): transport, deploy check, argv, JSON, and the agent process
    starting Python and importing numpy and the runtime."""
    rows: dict[str, Any] = {}
    protocol = LatencyProtocol(
        warmup_iters=1, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=10.0, idle_s=0.0, sample_period_s=0.0
    )
    variant = variants_for("silero_vad")[0]
    with tempfile.TemporaryDirectory() as folder:
        session = Lab(lab.fleet(), reports_dir=Path(folder), selected=["virtual-rpi5", "virtual-pixel8"])
        for name in ("virtual-rpi5", "virtual-pixel8"):
            session.benchmark(name, variant, protocol, energy="none")  # connect, deploy: not counted
            overheads, startups = [], []
            for _ in range(rounds * 3):
                started = time.perf_counter()
                result, _deploy = session.benchmark(name, variant, protocol, energy="none")
                wall = time.perf_counter() - started
                inside = (result.load_ms + result.first_inference_ms) / 1e3 + sum(
                    result.latency_samples_ns
                ) / 1e9
                overheads.append(wall - inside)
            device = session.device(name)
            for _ in range(rounds * 3):
                startups.append(
                    timed(
                        lambda d=device: d.transport.run(
                            [d.config.python, "-c", "import numpy, onnxruntime"], timeout=60
                        )
                    )
                )
            rows[name] = {
                "overhead_ms_median": round(statistics.median(overheads) * 1e3, 1),
                "python_numpy_onnxruntime_import_ms_median": round(statistics.median(startups) * 1e3, 1),
                "overhead_without_interpreter_start_ms": round(
                    (statistics.median(overheads) - statistics.median(startups)) * 1e3, 1
                ),
            }
            print(name, rows[name], flush=True)
        session.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    lab = VirtualLab()
    if not lab.is_up():
        raise SystemExit("no virtual lab is up: run `edgelab lab up --profile pixel8 --profile rpi5` first")
    figures = {
        "host": platform.node(),
        "size_mb": arguments.size_mb,
        "deployment": deployment(lab, arguments.size_mb, arguments.rounds),
        "orchestration": orchestration(lab, arguments.rounds),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=1))
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
