"""The results store on SQLite and on a real PostgreSQL server: same code, same answers."""

from __future__ import annotations

import pytest

from harness.probes.thermal import ThrottleVerdict
from harness.record import RunInfo
from harness.store.db import ResultsStore, StoreError
from tests.factories import make_record


def record(run_id: str, device: str = "pixel8", median: float = 10.0, status: str = "passed"):
    return make_record(
        run_id,
        device=device,
        model="ppocr_det",
        median_ms=median,
        n=3,
        status=status,
        test=f"suites/x.py::test[{device}-ppocr_det-onnxruntime-fp32]",
        throttle=ThrottleVerdict(True, ("frequency cap: policy0",), 1.0, 60.0, 0.5, None),
    )


def run(run_id: str, branch: str = "main", started: str = "2026-11-24T22:00:00Z") -> RunInfo:
    return RunInfo(id=run_id, started_at=started, git_branch=branch, git_commit="c0ffee", devices=("pixel8",))


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
    assert [r.device for r in records] == ["pixel8", "rpi5"]
    assert records[1].latency_samples_ms == record("r1", median=20.0).latency_samples_ms
    assert records[1] == record("r1", device="rpi5", median=20.0)  # every field round-trips
    assert records[0].throttle is not None and records[0].throttle.throttled is True
    assert store.records("r1", with_samples=False)[0].latency_samples_ms is None
    assert store.run_info("r1") == run("r1")


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
    identity = record("x").identity()
    assert store.latest_run_with(branch="main", identity=identity) == "b"
    assert store.latest_run_with(branch="main", identity=identity, before="b") == "a"
    assert store.latest_run_with(branch="main", identity=record("x", device="rpi5").identity()) is None
    other_kind = record("x").model_copy(update={"kind": "sustained"}).identity()
    assert store.latest_run_with(branch="main", identity=other_kind) is None  # another protocol
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


def test_a_damaged_sqlite_file_is_refused_never_recreated_empty(tmp_path):
    path = tmp_path / "results.db"
    path.write_bytes(b"")
    with pytest.raises(StoreError, match=r"is empty \(0 bytes\), so its history is gone; restore it"):
        ResultsStore(f"sqlite:///{path}")
    assert path.read_bytes() == b""  # left as it was
    path.write_bytes(b"garbage, not a database" * 100)
    with pytest.raises(StoreError, match="is not an SQLite database"):
        ResultsStore(f"sqlite:///{path}")
    good = ResultsStore(f"sqlite:///{tmp_path / 'good.db'}")
    good.write_run(run("r1"))
    good.write_record(record("r1"))
    good.close()
    whole = (tmp_path / "good.db").read_bytes()
    (tmp_path / "truncated.db").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(StoreError):
        opened = ResultsStore(f"sqlite:///{tmp_path / 'truncated.db'}")
        opened.records("r1")


def test_a_schema_1_database_is_upgraded_and_its_runs_stay_baselines(tmp_path):
    import json
    import sqlite3

    path = tmp_path / "results.db"
    connection = sqlite3.connect(path)
    connection.executescript(
        """
        CREATE TABLE runs (id VARCHAR(64) PRIMARY KEY, started_at VARCHAR(32), finished_at VARCHAR(32),
          complete BOOLEAN NOT NULL, git_commit VARCHAR(64), git_branch VARCHAR(256), git_dirty BOOLEAN,
          ci_job_id VARCHAR(128), harness_version VARCHAR(32), host VARCHAR(256), devices JSON, metadata JSON);
        CREATE TABLE measurements (id INTEGER PRIMARY KEY, run_id VARCHAR(64) NOT NULL REFERENCES runs(id),
          test TEXT NOT NULL, status VARCHAR(16) NOT NULL, device VARCHAR(256) NOT NULL, model VARCHAR(256),
          variant VARCHAR(512), median_ms FLOAT, record JSON NOT NULL);
        CREATE TABLE samples (measurement_id INTEGER REFERENCES measurements(id), kind VARCHAR(32),
          data JSON NOT NULL, PRIMARY KEY (measurement_id, kind));
        """
    )
    old = {
        "schema_version": 1, "run_id": "old", "test": "suites/x.py::test[pixel8-ppocr_det-onnxruntime-fp32]",
        "status": "passed", "device": "pixel8", "device_kind": "adb", "virtual": True, "model": "ppocr_det",
        "model_sha256": "ab" * 32, "format": "onnx", "runtime": "onnxruntime", "precision": "fp32",
        "threads": 1, "latency_ms": {"median": 10.0, "p90": 11.0, "p99": 12.0, "mean": 10.0, "std": 1.0,
        "cv": 0.1, "min": 9.0, "max": 12.0, "samples": 3}, "peak_rss_mb": 100.0, "load_peak_rss_mb": 90.0,
        "baseline_rss_mb": 50.0, "pss_mb": None, "pss_source": None, "finished_at": "2026-11-24T22:00:00Z",
        "run": {"id": "old", "git_commit": "c", "git_branch": "main", "harness_version": "0.1.0",
        "ci_job_id": None}, "warnings": [], "notes": [], "rounds": 1,
        "thermal": {"verdict": {"throttled": False, "reasons": [], "first_throttle_s": None,
        "max_temp_c": None, "min_ceiling_ratio": None, "drift_ratio": 1.0}, "trace": {"period_s": 0.25,
        "zones": [], "policies": [], "cpuinfo_max_khz": [], "samples": [], "status_kind": None,
        "status": []}, "sample_index": []},
    }  # fmt: skip
    connection.execute(
        "INSERT INTO runs VALUES ('old', '2026-11-24T22:00:00Z', NULL, 1, 'c', 'main', 0, NULL, '0.1.0', "
        "'h', '[\"pixel8\"]', '{}')"
    )
    connection.execute(
        "INSERT INTO measurements (id, run_id, test, status, device, record) VALUES (1, 'old', ?, 'passed', "
        "'pixel8', ?)",
        (old["test"], json.dumps(old)),
    )
    connection.execute("INSERT INTO samples VALUES (1, 'latency_ms', '[9.0, 10.0, 11.0]')")
    connection.commit()
    connection.close()
    store = ResultsStore(f"sqlite:///{path}")
    (upgraded,) = store.records("old")
    assert upgraded.test_id == "suites/x.py::test[ppocr_det-onnxruntime-fp32]" and upgraded.kind == "latency"
    assert upgraded.latency_samples_ms == (9.0, 10.0, 11.0) and upgraded.memory.peak_rss_mb == 100.0
    assert upgraded.throttle.throttled is False
    identity = record("new").identity()
    assert identity == upgraded.identity()
    assert store.latest_run_with(branch="main", identity=identity) == "old"
    store.close()


def test_a_field_added_to_the_record_since_the_database_was_made_becomes_a_column(store):
    """A results.db from before the record had ``cpus`` (schema 2 all along) refused every write
    with "no column named cpus": the column is added in place and the old rows stay baselines."""
    from sqlalchemy import text

    store.write_run(run("old"))
    old = record("old")
    store.write_record(old)
    with store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE measurements DROP COLUMN cpus"))
    store.close()
    reopened = ResultsStore(store.url)
    reopened.write_run(run("new"))
    new = record("new", median=12.0)
    reopened.write_record(new)
    assert [r.latency_ms for r in reopened.records("old")] == [old.latency_ms]
    assert [(r.latency_ms, r.cpus) for r in reopened.records("new")] == [(new.latency_ms, new.cpus)]
    ResultsStore(store.url).close()  # opening again adds nothing twice


def test_a_missing_column_every_record_needs_is_refused_by_name(tmp_path):
    import sqlite3

    path = tmp_path / "results.db"
    ResultsStore(f"sqlite:///{path}").close()
    connection = sqlite3.connect(path)
    connection.execute("ALTER TABLE measurements DROP COLUMN device_kind")
    connection.commit()
    connection.close()
    with pytest.raises(
        StoreError, match=r"table measurements has no column device_kind, .*another --results-db"
    ):
        ResultsStore(f"sqlite:///{path}")
