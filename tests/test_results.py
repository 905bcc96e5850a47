"""harness.results: runs as pandas DataFrames (one row per result, flat columns; samples in long
form), from the SQLite database and from the run folders alike, and `edgelab export`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness import results
from harness.cli import main
from harness.errors import ConfigError
from harness.probes.reference import SpeedReference
from harness.record import RunInfo
from harness.stats import ModesCheck
from harness.store.db import ResultsStore, default_url
from tests.factories import energy, make_record, write_results

# measured on pixel8 only: energy, the two-modes check and the device's speed reference
PIXEL8 = {
    "energy": energy(2.0),
    "modes": ModesCheck(bimodal=True, reason="two modes"),
    "speed_reference": SpeedReference("pixel8", "mksh", "epochrealtime", 200, (4.0, 4.2, 4.1), 4.1, 0.05),
}


def three_runs(reports, *, store: bool):
    """Three runs: 3, 2 and 3 results; the middle one on another branch; energy only on pixel8."""
    layout = {
        "run-1": ("main", [("local", "m1"), ("local", "m2"), ("pixel8", "m1")]),
        "run-2": ("pr-7", [("local", "m1"), ("pixel8", "m1")]),
        "run-3": ("main", [("local", "m1"), ("local", "m2"), ("pixel8", "m1")]),
    }
    database = ResultsStore(default_url(reports)) if store else None
    for day, (run_id, (branch, cells)) in enumerate(layout.items(), start=1):
        records = [
            make_record(
                run_id,
                device=device,
                model=model,
                median_ms=float(day),
                seed=day * 10 + index,
                n=50,
                **(PIXEL8 if device == "pixel8" else {}),
            )
            for index, (device, model) in enumerate(cells)
        ]
        started = f"2026-11-0{day}T02:00:00Z"
        write_results(reports, run_id, records, git_branch=branch, started_at=started)
        if database is not None:
            database.write_run(RunInfo(id=run_id, started_at=started, git_branch=branch, devices=("local",)))
            for record in records:
                database.write_record(record)
    if database is not None:
        database.close()
    return layout


@pytest.mark.parametrize("store", [True, False], ids=["sqlite", "results.json"])
def test_load_gives_one_row_per_result_with_flat_columns(tmp_path, store):
    reports = tmp_path / "reports"
    layout = three_runs(reports, store=store)
    frame = results.load(reports)
    assert len(frame) == sum(len(cells) for _, cells in layout.values()) == 8
    assert list(frame.columns) == list(results.COLUMNS)
    assert frame["run_id"].tolist() == ["run-1"] * 3 + ["run-2"] * 2 + ["run-3"] * 3  # oldest first
    assert not frame.duplicated(["run_id", *results.IDENTITY]).any()  # one row per result
    assert frame["latency_median_ms"].between(0.5, 3.5).all()
    assert isinstance(frame["run_started_at"].dtype, pd.DatetimeTZDtype)
    assert str(frame["run_started_at"].dt.tz) == "UTC"
    # energy measured on pixel8 only: the others are missing, never 0
    pixel8 = frame["device"] == "pixel8"
    assert (frame.loc[pixel8, "energy_mj_per_inference"] == 2.0).all()
    assert frame.loc[~pixel8, "energy_mj_per_inference"].isna().all()
    assert frame["pss_mb"].isna().all() and frame["throttled"].isna().all()
    assert frame.loc[pixel8, "latency_bimodal"].all() and frame.loc[~pixel8, "latency_bimodal"].isna().all()
    assert (frame.loc[pixel8, "speed_reference_ms"] == 4.1).all()
    assert frame.loc[~pixel8, "speed_reference_ms"].isna().all()
    main_only = results.load(reports, branch="main", last=1)
    assert main_only["run_id"].unique().tolist() == ["run-3"] and len(main_only) == 3


def test_latency_samples_are_long_form(tmp_path):
    reports = tmp_path / "reports"
    three_runs(reports, store=True)
    samples = results.latency_samples(reports, last=2)
    assert len(samples) == 5 * 50  # run-2 and run-3: 5 results of 50 samples
    assert samples.groupby(["run_id", "device", "model"])["iteration"].max().eq(49).all()
    assert samples["start_offset_ms"].isna().all()  # the factory records no start offsets
    one = samples[(samples.run_id == "run-3") & (samples.device == "local") & (samples.model == "m1")]
    assert one["latency_ms"].median() == pytest.approx(3.0, rel=0.02)


def test_load_refuses_bad_arguments_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="reports_dir=.*no such folder"):
        results.load(tmp_path / "nope", "none")
    with pytest.raises(ConfigError, match="last=0: give a positive number"):
        results.load(tmp_path, "none", last=0)
    with pytest.raises(ConfigError, match="no such database file"):
        results.load(tmp_path, f"sqlite:///{tmp_path / 'missing.db'}")


def test_export_csv_json_and_parquet(tmp_path, capsys):
    reports = tmp_path / "reports"
    three_runs(reports, store=True)
    assert main(["export", "--reports-dir", str(reports), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run_id,run_started_at,git_branch,") and len(lines) == 9
    assert ",2026-11-03T02:00:00Z," in lines[-1]
    out = tmp_path / "r.json"
    assert (
        main(["export", "--reports-dir", str(reports), "--format", "json", "-o", str(out), "--last", "1"])
        == 0
    )
    rows = json.loads(out.read_text())
    assert len(rows) == 3 and rows[0]["energy_mj_per_inference"] is None
    parquet = tmp_path / "s.parquet"
    assert (
        main(
            ["export", "--reports-dir", str(reports), "--format", "parquet", "-o", str(parquet), "--samples"]
        )
        == 0
    )
    assert len(pd.read_parquet(parquet)) == 8 * 50
    assert main(["export", "--reports-dir", str(reports), "--format", "parquet"]) == 1
    assert "give --output PATH" in capsys.readouterr().err
