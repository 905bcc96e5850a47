"""``reports/<run-id>/results.json``: every finished test appended the moment it finishes.

The file is rewritten whole under an exclusive lock and replaced atomically, so a crash (or a
SIGKILL) leaves the last complete version and pytest-xdist workers never interleave writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.record import SCHEMA_VERSION, ResultRecord, RunInfo

RESULTS_FILE = "results.json"
LATEST_LINK = "latest"
PUBLIC = 0o644


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def new_run_id() -> str:
    """Sortable by time and unique across hosts: ``20261124-211500-3fa9c1``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    """A run id names a folder inside the reports folder: no path separators, no ``..``."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ConfigError(
            f"--run-id {run_id!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (it names a folder inside --reports-dir)"
        )
    return run_id


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


class CorruptResultsWarning(UserWarning):
    """A results.json could not be read; it was kept aside and a fresh document started."""


def _problem(document: object) -> str | None:
    if not isinstance(document, dict):
        return "not a JSON object"
    if not isinstance(document.get("results"), list) or not isinstance(document.get("run"), dict):
        return "no 'run' object or no 'results' list"
    return None


class ResultsFile:
    """One run's results document: ``{"schema_version", "run": {...}, "results": [...]}``.

    A document that cannot be read when a record is written (truncated, garbage, another
    program's file under a reused run id) is never appended to blindly nor lost: it is renamed
    ``results.json.corrupt-<time>``, a warning names it, and a fresh document takes the record."""

    def __init__(self, reports_dir: Path, run_id: str) -> None:
        self.run_dir = reports_dir / run_id
        self.path = self.run_dir / RESULTS_FILE
        self._lock = self.run_dir / ".results.lock"
        self._run: RunInfo | None = None  # what a fresh document starts with (create() sets it)

    @classmethod
    def create(cls, reports_dir: Path, run_id: str, run: RunInfo) -> ResultsFile:
        """The run's document, written empty unless it exists (set aside and written anew when
        it cannot be read). ``latest`` moves only once the run has measured something
        (``point_latest``): a run whose devices were all unreachable does not hide the last one
        that measured."""
        file = cls(reports_dir, run_id)
        file._run = run
        file.run_dir.mkdir(parents=True, exist_ok=True)
        with _locked(file._lock):
            if not file.path.exists():
                _write_atomic(file.path, file._fresh())
            else:
                file._writable()
        return file

    def point_latest(self) -> None:
        _point_latest(self.run_dir.parent, self.run_dir.name)

    def _fresh(self) -> dict[str, Any]:
        run = self._run.to_json() if self._run is not None else {"id": self.run_dir.name}
        return {"schema_version": SCHEMA_VERSION, "run": run, "results": []}

    def _writable(self) -> dict[str, Any]:
        """The document to add to, or a fresh one after setting an unreadable file aside (called
        under the lock)."""
        try:
            document: Any = json.loads(self.path.read_text(encoding="utf-8"))
            problem = _problem(document)
        except (ValueError, UnicodeDecodeError) as exc:
            problem = f"not valid JSON ({str(exc).splitlines()[0][:120]})"
        if problem is None:
            return dict(document)
        aside = self.path.with_name(f"{RESULTS_FILE}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.replace(self.path, aside)
        warnings.warn(
            CorruptResultsWarning(
                f"{self.path}: {problem}; kept it as {aside.name} and started a new results.json "
                "(the results in the old file are not in this run's report: recover them from it by hand)"
            ),
            stacklevel=3,
        )
        fresh = self._fresh()
        _write_atomic(self.path, fresh)
        return fresh

    def append(self, record: ResultRecord) -> None:
        with _locked(self._lock):
            document = self._writable()
            document["results"].append(record.to_json())
            _write_atomic(self.path, document)

    def update_run(self, **fields: Any) -> None:
        with _locked(self._lock):
            document = self._writable()
            document["run"].update(fields)
            _write_atomic(self.path, document)

    def merge_run(self, key: str, values: dict[str, Any]) -> None:
        """Merge ``values`` into the run's mapping ``key`` (xdist workers each add their devices)."""
        with _locked(self._lock):
            document = self._writable()
            merged = dict(document["run"].get(key) or {})
            merged.update(values)
            document["run"][key] = merged
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
