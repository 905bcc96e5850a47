"""A broken or unreachable results store is the store's problem, not the devices': the run refuses
to start with a clear usage error (or goes on without the database once started), no device is
quarantined for it, and nothing measured is lost."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

FAST = ["--warmup-iters=1", "--warmup-s=0", "--min-iters=5", "--min-s=0", "--max-s=10", "-p", "no:cacheprovider"]
TEST = """
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()
"""


def test_a_garbage_results_db_is_a_usage_error_and_quarantines_nothing(pytester):
    from harness import health

    pytester.makepyfile(test_edge=TEST)
    database = pytester.path / "reports" / "results.db"
    database.parent.mkdir()
    database.write_bytes(b"this is not a database\n" * 50)
    for _ in range(4):  # more runs than it takes to quarantine a device
        run = pytester.runpytest(*FAST)
        assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*edgelab: --results-db: results database sqlite:///*results.db*not an SQLite database*"])
    assert "INTERNALERROR" not in run.stdout.str() + run.stderr.str()
    assert not health.status("local").get("quarantined") and not health.status("local").get("failures")
    assert database.read_bytes().startswith(b"this is not a database")  # never recreated empty


def test_an_empty_results_db_is_refused_not_recreated(pytester):
    pytester.makepyfile(test_edge=TEST)
    database = pytester.path / "reports" / "results.db"
    database.parent.mkdir()
    database.write_bytes(b"")
    run = pytester.runpytest(*FAST)
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*is empty (0 bytes), so its history is gone; restore it from a backup*"])
    assert database.stat().st_size == 0


def test_an_unreachable_postgresql_is_a_usage_error_with_the_password_hidden(pytester):
    pytester.makepyfile(test_edge=TEST)
    run = pytester.runpytest(*FAST, "--results-db=postgresql://edgelab:s3cret@127.0.0.1:1/lab")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*edgelab: --results-db: results database postgresql+psycopg://edgelab:***@127.0.0.1:1/lab: cannot open it*"])
    assert "s3cret" not in run.stdout.str() + run.stderr.str()


def test_a_database_locked_during_the_run_loses_nothing_and_is_reconciled_next_time(pytester):
    """The run goes on when the database cannot be written: every result stays in results.json,
    the run folder is marked, and the next run stores what is missing."""
    pytester.makepyfile(test_edge=TEST)
    database = pytester.path / "reports" / "results.db"
    url = f"sqlite:///{database}?timeout=1"
    pytester.runpytest(*FAST, f"--results-db={url}", "--run-id=first").assert_outcomes(passed=1)
    holder = sqlite3.connect(database, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the database for the whole next run
    try:
        run = pytester.runpytest(*FAST, f"--results-db={url}", "--run-id=locked")
    finally:
        holder.rollback()
        holder.close()
    run.assert_outcomes(passed=1)
    run.stderr.fnmatch_lines(["*results stay in *locked/results.json and go into the database at the next run*"])
    (record,) = json.loads((pytester.path / "reports" / "locked" / "results.json").read_text())["results"]
    assert record["status"] == "passed" and (pytester.path / "reports" / "locked" / ".unstored").exists()
    pytester.runpytest(*FAST, f"--results-db={url}", "--run-id=third").assert_outcomes(passed=1)
    from harness.store.db import ResultsStore

    store = ResultsStore(url)
    try:
        assert sorted(r.id for r in store.runs()) == ["first", "locked", "third"]
        (stored,) = store.records("locked")
        assert stored.finished_at == record["finished_at"] and stored.latency_samples_ms is not None
    finally:
        store.close()
    assert not (pytester.path / "reports" / "locked" / ".unstored").exists()
    threading.enumerate()  # nothing left to join


def test_a_run_id_that_leaves_the_reports_folder_is_a_usage_error(pytester):
    pytester.makepyfile(test_edge=TEST)
    run = pytester.runpytest(*FAST, "--run-id=../../escape")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*--run-id '../../escape': use 1-64 letters*"])
    assert not (pytester.path.parent.parent / "escape").exists()
