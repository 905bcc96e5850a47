"""``reports/<run-id>/results.json``: every finished test appended the moment it finishes.

The file is rewritten whole under an exclusive lock and replaced atomically, so a crash (or a
SIGKILL) leaves the last complete version and pytest-xdist workers never interleave writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.record import SCHEMA_VERSION, ResultRecord, RunInfo

RESULTS_FILE = "results.json"
LATEST_LINK = "latest"
PUBLIC = 0o644


def new_run_id() -> str:
    """Sortable by time and unique across hosts: ``20261124-211500-3fa9c1``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, document: dict[str, Any]) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=".results-", dir=path.parent)
    try:
        os.fchmod(descriptor, PUBLIC)  # mkstemp makes 0600; results are shared (secrets are masked)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            # compact: 1,000 samples per result make indentation a third of the file (CI artifacts)
            json.dump(document, handle, separators=(",", ":"), allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class ResultsFile:
    """One run's results document: ``{"schema_version", "run": {...}, "results": [...]}``."""

    def __init__(self, reports_dir: Path, run_id: str) -> None:
        self.run_dir = reports_dir / run_id
        self.path = self.run_dir / RESULTS_FILE
        self._lock = self.run_dir / ".results.lock"

    @classmethod
    def create(cls, reports_dir: Path, run_id: str, run: RunInfo) -> ResultsFile:
        """The run's document, written empty unless it exists. ``latest`` moves only once the run
        has measured something (``point_latest``): a run whose devices were all unreachable does
        not hide the last one that measured."""
        file = cls(reports_dir, run_id)
        file.run_dir.mkdir(parents=True, exist_ok=True)
        with _locked(file._lock):
            if not file.path.exists():
                _write_atomic(
                    file.path, {"schema_version": SCHEMA_VERSION, "run": run.to_json(), "results": []}
                )
        return file

    def point_latest(self) -> None:
        _point_latest(self.run_dir.parent, self.run_dir.name)

    def append(self, record: ResultRecord) -> None:
        with _locked(self._lock):
            document = self._read()
            document["results"].append(record.to_json())
            _write_atomic(self.path, document)

    def update_run(self, **fields: Any) -> None:
        with _locked(self._lock):
            document = self._read()
            document["run"].update(fields)
            _write_atomic(self.path, document)

    def _read(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return document

    def run(self) -> RunInfo:
        return RunInfo.model_validate(self._read()["run"])

    def load(self) -> tuple[RunInfo, list[ResultRecord]]:
        """The run and its records from one read of the file."""
        document = self._read()
        return RunInfo.model_validate(document["run"]), [
            ResultRecord.from_json(r) for r in document["results"]
        ]

    def records(self) -> list[ResultRecord]:
        return [ResultRecord.from_json(r) for r in self._read()["results"]]


def _point_latest(reports_dir: Path, run_id: str) -> None:
    """``reports/latest`` -> the newest run, swapped atomically (a relative link, so the
    reports folder can be copied as CI artifacts)."""
    link = reports_dir / LATEST_LINK
    temporary = reports_dir / f".latest-{os.getpid()}-{secrets.token_hex(2)}"
    os.symlink(run_id, temporary)
    os.replace(temporary, link)
