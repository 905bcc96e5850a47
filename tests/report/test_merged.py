"""One report over runs made together on several lab hosts, read from one results database."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.record import RunInfo
from harness.report.data import RunReport, merged
from harness.store.db import ResultsStore
from tests.factories import make_record


def run(run_id: str, host: str, device: str, **fields: object) -> RunInfo:
    values = {
        "id": run_id,
        "started_at": f"2026-11-30T12:00:0{run_id[-1]}Z",
        "git_commit": "abc",
        "host": host,
    }
    values |= {"devices": (device,), "complete": True, "finished_at": f"2026-11-30T12:10:0{run_id[-1]}Z"}
    return RunInfo(**(values | fields))  # type: ignore[arg-type]


def test_merged_keeps_every_record_under_a_run_named_after_all():
    first = RunReport(run("r1", "lab-a", "pixel8-a"), [make_record("r1", device="pixel8-a")])
    second = RunReport(run("r2", "lab-b", "rpi5-b"), [make_record("r2", device="rpi5-b", seed=1)])
    together = merged([first, second])
    assert together.run.id == "r1+r2"
    assert together.run.host == "lab-a, lab-b"
    assert together.run.devices == ("pixel8-a", "rpi5-b")
    assert (together.run.started_at, together.run.finished_at) == (
        "2026-11-30T12:00:01Z",
        "2026-11-30T12:10:02Z",
    )
    assert [(r.run_id, r.device) for r in together.records] == [("r1", "pixel8-a"), ("r2", "rpi5-b")]


def test_runs_of_different_commits_are_not_merged():
    first = RunReport(run("r1", "lab-a", "a"), [])
    other = RunReport(run("r2", "lab-b", "b", git_commit="def"), [])
    with pytest.raises(ValueError, match="different commits"):
        merged([first, other])


def test_edgelab_report_merge_writes_one_report_from_the_database(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = ResultsStore(url)
    for run_id, host, device in (("r1", "lab-a", "pixel8-a"), ("r2", "lab-b", "rpi5-b")):
        store.write_run(run(run_id, host, device))
        store.write_record(make_record(run_id, device=device))
    store.close()
    code = main(
        ["report", "--reports-dir", str(tmp_path), "--results-db", url, "--merge", "r1", "--merge", "r2"]
    )
    assert code == 0
    summary = (tmp_path / "r1+r2" / "summary.md").read_text()
    assert "Run `r1+r2`" in summary and "2 result(s)" in summary
    html = (tmp_path / "r1+r2" / "index.html").read_text()
    assert "pixel8-a" in html and "rpi5-b" in html
    assert "report:" in capsys.readouterr().out


def test_a_run_missing_from_the_database_is_named(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = ResultsStore(url)
    store.write_run(run("r1", "lab-a", "a"))
    store.close()
    code = main(
        ["report", "--reports-dir", str(tmp_path), "--results-db", url, "--merge", "r1", "--merge", "nope"]
    )
    assert code != 0
    assert "run nope: not in the results database" in capsys.readouterr().err
