"""Host memory of ``pytest suites/accuracy`` on a cold cache: the peak resident set (VmHWM) of
the pytest process while it builds evaluation sets, fp32 references and precision variants.

Run (after ``pip install -e .``, from the repository root)::

    python benchmarks/cold_cache_memory.py [--keep-cache DIR] [--cold-only] [-- PYTEST ARGS]

The cache is a fresh folder holding only the zoo's models (copied from the usual cache, or
fetched), so every evaluation set, reference and variant is built again. pytest runs in a child
process that prints its own VmHWM at exit; the figure is that line. A second run on the now warm
cache follows (unless --cold-only). Goal: under 2 GB on the cold run.
Writes benchmarks/results/cold_cache_memory.json after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.models import zoo

RESULTS = Path(__file__).parent / "results" / "cold_cache_memory.json"
GOAL_MB = 2048

# Runs pytest in this very process and prints the process's VmHWM at the end, so the figure is the
# pytest process's own peak (pip or espeak-ng children are not in it).
_CHILD = r"""
import sys, pytest
code = pytest.main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = next(line for line in status if line.startswith("VmHWM:"))
print("EDGELAB-VMHWM-KB", int(peak.split()[1]), flush=True)
sys.exit(int(code))
"""


def cold_cache(folder: Path) -> None:
    """Only the models: copied from the usual cache when they are there, else fetched."""
    usual = zoo.cache_dir() / "models"
    for spec in zoo.all_models():
        source = usual / spec.sha256 / spec.filename
        target = folder / "models" / spec.sha256 / spec.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_file():
            shutil.copyfile(source, target)
        else:
            zoo.fetch(spec, cache=folder)


def run(cache: Path, reports: Path, pytest_args: list[str]) -> dict[str, Any]:
    environment = dict(os.environ, EDGELAB_CACHE=str(cache))
    command = [
        sys.executable,
        "-c",
        _CHILD,
        "suites/accuracy",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--reports-dir={reports}",
        "--results-db=none",
        "--no-report",
        *pytest_args,
    ]
    started = time.perf_counter()
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    marker = [line for line in completed.stdout.splitlines() if line.startswith("EDGELAB-VMHWM-KB")]
    tail = [line for line in completed.stdout.splitlines() if line.strip()][-3:]
    return {
        "pytest_exit": completed.returncode,
        "vmhwm_mb": round(int(marker[-1].split()[1]) / 1024, 1) if marker else None,
        "wall_s": round(elapsed, 1),
        "pytest_tail": tail,
        "stderr_tail": completed.stderr.strip()[-800:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-cache", default=None, help="build the cold cache here and keep it")
    parser.add_argument("--no-write", action="store_true", help="print the figures, do not write json")
    parser.add_argument("--cold-only", action="store_true", help="skip the second (warm) run")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    arguments = parser.parse_args()
    figures: dict[str, Any] = {
        "host": platform.node(),
        "python": platform.python_version(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "goal_mb": GOAL_MB,
    }

    def report(phase: str, result: dict[str, Any]) -> None:
        """Each run's figures as soon as it ends: a long benchmark stopped later keeps them."""
        figures[phase] = result
        print(json.dumps({phase: result}), flush=True)
        if not arguments.no_write:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(figures, indent=1) + "\n")

    with tempfile.TemporaryDirectory(prefix="edgelab-cold-") as scratch:
        cache = Path(arguments.keep_cache) if arguments.keep_cache else Path(scratch) / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        cold_cache(cache)
        report("cold", run(cache, Path(scratch) / "reports-cold", arguments.pytest_args))
        if not arguments.cold_only:
            report("warm", run(cache, Path(scratch) / "reports-warm", arguments.pytest_args))
    cold = figures["cold"]
    return 0 if cold["pytest_exit"] == 0 and (cold["vmhwm_mb"] or GOAL_MB + 1) <= GOAL_MB else 1


if __name__ == "__main__":
    sys.exit(main())
