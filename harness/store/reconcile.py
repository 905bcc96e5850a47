"""Results that reached results.json but not the database (the database was down, or the process
died between the two writes) go into the database at the next run.

A run folder that holds such results carries a ``.unstored`` marker; runs the database still
lists as incomplete are checked too (a killed process leaves no marker).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from harness.errors import EdgeLabError
from harness.store.db import ResultsStore
from harness.store.results_json import RESULTS_FILE, ResultsFile

MARKER = ".unstored"
CHECKED = ".reconciled"


def mark_unstored(reports_dir: Path, run_id: str) -> None:
    marker = reports_dir / run_id / MARKER
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def reconcile(store: ResultsStore, reports_dir: Path, *, skip: str | None = None) -> int:
    """Store every record of a marked or incomplete run folder that the database lacks; returns
    how many were added. A folder that cannot be read is left as it is."""
    if not reports_dir.is_dir():
        return 0
    marked = {path.parent.name for path in reports_dir.glob(f"*/{MARKER}")}
    stored = store.runs()
    stored_incomplete = {run.id for run in stored if not run.complete}
    on_disk = {
        path.parent.name for path in reports_dir.glob(f"*/{RESULTS_FILE}") if not path.parent.is_symlink()
    }
    candidates = (marked | stored_incomplete | (on_disk - {run.id for run in stored})) & on_disk
    added = 0
    for run_id in sorted(candidates - {skip}):
        file = ResultsFile(reports_dir, run_id)
        seen = reports_dir / run_id / CHECKED
        stamp = str(file.path.stat().st_mtime_ns)
        if run_id not in marked and seen.exists() and seen.read_text() == stamp:
            continue  # an incomplete run checked before and not written since
        try:
            run, records = file.run(), file.records()
        except (OSError, ValueError, EdgeLabError):
            continue
        missing = [record for record in records if not store.has_record(record)]
        if missing:
            store.write_run(run)
            for record in missing:
                store.write_record(record)
            added += len(missing)
        if run.complete:
            store.finish_run(run_id)
        with contextlib.suppress(FileNotFoundError):
            (reports_dir / run_id / MARKER).unlink()
        with contextlib.suppress(OSError):
            seen.write_text(stamp)
    return added
