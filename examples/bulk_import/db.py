"""The bulk import's database: imports, their items, and the platforms they create.

Any database SQLAlchemy reaches: BULK_IMPORT_DB is its URL (default
`sqlite:///bulk_import.db`, in the current directory). The API and the workers must use
the same one.

Each item's outcome is written in the same transaction as the platform it creates, and
the import's counts with them, one transaction per 100 items. So the counts a client
reads are always true, and a job that is retried or run twice (delivery is at least
once) picks up where the last committed chunk ended instead of importing anything twice.
"""

from __future__ import annotations

import functools
import os
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

import msgspec
from sqlalchemy import (JSON, Column, DateTime, Engine, ForeignKey, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, create_engine, event, func, insert, select, update)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .validation import Platform

DEFAULT_URL = "sqlite:///bulk_import.db"
#: Messages kept in an import's error summary; the failed count says how many there were.
ERROR_SUMMARY_LIMIT = 10

PENDING, PROCESSING, COMPLETED, FAILED, PARTIAL = "Pending", "Processing", "Completed", "Failed", "PartialSuccess"

metadata = MetaData()

imports = Table(
    "platform_imports", metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(100), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("total", Integer, nullable=False),
    Column("processed", Integer, nullable=False, default=0),
    Column("succeeded", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("errors", JSON, nullable=False, default=list),
    Column("job_id", String(32), index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

items = Table(
    "platform_import_items", metadata,
    Column("import_id", String(32), ForeignKey("platform_imports.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("outcome", String(10)),  # None until processed, then "created" or "failed"
    Column("error", Text),
)

platforms = Table(
    "platforms", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(100), nullable=False),
    Column("name", String(100), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("import_id", String(32), nullable=False),
    UniqueConstraint("tenant", "name", name="one_platform_name_per_tenant"),
)


class ImportStatus(msgspec.Struct, frozen=True):
    """What `GET .../status` shows."""

    import_id: str
    tenant: str
    status: str
    total: int
    processed: int
    succeeded: int
    failed: int
    errors: list[str]
    job_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Item(msgspec.Struct, frozen=True):
    position: int
    platform: Platform


def now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class Database:
    """The import tables in one database (created if missing)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        metadata.create_all(self.engine)

    @staticmethod
    @functools.cache
    def from_env() -> Database:
        """The database named by BULK_IMPORT_DB, one per process."""
        return Database(os.environ.get("BULK_IMPORT_DB") or DEFAULT_URL)

    # -- the API's side ---------------------------------------------------------------

    def create_import(self, import_id: str, tenant: str, new: list[Platform]) -> None:
        """Records a Pending import and its items, together."""
        with self.engine.begin() as conn:
            conn.execute(insert(imports).values(id=import_id, tenant=tenant, status=PENDING, total=len(new),
                                                processed=0, succeeded=0, failed=0, errors=[],
                                                created_at=now()))
            conn.execute(insert(items), [{"import_id": import_id, "position": i, "name": p.name, "url": p.url,
                                          "kind": p.kind} for i, p in enumerate(new)])

    def set_job(self, import_id: str, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(imports).where(imports.c.id == import_id).values(job_id=job_id))

    def status(self, import_id: str) -> ImportStatus | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(imports).where(imports.c.id == import_id)).mappings().first()
        if row is None:
            return None
        return ImportStatus(
            import_id=row["id"], tenant=row["tenant"], status=row["status"], total=row["total"],
            processed=row["processed"], succeeded=row["succeeded"], failed=row["failed"],
            errors=list(row["errors"]), job_id=row["job_id"], created_at=_utc(row["created_at"]),
            started_at=row["started_at"] and _utc(row["started_at"]),
            finished_at=row["finished_at"] and _utc(row["finished_at"]))

    # -- the job's side ---------------------------------------------------------------

    def start(self, import_id: str) -> None:
        """Processing from now (a retry keeps the first start time)."""
        with self.engine.begin() as conn:
            conn.execute(update(imports).where(imports.c.id == import_id)
                         .values(status=PROCESSING, started_at=func.coalesce(imports.c.started_at, now())))

    def unprocessed(self, import_id: str) -> Iterator[Item]:
        """Items without an outcome, in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(items.c.position, items.c.name, items.c.url, items.c.kind)
                                .where(items.c.import_id == import_id, items.c.outcome.is_(None))
                                .order_by(items.c.position)).all()
        for position, name, url, kind in rows:
            yield Item(position, Platform(name, url, kind))

    def import_chunk(self, import_id: str, tenant: str, chunk: Iterable[Item],
                     per_item: Callable[[Item], None] | None = None) -> ImportStatus:
        """Creates the chunk's platforms, records each item's outcome and the import's
        new counts, in one transaction. An item whose platform cannot be created (its
        name is taken) fails alone. `per_item` is called before each item."""
        with self.engine.begin() as conn:
            for item in chunk:
                if per_item is not None:
                    per_item(item)
                outcome, error = "created", None
                try:
                    with conn.begin_nested():
                        conn.execute(insert(platforms).values(tenant=tenant, name=item.platform.name,
                                                              url=item.platform.url, kind=item.platform.kind,
                                                              import_id=import_id))
                except IntegrityError:
                    outcome = "failed"
                    error = f"item {item.position}: a platform named {item.platform.name!r} already exists"
                conn.execute(update(items).where(items.c.import_id == import_id,
                                                 items.c.position == item.position)
                             .values(outcome=outcome, error=error))
            self._count(conn, import_id)
        found = self.status(import_id)
        assert found is not None
        return found

    def _count(self, conn: Connection, import_id: str) -> None:
        rows = conn.execute(select(items.c.outcome, func.count()).where(items.c.import_id == import_id)
                            .group_by(items.c.outcome)).tuples().all()
        counts: dict[str | None, int] = dict(rows)
        errors = conn.execute(select(items.c.error).where(items.c.import_id == import_id,
                                                          items.c.outcome == "failed")
                              .order_by(items.c.position).limit(ERROR_SUMMARY_LIMIT)).scalars().all()
        created, failed = counts.get("created", 0), counts.get("failed", 0)
        conn.execute(update(imports).where(imports.c.id == import_id)
                     .values(processed=created + failed, succeeded=created, failed=failed, errors=list(errors)))

    def finish(self, import_id: str) -> ImportStatus:
        """Completed, PartialSuccess or Failed, by the items' outcomes."""
        with self.engine.begin() as conn:
            self._count(conn, import_id)
            row = conn.execute(select(imports.c.succeeded, imports.c.failed)
                               .where(imports.c.id == import_id)).one()
            status = COMPLETED if row.failed == 0 else FAILED if row.succeeded == 0 else PARTIAL
            conn.execute(update(imports).where(imports.c.id == import_id)
                         .values(status=status, finished_at=now()))
        found = self.status(import_id)
        assert found is not None
        return found

    def import_of_job(self, job_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(imports.c.id).where(imports.c.job_id == job_id)).scalar()

    def fail(self, import_id: str, message: str) -> None:
        """An import that cannot finish (its job failed for good, or could not be
        enqueued) is Failed, with the reason first in its error summary."""
        with self.engine.begin() as conn:
            errors = conn.execute(select(imports.c.errors).where(imports.c.id == import_id)).scalar() or []
            conn.execute(update(imports).where(imports.c.id == import_id)
                         .values(status=FAILED, errors=[message, *errors][:ERROR_SUMMARY_LIMIT], finished_at=now()))


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """Python's sqlite3 begins transactions only before DML and lets a SAVEPOINT commit on
    its own, so a chunk would not be one transaction: it is told to keep out of it, and
    SQLAlchemy's "begin" emits BEGIN (SQLAlchemy's documented recipe). WAL lets the API
    read statuses while a worker writes; the busy timeout lets two writers wait for each
    other instead of failing."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
