"""The results store: one schema, SQLite by default, PostgreSQL by URL, same code (SQLAlchemy Core).

Written as each test finishes (one transaction per record), so a killed run keeps everything
it finished; a run is ``complete`` only once pytest ended normally. Raw samples (latency,
thermal trace) live in ``samples`` so the ``measurements`` table stays small to query.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from harness.errors import EdgeLabError
from harness.secrets import redact

DB_FILE = "results.db"
SCHEMA_VERSION = 1

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("started_at", String(32)),
    Column("finished_at", String(32)),
    Column("complete", Boolean, nullable=False, default=False),
    Column("git_commit", String(64)),
    Column("git_branch", String(256)),
    Column("git_dirty", Boolean),
    Column("ci_job_id", String(128)),
    Column("harness_version", String(32)),
    Column("host", String(256)),
    Column("devices", JSON),
    Column("metadata", JSON),
)

measurements = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("test", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("device", String(256), nullable=False),
    Column("device_kind", String(16)),
    Column("virtual", Boolean),
    Column("model", String(256), nullable=False),
    Column("model_sha256", String(64)),
    Column("format", String(16)),
    Column("runtime", String(32)),
    Column("runtime_version", String(64)),
    Column("precision", String(32)),
    Column("variant", String(512), nullable=False),
    Column("median_ms", Float),
    Column("p90_ms", Float),
    Column("p99_ms", Float),
    Column("mean_ms", Float),
    Column("cv", Float),
    Column("samples", Integer),
    Column("peak_rss_mb", Float),
    Column("pss_mb", Float),
    Column("energy_mj_per_inference", Float),
    Column("throttled", Boolean),
    Column("error", Text),
    Column("finished_at", String(32)),
    Column("record", JSON, nullable=False),  # the results.json record without raw samples
)
Index("measurements_lookup", measurements.c.device, measurements.c.variant, measurements.c.run_id)

samples = Table(
    "samples",
    metadata,
    Column("measurement_id", Integer, ForeignKey("measurements.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(32), primary_key=True),  # latency_ms, thermal
    Column("data", JSON, nullable=False),
)

RAW_KEYS = {"latency_samples_ms": "latency_ms", "thermal": "thermal"}


@dataclass(frozen=True)
class StoredRun:
    id: str
    started_at: str | None
    complete: bool
    git_branch: str | None
    git_commit: str | None
    devices: list[str]


class StoreError(EdgeLabError):
    """The results database cannot be opened or written."""


def default_url(reports_dir: Path) -> str:
    return f"sqlite:///{(reports_dir / DB_FILE).resolve()}"


def resolve_url(given: str | None, reports_dir: Path) -> str | None:
    """``--results-db``, else ``$EDGELAB_RESULTS_DB``, else SQLite in the reports folder;
    None for ``none`` (results.json only)."""
    url = given or os.environ.get("EDGELAB_RESULTS_DB") or default_url(reports_dir)
    return None if url == "none" else url


def _describe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return redact(url)


class ResultsStore:
    """Open (and create the schema of) the store at ``url``."""

    def __init__(self, url: str) -> None:
        if url.startswith(("postgresql://", "postgres://")):  # the driver EdgeLab installs: psycopg 3
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        self.url = url
        self.label = _describe(url)
        try:
            if url.startswith("sqlite:///"):
                Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
            if url.startswith("sqlite"):
                event.listen(self.engine, "connect", _sqlite_pragmas)
            for attempt in range(20):  # several xdist workers may create the schema at once
                try:
                    metadata.create_all(self.engine)
                    break
                except OperationalError:
                    if attempt == 19:
                        raise
                    time.sleep(0.25)
        except (SQLAlchemyError, ModuleNotFoundError, ValueError) as exc:
            reason = redact(_first_line(exc))
            raise StoreError(
                f"results database {self.label}: cannot open it ({reason}); check --results-db "
                "(sqlite:///path or postgresql://user:password@host:port/db) and that the server runs"
            ) from None

    @contextlib.contextmanager
    def _begin(self, action: str) -> Iterator[Any]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except OperationalError as exc:
            raise StoreError(
                f"results database {self.label}: {action} failed: {redact(_first_line(exc))}"
            ) from None

    # -- writing -------------------------------------------------------------------------------

    def write_run(self, run: dict[str, Any]) -> None:
        """Insert the run (or leave it when a worker of the same run already did)."""
        row = {
            "id": run["id"],
            "started_at": run.get("started_at"),
            "complete": False,
            "git_commit": run.get("git_commit"),
            "git_branch": run.get("git_branch"),
            "git_dirty": run.get("git_dirty"),
            "ci_job_id": run.get("ci_job_id"),
            "harness_version": run.get("harness_version"),
            "host": run.get("host"),
            "devices": run.get("devices"),
            "metadata": run,
        }
        try:
            with self._begin("writing the run") as connection:
                exists = connection.execute(select(runs.c.id).where(runs.c.id == run["id"])).first()
                if exists is None:
                    connection.execute(insert(runs).values(**row))
        except IntegrityError:
            # xdist workers of one run start together: another one inserted it after our check
            with self._begin("reading the run back") as connection:
                if connection.execute(select(runs.c.id).where(runs.c.id == run["id"])).first() is None:
                    raise

    def write_record(self, record: dict[str, Any]) -> int:
        """One finished test: its measurement row and its raw samples, in one transaction."""
        latency = record.get("latency_ms") or {}
        energy = record.get("energy") or {}
        verdict = (record.get("thermal") or {}).get("verdict") or {}
        slim = {k: v for k, v in record.items() if k not in RAW_KEYS}
        row = {
            "run_id": record["run_id"],
            "test": record["test"],
            "status": record["status"],
            "device": record["device"],
            "device_kind": record.get("device_kind"),
            "virtual": record.get("virtual"),
            "model": record["model"],
            "model_sha256": record.get("model_sha256"),
            "format": record.get("format"),
            "runtime": record.get("runtime"),
            "runtime_version": record.get("runtime_version"),
            "precision": record.get("precision"),
            "variant": variant_key(record),
            "median_ms": latency.get("median"),
            "p90_ms": latency.get("p90"),
            "p99_ms": latency.get("p99"),
            "mean_ms": latency.get("mean"),
            "cv": latency.get("cv"),
            "samples": latency.get("samples"),
            "peak_rss_mb": record.get("peak_rss_mb"),
            "pss_mb": record.get("pss_mb"),
            "energy_mj_per_inference": energy.get("mj_per_inference"),
            "throttled": verdict.get("throttled"),
            "error": record.get("error"),
            "finished_at": record.get("finished_at"),
            "record": slim,
        }
        with self._begin("writing a measurement") as connection:
            measurement_id = int(
                connection.execute(insert(measurements).values(**row)).inserted_primary_key[0]
            )
            for key, kind in RAW_KEYS.items():
                if record.get(key) is not None:
                    connection.execute(
                        insert(samples).values(measurement_id=measurement_id, kind=kind, data=record[key])
                    )
        return measurement_id

    def finish_run(self, run_id: str) -> None:
        with self._begin("closing the run") as connection:
            connection.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(complete=True, finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            )

    # -- reading -------------------------------------------------------------------------------

    def runs(self, *, branch: str | None = None, limit: int | None = None) -> list[StoredRun]:
        query = select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc())
        if branch is not None:
            query = query.where(runs.c.git_branch == branch)
        if limit is not None:
            query = query.limit(limit)
        with self._begin("reading runs") as connection:
            rows = connection.execute(query).mappings().all()
        return [
            StoredRun(
                r["id"],
                r["started_at"],
                bool(r["complete"]),
                r["git_branch"],
                r["git_commit"],
                r["devices"] or [],
            )
            for r in rows
        ]

    def run(self, run_id: str) -> StoredRun | None:
        found = [r for r in self.runs() if r.id == run_id]
        return found[0] if found else None

    def records(self, run_id: str, *, with_samples: bool = True) -> list[dict[str, Any]]:
        """The run's records as results.json has them (raw samples joined back in)."""
        with self._begin("reading measurements") as connection:
            rows = connection.execute(
                select(measurements.c.id, measurements.c.record)
                .where(measurements.c.run_id == run_id)
                .order_by(measurements.c.id)
            ).all()
            raw: dict[int, dict[str, Any]] = {}
            if with_samples and rows:
                for measurement_id, kind, data in connection.execute(
                    select(samples.c.measurement_id, samples.c.kind, samples.c.data).where(
                        samples.c.measurement_id.in_([r[0] for r in rows])
                    )
                ):
                    raw.setdefault(measurement_id, {})[kind] = data
        result = []
        for measurement_id, record in rows:
            full = dict(record)
            for key, kind in RAW_KEYS.items():
                if kind in raw.get(measurement_id, {}):
                    full[key] = raw[measurement_id][kind]
            result.append(full)
        return result

    def latest_run_with(
        self, *, branch: str, device: str, variant: str, before: str | None = None
    ) -> str | None:
        """The newest run on ``branch`` that measured ``variant`` on ``device`` (and passed)."""
        query = (
            select(runs.c.id)
            .join(measurements, measurements.c.run_id == runs.c.id)
            .where(
                runs.c.git_branch == branch,
                measurements.c.device == device,
                measurements.c.variant == variant,
                measurements.c.status == "passed",
            )
            .order_by(runs.c.started_at.desc(), runs.c.id.desc())
            .limit(1)
        )
        if before is not None:
            query = query.where(runs.c.id != before)
        with self._begin("finding a baseline") as connection:
            row = connection.execute(query).first()
        return str(row[0]) if row else None

    @property
    def shared(self) -> bool:
        """A server database several lab hosts can share (leases then use its advisory locks)."""
        return self.engine.dialect.name == "postgresql"

    def advisory_lock(self, device: str) -> AdvisoryLock | None:
        """Take the cluster-wide lease of ``device``; None when another session holds it."""
        connection = self.engine.connect()
        key = f"edgelab-device:{device}"
        got = connection.execute(text("SELECT pg_try_advisory_lock(hashtext(:key))"), {"key": key}).scalar()
        connection.commit()
        if not got:
            connection.close()
            return None
        return AdvisoryLock(connection, key)

    def close(self) -> None:
        self.engine.dispose()


class AdvisoryLock:
    """A session-level PostgreSQL advisory lock, released (and its connection closed) on close."""

    def __init__(self, connection: Any, key: str) -> None:
        self.connection = connection
        self.key = key

    def close(self) -> None:
        with contextlib.suppress(SQLAlchemyError):
            self.connection.execute(text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": self.key})
            self.connection.commit()
        self.connection.close()


def variant_key(record: dict[str, Any]) -> str:
    """What makes two measurements comparable: model, runtime, precision, threads, model hash."""
    return "|".join(
        str(record.get(key) or "")
        for key in ("model", "format", "runtime", "precision", "threads", "model_sha256")
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # first: the WAL switch below may have to wait
    cursor.execute("PRAGMA journal_mode=WAL")  # xdist workers write concurrently
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
