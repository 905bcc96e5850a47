"""Results in results.json but not in the database (a process killed between the two writes, a
database that was down) go into the database at the next run, once."""

from __future__ import annotations

from harness.record import RunInfo
from harness.store.db import ResultsStore
from harness.store.reconcile import MARKER, mark_unstored, reconcile
from harness.store.results_json import ResultsFile
from tests.factories import make_record


def test_a_record_written_to_results_json_only_is_stored_at_the_next_run(tmp_path):
    reports = tmp_path / "reports"
    store = ResultsStore(f"sqlite:///{reports / 'results.db'}")
    run = RunInfo(id="killed", started_at="2026-11-30T10:00:00Z", git_branch="main")
    file = ResultsFile.create(reports, "killed", run)
    stored = make_record("killed", seed=1, test="t.py::a[local-m]")
    lost = make_record("killed", seed=2, test="t.py::b[local-m]")
    file.append(stored)
    store.write_run(run)
    store.write_record(stored)
    file.append(lost)  # the process died here, before the database write
    assert [r.test for r in store.records("killed")] == ["t.py::a[local-m]"]
    assert reconcile(store, reports) == 1
    assert [r.test for r in store.records("killed")] == ["t.py::a[local-m]", "t.py::b[local-m]"]
    assert store.records("killed")[1] == lost
    assert reconcile(store, reports) == 0  # once
    store.close()


def test_a_marked_run_the_database_never_saw_is_stored_and_the_mark_removed(tmp_path):
    reports = tmp_path / "reports"
    store = ResultsStore(f"sqlite:///{reports / 'results.db'}")
    run = RunInfo(id="offline", started_at="2026-11-30T10:00:00Z", complete=True)
    ResultsFile.create(reports, "offline", run).append(make_record("offline"))
    mark_unstored(reports, "offline")
    assert reconcile(store, reports) == 1
    (found,) = store.runs()
    assert found.id == "offline" and found.complete
    assert not (reports / "offline" / MARKER).exists()
    assert reconcile(store, reports, skip="offline") == 0
    store.close()
