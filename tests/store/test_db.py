"""The results store on SQLite and on a real PostgreSQL server: same code, same answers."""

from __future__ import annotations

import pytest

from harness.store.db import ResultsStore, StoreError, variant_key


def record(run_id: str, device: str = "pixel8", median: float = 10.0, status: str = "passed") -> dict:
    return {
        "run_id": run_id,
        "test": f"suites/x.py::test[{device}-ppocr_det-onnxruntime-fp32]",
        "status": status,
        "device": device,
        "device_kind": "adb",
        "virtual": True,
        "model": "ppocr_det",
        "model_sha256": "ab" * 32,
        "format": "onnx",
        "runtime": "onnxruntime",
        "runtime_version": "1.32.0",
        "precision": "fp32",
        "threads": 1,
        "latency_ms": {
            "median": median,
            "p90": median * 1.1,
            "p99": median * 1.2,
            "mean": median,
            "cv": 0.05,
            "samples": 3,
        },
        "latency_samples_ms": [median - 1, median, median + 1],
        "peak_rss_mb": 100.0,
        "energy": {"mj_per_inference": 45.0},
        "thermal": {"verdict": {"throttled": True}, "trace": {"samples": []}},
        "finished_at": "2026-11-24T22:00:00Z",
        "error": None,
    }


def run(run_id: str, branch: str = "main", started: str = "2026-11-24T22:00:00Z") -> dict:
    return {
        "id": run_id,
        "started_at": started,
        "git_branch": branch,
        "git_commit": "c0ffee",
        "devices": ["pixel8"],
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'results.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    opened = ResultsStore(url)
    yield opened
    if request.param == "postgresql":
        from harness.store.db import metadata

        metadata.drop_all(opened.engine)  # each test starts from an empty schema
    opened.close()


def test_two_workers_inserting_the_run_at_once_both_succeed(store):
    """xdist workers start together: one inserts the run between the other's check and insert."""
    from sqlalchemy import event

    other = ResultsStore(store.url)
    raced = []

    def interleave(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO runs") and not raced:
            raced.append(True)
            other.write_run(run("r1"))

    event.listen(store.engine, "before_cursor_execute", interleave)
    try:
        store.write_run(run("r1"))
    finally:
        event.remove(store.engine, "before_cursor_execute", interleave)
        other.close()
    assert raced == [True]
    assert [stored.id for stored in store.runs()] == ["r1"]


def test_round_trip_keeps_records_and_raw_samples(store):
    store.write_run(run("r1"))
    store.write_run(run("r1"))  # a second xdist worker of the same run: no duplicate
    first = store.write_record(record("r1"))
    second = store.write_record(record("r1", device="rpi5", median=20.0))
    assert second > first
    (stored,) = store.runs()
    assert (stored.id, stored.complete, stored.git_branch, stored.devices) == (
        "r1",
        False,
        "main",
        ["pixel8"],
    )
    store.finish_run("r1")
    assert store.run("r1").complete
    records = store.records("r1")
    assert [r["device"] for r in records] == ["pixel8", "rpi5"]
    assert records[1]["latency_samples_ms"] == [19.0, 20.0, 21.0]
    assert records[0]["thermal"]["verdict"]["throttled"] is True
    assert "latency_samples_ms" not in store.records("r1", with_samples=False)[0]


def test_latest_run_on_a_branch_with_the_same_variant(store):
    for run_id, branch, started in (
        ("a", "main", "2026-11-20"),
        ("b", "main", "2026-11-21"),
        ("c", "pr-7", "2026-11-22"),
    ):
        store.write_run(run(run_id, branch, started))
        store.write_record(record(run_id))
    store.write_run(run("d", "main", "2026-11-23"))
    store.write_record(record("d", status="failed"))  # failed runs are no baseline
    key = variant_key(record("x"))
    assert store.latest_run_with(branch="main", device="pixel8", variant=key) == "b"
    assert store.latest_run_with(branch="main", device="pixel8", variant=key, before="b") == "a"
    assert store.latest_run_with(branch="main", device="rpi5", variant=key) is None
    assert [r.id for r in store.runs(branch="main")] == ["d", "b", "a"]


def test_bad_urls_name_the_fix_and_hide_the_password():
    with pytest.raises(
        StoreError, match=r"postgresql\+psycopg://edgelab:\*\*\*@127.0.0.1:1/x: cannot open it .*--results-db"
    ):
        ResultsStore("postgresql://edgelab:s3cret@127.0.0.1:1/x")
    with pytest.raises(StoreError) as raised:
        ResultsStore("postgresql://edgelab:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in str(raised.value)
    with pytest.raises(StoreError, match="cannot open it"):
        ResultsStore("nosuchdb://x")
