"""Repeatability of the device speed reference (harness/probes/reference.py) on this host.

Run: ``python benchmarks/speed_reference.py [--calls 20] [--shell mksh]``. Two arms, interleaved
A B B A ...: ``quiet`` (the reference alone) and ``other-core-busy`` (a busy shell loop pinned
with taskset to the core the reference is not pinned to). Reports, per arm, the medians of the
calls, their spread ((max - min) / median) and CV, and the ratio of the arms' medians; the
load average is recorded beside them (other users load this host). Writes
benchmarks/results/speed_reference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from harness.probes.reference import ITERATIONS, REPETITIONS, measure_reference
from harness.transport.local import LocalTransport

RESULTS = Path(__file__).parent / "results" / "speed_reference.json"


class PinnedShell(LocalTransport):
    """The local device with every command pinned to one core (``taskset MASK``)."""

    def __init__(self, cpu: int) -> None:
        super().__init__("local")
        self.mask = format(1 << cpu, "x")

    def run(self, argv, **kwargs):  # type: ignore[no-untyped-def, override]
        return super().run(["taskset", self.mask, *argv], **kwargs)


def busy_loop(cpu: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", format(1 << cpu, "x"), "sh", "-c", "while :; do :; done"])


def summary(medians: list[float]) -> dict[str, float]:
    middle = statistics.median(medians)
    return {
        "median_of_medians_ms": round(middle, 3),
        "spread": round((max(medians) - min(medians)) / middle, 4),
        "cv": round(statistics.stdev(medians) / statistics.mean(medians), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--shell", default="mksh")
    arguments = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs two cores: one for the reference, one to load")
    reference_cpu, other_cpu = cpus[0], cpus[1]
    transport = PinnedShell(reference_cpu)
    arms: dict[str, list[float]] = {"quiet": [], "other-core-busy": []}
    loads: list[float] = []
    for index in range(arguments.calls):
        order = ["quiet", "other-core-busy"] if index % 2 == 0 else ["other-core-busy", "quiet"]
        for arm in order:
            hog = busy_loop(other_cpu) if arm == "other-core-busy" else None
            try:
                time.sleep(0.05 if hog else 0)
                arms[arm].append(measure_reference(transport, shell=arguments.shell).median_ms)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
        loads.append(os.getloadavg()[0])
    report = {
        "shell": arguments.shell,
        "iterations": ITERATIONS,
        "repetitions": REPETITIONS,
        "calls": arguments.calls,
        "reference_cpu": reference_cpu,
        "busy_cpu": other_cpu,
        "host": platform.node(),
        "loadavg_1m": {"min": min(loads), "max": max(loads)},
        "arms": {arm: {**summary(values), "medians_ms": values} for arm, values in arms.items()},
    }
    medians = {arm: statistics.median(values) for arm, values in arms.items()}
    report["busy_over_quiet"] = round(medians["other-core-busy"] / medians["quiet"], 4)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "arms"}, indent=2))
    for arm, values in report["arms"].items():
        print(arm, {k: v for k, v in values.items() if k != "medians_ms"})


if __name__ == "__main__":
    main()
