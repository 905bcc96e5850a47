"""The results store: one schema, SQLite by default, PostgreSQL by URL, same code (SQLAlchemy Core).

The ``measurements`` table is derived from the result record (harness.record.ResultRecord): a
column per field, scalars typed, nested parts as JSON, raw series (latency samples, offsets,
thermal traces) in ``samples``. Written as each test finishes (one transaction per record), so a
killed run keeps everything it finished; a run is ``complete`` only once pytest ended normally.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
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
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.types import TypeEngine

from harness.errors import EdgeLabError
from harness.record import RAW_FIELDS, ResultIdentity, ResultRecord, RunInfo, upgrade_v1
from harness.secrets import redact

DB_FILE = "results.db"
SCHEMA_VERSION = 2
SQLITE_MAGIC = b"SQLite format 3\x00"

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

schema_info = Table("edgelab_schema", metadata, Column("version", Integer, nullable=False))


def _column_type(annotation: Any) -> TypeEngine[Any]:
    """SQL type of a record field: scalars typed, everything nested as JSON."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(options) == 1:
        annotation = options[0]
    if typing.get_origin(annotation) is typing.Literal:
        annotation = type(typing.get_args(annotation)[0])
    if annotation is str:
        return Text()
    if annotation is bool:
        return Boolean()
    if annotation is int:
        return Integer()
    if annotation is float:
        return Float()
    return JSON()


IDENTITY_COLUMNS = ("test_id", "device", "model", "runtime", "precision", "threads", "kind")
RECORD_COLUMNS = tuple(name for name in ResultRecord.model_fields if name not in RAW_FIELDS)

measurements = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *(
        Column(
            name,
            _column_type(ResultRecord.model_fields[name].annotation),
            *([ForeignKey("runs.id", ondelete="CASCADE")] if name == "run_id" else []),
            nullable=not ResultRecord.model_fields[name].is_required(),
        )
        for name in RECORD_COLUMNS
    ),
)
Index("measurements_identity", *(measurements.c[name] for name in IDENTITY_COLUMNS))
Index("measurements_run", measurements.c.run_id)

samples = Table(
    "samples",
    metadata,
    Column("measurement_id", Integer, ForeignKey("measurements.id", ondelete="CASCADE"), primary_key=True),
    Column("kind", String(32), primary_key=True),  # a field of RAW_FIELDS
    Column("data", JSON, nullable=False),
)


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


def _check_sqlite_file(path: Path, label: str) -> None:
    """Never let SQLite turn a damaged file into an empty history: it would create the schema in a
    0-byte file, and fail later, mid-run, on garbage."""
    if not path.exists():
        return
    if path.is_dir():
        raise StoreError(f"results database {label}: {path} is a directory; point --results-db at a file")
    with path.open("rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if not head:
        raise StoreError(
            f"results database {label}: {path} is empty (0 bytes), so its history is gone; restore it "
            "from a backup, or move it aside to start a new history"
        )
    if head != SQLITE_MAGIC:
        raise StoreError(
            f"results database {label}: {path} is not an SQLite database (damaged or another file); "
            "restore it from a backup, or move it aside to start a new history"
        )


class ResultsStore:
    """Open (and create or upgrade the schema of) the store at ``url``."""

    def __init__(self, url: str) -> None:
        if url.startswith(("postgresql://", "postgres://")):  # the driver EdgeLab installs: psycopg 3
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        self.url = url
        self.label = _describe(url)
        try:
            if url.startswith("sqlite:///"):
                path = Path(url[len("sqlite:///") :])
                _check_sqlite_file(path, self.label)
                path.parent.mkdir(parents=True, exist_ok=True)
            connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
            self.engine: Engine = create_engine(
                url, future=True, pool_pre_ping=True, connect_args=connect_args
            )
            if url.startswith("sqlite"):
                busy_ms = 30_000 if "timeout=" not in url else None  # ?timeout=S sets it instead
                event.listen(
                    self.engine, "connect", lambda connection, _: _sqlite_pragmas(connection, busy_ms)
                )
            for attempt in range(20):  # several xdist workers may create the schema at once
                try:
                    self._create_or_upgrade()
                    break
                except OperationalError:
                    if attempt == 19:
                        raise
                    time.sleep(0.25)
        except (SQLAlchemyError, ModuleNotFoundError, ValueError, OSError) as exc:
            reason = redact(_first_line(exc))
            raise StoreError(
                f"results database {self.label}: cannot open it ({reason}); check --results-db "
                "(sqlite:///path or postgresql://user:password@host:port/db) and that the server runs"
            ) from None

    def _create_or_upgrade(self) -> None:
        """Schema 1 (EdgeLab 0.1: the record as one JSON column) is upgraded in place, so older
        runs stay baselines; a newer schema than this EdgeLab knows is refused."""
        existing = inspect(self.engine)
        tables = set(existing.get_table_names())
        version: int | None = None
        if schema_info.name in tables:
            with self.engine.connect() as connection:
                version = connection.execute(select(schema_info.c.version)).scalar()
        elif "measurements" in tables:
            columns = {c["name"] for c in existing.get_columns("measurements")}
            version = 1 if "record" in columns and "test_id" not in columns else None
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"results database {self.label}: written by a newer EdgeLab (schema {version}, this "
                f"one knows {SCHEMA_VERSION}); upgrade EdgeLab"
            )
        with self.engine.begin() as connection:
            if version == 1:
                _upgrade_from_v1(connection)
            metadata.create_all(connection)
            self._add_new_columns(connection)
            if connection.execute(select(schema_info.c.version)).first() is None:
                connection.execute(insert(schema_info).values(version=SCHEMA_VERSION))
            if version == 1:
                _copy_v1_rows(connection)

    def _add_new_columns(self, connection: Any) -> None:
        """A field added to the record since the database was created is a new nullable column:
        added in place (ALTER TABLE ... ADD COLUMN), so the database keeps its runs as baselines.
        A missing column that must have a value cannot be made up: refused, naming it."""
        existing = inspect(connection)
        for table in metadata.sorted_tables:
            have = {column["name"] for column in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                if not column.nullable:
                    raise StoreError(
                        f"results database {self.label}: table {table.name} has no column {column.name}, "
                        "which every record needs: it was not written by this EdgeLab; give another "
                        "--results-db (the runs stay in their results.json)"
                    )
                kind = column.type.compile(dialect=connection.dialect)
                guard = "IF NOT EXISTS " if connection.dialect.name == "postgresql" else ""
                connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN {guard}"{column.name}" {kind}'))

    @contextlib.contextmanager
    def _begin(self, action: str) -> Iterator[Any]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            if isinstance(exc, IntegrityError):
                raise
            raise StoreError(
                f"results database {self.label}: {action} failed: {redact(_first_line(exc))}"
            ) from None

    # -- writing -------------------------------------------------------------------------------

    def write_run(self, run: RunInfo) -> None:
        """Insert the run (or leave it when a worker of the same run already did)."""
        row = {
            "id": run.id,
            "started_at": run.started_at,
            "complete": False,
            "git_commit": run.git_commit,
            "git_branch": run.git_branch,
            "git_dirty": run.git_dirty,
            "ci_job_id": run.ci_job_id,
            "harness_version": run.harness_version,
            "host": run.host,
            "devices": list(run.devices),
            "metadata": run.to_json(),
        }
        try:
            with self._begin("writing the run") as connection:
                exists = connection.execute(select(runs.c.id).where(runs.c.id == run.id)).first()
                if exists is None:
                    connection.execute(insert(runs).values(**row))
        except IntegrityError:
            # xdist workers of one run start together: another one inserted it after our check
            with self._begin("reading the run back") as connection:
                if connection.execute(select(runs.c.id).where(runs.c.id == run.id)).first() is None:
                    raise

    def write_record(self, record: ResultRecord) -> int:
        """One finished test: its row and its raw series, in one transaction."""
        data = record.to_json()
        row = {name: data.get(name) for name in RECORD_COLUMNS}
        with self._begin("writing a measurement") as connection:
            measurement_id = int(
                connection.execute(insert(measurements).values(**row)).inserted_primary_key[0]
            )
            for name in RAW_FIELDS:
                if data.get(name) is not None:
                    connection.execute(
                        insert(samples).values(measurement_id=measurement_id, kind=name, data=data[name])
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
        with self._begin("reading a run") as connection:
            found = connection.execute(select(runs.c.id).where(runs.c.id == run_id)).first()
        if found is None:
            return None
        return next(r for r in self.runs() if r.id == run_id)

    def run_info(self, run_id: str) -> RunInfo | None:
        """The run's metadata as it was recorded (None for a run this store does not have)."""
        with self._begin("reading a run") as connection:
            found = connection.execute(select(runs.c.metadata).where(runs.c.id == run_id)).scalar()
        return None if found is None else RunInfo.model_validate(found)

    def records(self, run_id: str, *, with_samples: bool = True) -> list[ResultRecord]:
        """The run's records as results.json has them (raw series joined back in)."""
        with self._begin("reading measurements") as connection:
            rows = (
                connection.execute(
                    select(measurements).where(measurements.c.run_id == run_id).order_by(measurements.c.id)
                )
                .mappings()
                .all()
            )
            raw: dict[int, dict[str, Any]] = {}
            if with_samples and rows:
                for measurement_id, kind, data in connection.execute(
                    select(samples.c.measurement_id, samples.c.kind, samples.c.data).where(
                        samples.c.measurement_id.in_([r["id"] for r in rows])
                    )
                ):
                    raw.setdefault(measurement_id, {})[kind] = data
        result = []
        for row in rows:
            data = {name: row[name] for name in RECORD_COLUMNS if row[name] is not None}
            data.update(raw.get(row["id"], {}))
            try:
                result.append(ResultRecord.from_json(data))
            except ValidationError as exc:
                first = exc.errors()[0]
                raise StoreError(
                    f"results database {self.label}: run {run_id}: measurement {row['id']} does not match "
                    f"the results schema at {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
                ) from None
        return result

    def latest_run_with(
        self, *, branch: str, identity: ResultIdentity, before: str | None = None
    ) -> str | None:
        """The newest run on ``branch`` with a passed result of ``identity``."""
        query = (
            select(runs.c.id)
            .join(measurements, measurements.c.run_id == runs.c.id)
            .where(runs.c.git_branch == branch, measurements.c.status == "passed")
            .order_by(runs.c.started_at.desc(), runs.c.id.desc())
            .limit(1)
        )
        for name in IDENTITY_COLUMNS:
            value = getattr(identity, name)
            query = query.where(
                measurements.c[name].is_(None) if value is None else measurements.c[name] == value
            )
        if before is not None:
            query = query.where(runs.c.id != before)
        with self._begin("finding a baseline") as connection:
            row = connection.execute(query).first()
        return str(row[0]) if row else None

    def has_record(self, record: ResultRecord) -> bool:
        """Whether this finished test is stored already (by run, test, kind and finish time)."""
        query = select(measurements.c.id).where(
            measurements.c.run_id == record.run_id,
            measurements.c.test == record.test,
            measurements.c.kind == record.kind,
            measurements.c.finished_at == record.finished_at,
        )
        with self._begin("looking up a measurement") as connection:
            return connection.execute(query.limit(1)).first() is not None

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


# -- schema 1 -> 2 ------------------------------------------------------------------------------------


def _upgrade_from_v1(connection: Any) -> None:
    connection.execute(text("ALTER TABLE samples RENAME TO samples_v1"))
    connection.execute(text("ALTER TABLE measurements RENAME TO measurements_v1"))


def _copy_v1_rows(connection: Any) -> None:
    """Every schema-1 measurement as a schema-2 row (records that no longer validate are left in
    measurements_v1, counted in a notice), then the old tables go."""
    old_raw: dict[int, dict[str, Any]] = {}
    for measurement_id, kind, data in connection.execute(
        text("SELECT measurement_id, kind, data FROM samples_v1")
    ):
        field = {"latency_ms": "latency_samples_ms", "thermal": "thermal"}.get(kind, kind)
        old_raw.setdefault(measurement_id, {})[field] = _json(data)
    skipped = 0
    for measurement_id, record in connection.execute(
        text("SELECT id, record FROM measurements_v1 ORDER BY id")
    ):
        data = {**_json(record), **old_raw.get(measurement_id, {})}
        try:
            upgraded = ResultRecord.model_validate(upgrade_v1(data))
        except ValidationError:
            skipped += 1
            continue
        row = upgraded.to_json()
        new_id = connection.execute(
            insert(measurements).values(**{name: row.get(name) for name in RECORD_COLUMNS})
        ).inserted_primary_key[0]
        for name in RAW_FIELDS:
            if row.get(name) is not None:
                connection.execute(insert(samples).values(measurement_id=new_id, kind=name, data=row[name]))
    if not skipped:
        connection.execute(text("DROP TABLE samples_v1"))
        connection.execute(text("DROP TABLE measurements_v1"))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _sqlite_pragmas(connection: Any, busy_ms: int | None) -> None:
    cursor = connection.cursor()
    if busy_ms is not None:
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")  # first: the WAL switch below may have to wait
    cursor.execute("PRAGMA journal_mode=WAL")  # xdist workers write concurrently
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
