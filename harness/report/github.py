"""Post or update EdgeLab's one PR comment with the GitHub CLI (``gh``), found by its marker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from harness.errors import EdgeLabError
from harness.report.markdown import MARKER


def _pr_from_event() -> int | None:
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            event = json.load(handle)
    except (OSError, ValueError):
        return None
    number = (event.get("pull_request") or {}).get("number") or event.get("number")
    return int(number) if number else None


def default_report_url() -> str | None:
    """In GitHub Actions: the workflow run's page, where the uploaded report artifact is listed."""
    server, repo, run = (
        os.environ.get(name) for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None


def _gh(*args: str, stdin: str | None = None) -> str:
    completed = subprocess.run(
        ["gh", *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if completed.returncode != 0:
        raise EdgeLabError(
            f"gh {' '.join(args[:2])} failed: {completed.stderr.strip() or completed.stdout.strip()}"
        )
    return completed.stdout


def post_comment(body: str, *, pr: int | None = None, repo: str | None = None) -> str:
    """Update the comment that carries MARKER, or create it. Returns what was done."""
    if shutil.which("gh") is None:
        raise EdgeLabError("--post needs the GitHub CLI: install gh and set GH_TOKEN (or run without --post)")
    repo = repo or os.environ.get("GITHUB_REPOSITORY")
    pr = pr or _pr_from_event()
    if not repo or not pr:
        raise EdgeLabError("--post needs --repo OWNER/NAME and --pr N (or a GitHub pull_request event)")
    select = f'.[] | select(.body | contains("{MARKER}")) | .id'
    found = _gh("api", f"repos/{repo}/issues/{pr}/comments", "--paginate", "--jq", select).split()
    payload = json.dumps({"body": body})
    if found:
        target = f"repos/{repo}/issues/comments/{found[0]}"
        _gh("api", "--method", "PATCH", target, "--input", "-", stdin=payload)
        return f"updated comment {found[0]} on {repo}#{pr}"
    _gh("api", "--method", "POST", f"repos/{repo}/issues/{pr}/comments", "--input", "-", stdin=payload)
    return f"created a comment on {repo}#{pr}"
