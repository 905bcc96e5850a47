"""Wall time of one fixed suite on 1, 2 and 4 virtual devices in parallel (goal: 4 devices <= 1.3x one).

Run (as root, after ``pip install -e .``)::

    python benchmarks/scaling.py [--counts 1 2 4] [--profile pixel8|rpi5]

For each count a lab of that many devices of one profile (virtual Pixel 8s, 1.0 CPU each, by
default; ``--profile rpi5``: boards of 0.5 CPU over SSH) is started in its own folder,
``pytest suites/ocr --precision=fp32 -n auto`` runs on all of them (one xdist worker per device),
and the lab is brought down. Writes benchmarks/results/scaling.json with the host's CPU count:
virtual devices share the host's cores, so on a host with fewer cores than devices the ratio
measures that contention, not the harness.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.lab.manager import VirtualLab

RESULTS = Path(__file__).parent / "results" / "scaling.json"
ROOT = Path(__file__).resolve().parents[1]


def run_on(count: int, profile: str) -> float:
    folder = Path.home() / ".cache" / "edgelab" / "bench-labs" / f"scaling-{profile}-{count}"
    lab = VirtualLab(folder)
    try:
        state = lab.up([profile] * count)
        names = ",".join(device.name for device in state.devices)
        command = [
            sys.executable, "-m", "pytest", "suites/ocr", "--precision=fp32", f"--device={names}",
            "-n", "auto", "-q", "-p", "no:cacheprovider", "--no-report", "--results-db=none",
            "--min-s=2", "--min-iters=50",
        ]  # fmt: skip
        environment = {**os.environ, "EDGELAB_LAB_DIR": str(folder)}
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=environment, check=True, capture_output=True)
        return time.perf_counter() - started
    finally:
        lab.down(purge=True)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--profile", default="pixel8", choices=["pixel8", "rpi5", "jetson-orin-nano"])
    arguments = parser.parse_args()
    walls = {}
    for count in arguments.counts:
        walls[count] = round(run_on(count, arguments.profile), 2)
        print(f"{count} device(s): {walls[count]} s", flush=True)
    base = walls[arguments.counts[0]]
    figures = {
        "host": platform.node(),
        "host_cpus": os.cpu_count(),
        "profile": arguments.profile,
        "suite": "suites/ocr --precision=fp32 (ppocr_det, ppocr_rec)",
        "wall_s": walls,
        "ratio_to_one_device": {count: round(wall / base, 3) for count, wall in walls.items()},
    }
    name = "scaling.json" if arguments.profile == "pixel8" else f"scaling-{arguments.profile}.json"
    results = RESULTS.with_name(name)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
