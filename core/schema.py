"""The ledger's tables and its versioned migrations (SQLAlchemy Core: one schema for SQLite and,
later, PostgreSQL).

A new ledger is created at the latest version in one step; an older one is brought forward one
version at a time. All of it runs in one transaction with the version records (SQLite and PostgreSQL
both have transactional DDL), so a failed step changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    inspect,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from .errors import LedgerError


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in, the same out.

    SQLite has no time type: values are stored as fixed-width UTC text
    (``2026-11-24 05:04:49.000123``), which sorts as time does. Formatting it here directly is
    several times cheaper than SQLAlchemy's generic DATETIME processing, which matters when a
    plan writes 100,000 rows. Other databases get a real ``TIMESTAMP WITH TIME ZONE``.
    """

    impl = String(26)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use an aware UTC datetime")
        if dialect.name != "sqlite":
            return value
        v = value if value.tzinfo is UTC else value.astimezone(UTC)
        return (f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:"
                f"{v.second:02d}.{v.microsecond:06d}")  # fmt: skip

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UTCDateTime, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pipeline", String, nullable=False),
    Column("host", String, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
)

briefs = Table(
    "briefs",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("brief_id", String, nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pipeline", String, nullable=False),
    Column("brief_id", String, nullable=False),
    Column("brief_key", String(64), ForeignKey("briefs.key"), nullable=False),
    Column("platform", String, nullable=False),
    Column("state", String(24), nullable=False),
    Column("provider", String, nullable=False),
    Column("model", String, nullable=False),
    Column("request", Text, nullable=False),
    Column("request_key", String(64), nullable=False),
    Column("texts", Text, nullable=False),
    Column("sinks", Text, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("estimated_cost", Float, nullable=False, default=0.0),
    Column("cost", Float),
    Column("cached", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("publish_attempts", Integer, nullable=False, default=0),
    Column("operation_id", String),
    Column("operation", Text),
    Column("video_sha256", String(64)),
    Column("last_error", Text),
    Column("due_at", UTCDateTime),
    Column("lease_owner", String(32)),
    Column("lease_until", UTCDateTime),
    Column("run_id", String(32)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("generated_at", UTCDateTime),
    Column("plan_key", String(32)),
    Index("jobs_due", "pipeline", "due_at"),
    Index("jobs_state", "state", "provider"),
    Index("jobs_brief", "pipeline", "brief_id", "platform"),
    Index("jobs_plan", "plan_key"),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("from_state", String(24)),
    Column("to_state", String(24), nullable=False),
    Column("message", Text),
    Index("transitions_job", "job_id"),
)

submissions = Table(
    "submissions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False),
    Column("provider", String, nullable=False),
    Column("request_key", String(64), nullable=False),
    Column("run_id", String(32)),
    Column("at", UTCDateTime, nullable=False),
    Column("operation_id", String),
    Index("submissions_window", "provider", "at"),
    Index("submissions_job", "job_id"),
)

videos = Table(
    "videos",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("path", String, nullable=False),
    Column("size", Integer, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("mime", String, nullable=False),
    Column("video_codec", String, nullable=False),
    Column("audio_codec", String, nullable=False),
    Column("poster", String),
    Column("created_at", UTCDateTime, nullable=False),
)

renders = Table(
    "renders",
    metadata,
    Column("request_key", String(64), primary_key=True),
    Column("video_sha256", String(64), ForeignKey("videos.sha256"), nullable=False),
    Column("provider", String, nullable=False),
    Column("model", String, nullable=False),
    Column("cost", Float, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

receipts = Table(
    "receipts",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("sink", String, primary_key=True),
    Column("remote_id", String, nullable=False),
    Column("url", String),
    Column("details", Text),
    Column("published_at", UTCDateTime, nullable=False),
)

cursors = Table(
    "cursors",
    metadata,
    Column("pipeline", String, primary_key=True),
    Column("source", String, primary_key=True),
    Column("cursor", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

assets = Table(
    "assets",
    metadata,
    Column("ref", String, primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)


Migration = Callable[[Connection], None]

# version → step that brings a ledger from version-1 to version. Version 1 is the baseline that
# ``metadata`` describes; add steps here (and change ``metadata``) when the schema changes.
MIGRATIONS: dict[int, Migration] = {}
LATEST = 1


def migrate(conn: Connection, latest: int | None = None) -> int:
    """Bring the ledger on ``conn`` to the latest schema; returns the version it started at.

    Runs inside the caller's transaction: every step commits with its version record, or none do.
    """
    latest = LATEST if latest is None else latest
    current = current_version(conn)
    if current > latest:
        raise LedgerError(
            f"this ledger has schema version {current}, newer than this reelpress understands "
            f"({latest}); upgrade reelpress"
        )
    if current == 0:
        metadata.create_all(conn)
        _stamp(conn, latest)
        return 0
    for version in range(current + 1, latest + 1):
        step = MIGRATIONS.get(version)
        if step is None:
            raise LedgerError(f"no migration to schema version {version}")
        step(conn)
        _stamp(conn, version)
    return current


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        if inspect(conn).has_table("jobs"):
            raise LedgerError("this database has a 'jobs' table but no reelpress schema record")
        return 0
    return int(
        conn.execute(
            select(schema_version.c.version).order_by(schema_version.c.version.desc()).limit(1)
        ).scalar()
        or 0
    )


def _stamp(conn: Connection, version: int) -> None:
    conn.execute(schema_version.insert().values(version=version, applied_at=datetime.now(UTC)))
