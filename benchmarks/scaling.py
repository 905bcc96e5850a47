"""Wall time of one fixed suite on N virtual devices in parallel, and the host's own CPU per device.

Run (as root, after ``pip install -e .``)::

    python benchmarks/scaling.py [--counts 1 2 4 8] [--profile pixel8@0.2] [--min-s 2]

For each count a lab of that many devices of one profile (``NAME@CORES`` sets each device's CPU
quota: ``pixel8@0.2`` is eight small phones that leave a 2-core host room for the harness) is
started in its own folder, ``pytest suites/ocr --precision=fp32 -n auto`` runs on all of them
(one xdist worker per device), and the lab is brought down. Goals: N devices <= 1.3x one device's
wall time, and <= 0.02 core of host CPU per device.

Host CPU is what the harness's own processes used: pytest, its xdist workers and their threads
(transport, channel readers), and the adb server that relays every ADB byte (getrusage of the
reaped pytest tree, /proc of the adb server). ``startup`` is the same command selecting no test
(the same workers start, import and collect: 2-7 s of CPU each, more where
PYTHONDONTWRITEBYTECODE keeps pytest from caching its rewritten modules), so ``measuring`` is
what driving the devices costs. Per device-minute: CPU seconds / (devices x wall minutes).
``host_cores`` says where the host's cores went during the run (/proc/stat): the devices' own
processes (their cgroups' cpuacct, capped by the quota), the lab's device processes outside the
quota (each device's supervisor: the virtual adbd and the sensor loop, what a real lab does not
spend on its host), the harness, and the rest.
Writes benchmarks/results/scaling-<profile>.json with the host's CPU count and load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.lab.manager import VirtualLab
from harness.lab.sensors import DeviceCgroup

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(pid: int) -> float:
    """utime + stime of one live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _host_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


def _pytest(
    names: str, min_s: float, min_iters: int, environment: dict[str, str], collect_only: bool
) -> tuple[float, float]:
    """(wall s, host CPU s of the pytest tree) of one run of the suite."""
    command = [
        sys.executable, "-m", "pytest", "suites/ocr", "--precision=fp32", f"--device={names}",
        "-n", "auto", "-q", "-p", "no:cacheprovider", "--no-report", "--results-db=none",
        f"--min-s={min_s:g}", f"--min-iters={min_iters}",
    ]  # fmt: skip
    if collect_only:  # every worker starts, imports and collects; no test is selected
        command += ["-k", "edgelab_scaling_selects_no_test"]
    cpu = _children_cpu_s()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=environment, check=False, capture_output=True, text=True)
    if done.returncode != (5 if collect_only else 0):  # 5: no test ran
        raise SystemExit(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-6000:]}{done.stderr[-2000:]}"
        )
    return time.perf_counter() - started, _children_cpu_s() - cpu


def run_on(count: int, profile: str, min_s: float, min_iters: int) -> dict[str, Any]:
    folder = Path.home() / ".cache" / "edgelab" / "bench-labs" / f"scaling-{profile}-{count}"
    lab = VirtualLab(folder)
    try:
        state = lab.up([profile] * count)
        names = ",".join(device.name for device in state.devices)
        environment = {**os.environ, "EDGELAB_LAB_DIR": str(folder)}
        _, startup_cpu = _pytest(names, min_s, min_iters, environment, collect_only=True)
        adb_before = _process_cpu_s(state.adb_pid) if state.adb_pid else 0.0
        load_before = os.getloadavg()[0]
        cgroups = [DeviceCgroup(device.cgroup) for device in state.devices if device.cgroup]
        deadline = time.monotonic() + 30  # each device makes its cgroup as it starts
        while not all((group.cpuacct / "cpuacct.usage").exists() for group in cgroups):
            if time.monotonic() > deadline:
                raise SystemExit(f"the devices' cgroups did not appear: {[str(g.cpuacct) for g in cgroups]}")
            time.sleep(0.2)
        devices_before = sum(group.usage_ns() for group in cgroups) / 1e9
        lab_before = sum(_process_cpu_s(device.pid) for device in state.devices)
        busy_before = _host_busy_s()
        wall, cpu = _pytest(names, min_s, min_iters, environment, collect_only=False)
        adb = (_process_cpu_s(state.adb_pid) - adb_before) if state.adb_pid else 0.0
        busy = _host_busy_s() - busy_before
        devices_cpu = sum(group.usage_ns() for group in cgroups) / 1e9 - devices_before
        lab_cpu = sum(_process_cpu_s(device.pid) for device in state.devices) - lab_before
        device_minutes = count * wall / 60
        measuring = max(cpu - startup_cpu, 0.0) + adb
        return {
            "wall_s": round(wall, 2),
            "host_cpu_s": {
                "pytest_tree": round(cpu, 2),
                "startup": round(startup_cpu, 2),
                "adb_server": round(adb, 2),
            },
            "host_core_per_device": {
                "all": round((cpu + adb) / (count * wall), 4),
                "measuring": round(measuring / (count * wall), 4),
            },
            "host_cpu_s_per_device_minute": round((cpu + adb) / device_minutes, 3),
            "host_cores": {
                "busy": round(busy / wall, 3),
                "devices_in_quota": round(devices_cpu / wall, 3),
                "lab_outside_quota": round(lab_cpu / wall, 3),
                "harness": round((cpu + adb) / wall, 3),
                "of": os.cpu_count(),
            },
            "load_1m_before": load_before,
        }
    finally:
        lab.down(purge=True)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--profile", default="pixel8", help="a lab profile, NAME or NAME@CORES")
    parser.add_argument("--min-s", type=float, default=2.0, help="timed seconds per test")
    parser.add_argument("--min-iters", type=int, default=50, help="timed iterations per test")
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args()
    rows = {}
    for count in arguments.counts:
        rows[count] = run_on(count, arguments.profile, arguments.min_s, arguments.min_iters)
        print(f"{count} device(s): {json.dumps(rows[count])}", flush=True)
    base = rows[arguments.counts[0]]["wall_s"]
    figures = {
        "host": platform.node(),
        "host_cpus": os.cpu_count(),
        "profile": arguments.profile,
        "suite": f"suites/ocr --precision=fp32 --min-s={arguments.min_s:g} --min-iters={arguments.min_iters}",
        "runs": rows,
        "wall_s": {count: row["wall_s"] for count, row in rows.items()},
        "ratio_to_one_device": {count: round(row["wall_s"] / base, 3) for count, row in rows.items()},
    }
    tag = arguments.profile.replace("@", "-at-")
    name = "scaling.json" if arguments.profile == "pixel8" else f"scaling-{tag}.json"
    results = arguments.output or RESULTS / name
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
