"""The README starts with the two commands a new user runs; the second is what CI runs.

Checked as text: running them is CI's own job (.ci/run) and the main job's (nox -s suites)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from harness import plugin

ROOT = Path(__file__).resolve().parent.parent


def _first_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "# EdgeLab" and lines[1] == "" and lines[2] == "```bash", (
        "README must start with the commands"
    )
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_starts_with_the_main_job_then_the_tests():
    main_job, tests = _first_block()
    venv = "python3 -m venv .venv && .venv/bin/pip install nox && "  # PEP 668: never the system pip
    assert main_job == venv + ".venv/bin/nox -s suites"
    assert tests == venv + ".venv/bin/nox -s lint tests"


def test_ci_runs_the_readmes_test_command_exactly():
    _, tests = _first_block()
    commands = [
        line
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#") and not re.match(r"(set|cd|export) ", line)
    ]
    assert commands == [tests]


def test_the_main_job_runs_the_suites_on_the_local_device_by_default():
    suites = (ROOT / "noxfile.py").read_text(encoding="utf-8").split("def suites(", 1)[1].split("@nox", 1)[0]
    assert 'session.run("pytest", "suites", "-ra", *session.posargs)' in suites and "--device" not in suites
    assert re.search(r'"--device",\s*default="local"', inspect.getsource(plugin.pytest_addoption))
