"""A reused run id whose results.json is corrupt: the new measurement is kept, the old file is
set aside (never overwritten, never appended to) and a warning names it."""

from __future__ import annotations

import json

import pytest

from harness.record import RunInfo
from harness.store.results_json import CorruptResultsWarning, ResultsFile
from tests.factories import make_record

RUN = RunInfo(id="x", started_at="2026-11-30T12:00:00Z")

CORRUPT = [b'{"schema_version": 1, "run": {"id": "x"}, "results": [{"test": "a"', b"\x00\xff garbage", b"[1, 2]", b"{}"]


@pytest.mark.parametrize("content", CORRUPT)
def test_a_corrupt_document_is_set_aside_and_a_fresh_one_started(tmp_path, content):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "results.json").write_bytes(content)
    with pytest.warns(CorruptResultsWarning, match=r"results\.json: .*kept it as results\.json\.corrupt-"):
        results = ResultsFile.create(tmp_path, "x", RUN)
    results.append(make_record(test="new"))
    assert [r.test for r in results.records()] == ["new"] and results.run() == RUN
    [aside] = (tmp_path / "x").glob("results.json.corrupt-*")
    assert aside.read_bytes() == content


def test_a_document_damaged_during_the_run_keeps_the_next_record(tmp_path):
    results = ResultsFile.create(tmp_path, "x", RUN)
    results.append(make_record(test="first"))
    results.path.write_text('{"results": [')
    with pytest.warns(CorruptResultsWarning):
        results.append(make_record(test="second"))
    assert [r.test for r in results.records()] == ["second"]
    assert json.loads(results.path.read_text())["run"] == RUN.to_json()


def test_a_run_reusing_the_id_of_a_corrupt_results_json_keeps_its_measurement(pytester):
    pytester.makepyfile(
        test_edge="""
import pytest

@pytest.mark.edge(model="silero_vad", precisions=["fp32"])
def test_latency(edge):
    edge.benchmark()
"""
    )
    run_dir = pytester.path / "reports" / "x"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text('{"schema_version": 1, "results": [')
    run = pytester.runpytest_subprocess(
        "--warmup-iters=1", "--min-iters=3", "--min-s=0", "--warmup-s=0", "-p", "no:cacheprovider",
        "--run-id=x", "--results-db=none", "--no-report",
    )  # fmt: skip
    run.assert_outcomes(passed=1, warnings=1)
    assert "CorruptResultsWarning" in run.stdout.str()
    document = json.loads((run_dir / "results.json").read_text())
    assert [r["status"] for r in document["results"]] == ["passed"]
    assert len(list(run_dir.glob("results.json.corrupt-*"))) == 1
