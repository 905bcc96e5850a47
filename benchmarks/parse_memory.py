"""Memory and time of ``edgelab parse``: peak RSS and wall time of one CLI call on a large input.

Run: ``python benchmarks/parse_memory.py [--mb 100] [--rounds 1] [--baseline-src DIR]`` (after
``pip install -e .``). The input is built from the real Orin Nano tegrastats captures in
tests/fixtures/real-outputs (a timestamp per line, 100 ms apart) and written to a temporary file;
``edgelab parse tegrastats`` runs in a child process with its JSON sent to /dev/null, and the
child's own peak RSS comes from ``wait4``. With ``--baseline-src`` (a folder holding another
version of the ``harness`` package, e.g. ``git archive main harness | tar -x -C /tmp/main``), that
version runs too, alternating with this one on the same file, so the wall-time ratio holds while
other work loads the machine. Writes benchmarks/results/parse_memory.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "tests" / "fixtures" / "real-outputs" / "tegrastats" / "orin_nano_8gb_jp6_two_captures.txt"
RESULTS = Path(__file__).parent / "results" / "parse_memory.json"
MB = 1_000_000


def tegrastats_file(path: Path, size_mb: float) -> int:
    """Real tegrastats lines, one per 100 ms, until the file holds ``size_mb`` MB; returns lines."""
    bodies = [line.split(" ", 2)[2] for line in CAPTURE.read_text().splitlines() if line.strip()]
    clock = datetime.datetime(2026, 11, 30, 15, 6, 18)
    written = lines = 0
    with path.open("w", encoding="utf-8") as handle:
        while written < size_mb * MB:
            line = f"{clock:%m-%d-%Y %H:%M:%S} {bodies[lines % len(bodies)]}\n"
            handle.write(line)
            written += len(line)
            lines += 1
            clock += datetime.timedelta(milliseconds=100)
    return lines


def run_parse(kind: str, path: Path, source: str | None) -> dict[str, float | int | str]:
    """One ``edgelab parse`` in a child process: exit code, wall seconds, peak RSS (MB)."""
    environment = dict(os.environ)
    if source is not None:
        environment["PYTHONPATH"] = source
    command = [sys.executable, "-m", "harness.cli", "parse", kind, str(path)]
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        child = subprocess.Popen(  # run from the input's folder: the current folder comes first on sys.path
            command, stdout=sink, stderr=subprocess.PIPE, env=environment, cwd=path.parent
        )
        _, status, usage = os.wait4(child.pid, 0)
    wall_s = time.perf_counter() - started
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    return {
        "exit_code": os.waitstatus_to_exitcode(status),
        "wall_s": round(wall_s, 2),
        "peak_rss_mb": round(usage.ru_maxrss * 1024 / MB, 1),  # ru_maxrss is in KiB on Linux
        "stderr": stderr.strip()[-300:],
    }


def summary(runs: list[dict[str, float | int | str]]) -> dict[str, float]:
    return {
        "wall_s_median": statistics.median(float(run["wall_s"]) for run in runs),
        "peak_rss_mb_median": statistics.median(float(run["peak_rss_mb"]) for run in runs),
    }


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--mb", type=float, default=100.0, help="input size in MB (10^6 bytes)")
    options.add_argument("--kind", default="tegrastats", help="the kind given to edgelab parse")
    options.add_argument("--rounds", type=int, default=1, help="runs of each version, alternating")
    options.add_argument("--baseline-src", help="a folder with another version of the harness package")
    options.add_argument("--label", default="", help="a note stored with the figures")
    arguments = options.parse_args()
    sides = {"this": None, **({"baseline": arguments.baseline_src} if arguments.baseline_src else {})}
    runs: dict[str, list[dict[str, float | int | str]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tegrastats.log"
        lines = tegrastats_file(path, arguments.mb)
        size = path.stat().st_size
        for _ in range(arguments.rounds):
            for side, source in sides.items():
                runs[side].append(run_parse(arguments.kind, path, source))
                print(side, json.dumps(runs[side][-1]), flush=True)
    row: dict[str, object] = {
        "label": arguments.label,
        "kind": arguments.kind,
        "input_mb": round(size / MB, 1),
        "input_lines": lines,
        "runs": runs,
        **{side: summary(side_runs) for side, side_runs in runs.items()},
        "load_average": os.getloadavg(),
    }
    if "baseline" in runs:
        this, baseline = summary(runs["this"]), summary(runs["baseline"])
        row["wall_ratio_this_to_baseline"] = round(this["wall_s_median"] / baseline["wall_s_median"], 3)
        row["rss_ratio_this_to_baseline"] = round(
            this["peak_rss_mb_median"] / baseline["peak_rss_mb_median"], 4
        )
    print(json.dumps(row, indent=1))
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    report.update({"host": platform.node(), "python": platform.python_version()})
    report["rows"].append(row)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
