"""How ledger rows map to reelpress's models, and the small SQL helpers every part of the ledger
shares. No state here: the ``Ledger`` class (ledger.py) owns the connection."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Boolean, Table, insert, or_
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema as t
from .models import (
    TERMINAL_STATES,
    Brief,
    Job,
    JobState,
    Receipt,
    RenderRequest,
    Texts,
    Video,
    canonical_json,
    sha256_text,
)

ACTIVE_STATES = tuple(s.value for s in JobState if s not in TERMINAL_STATES)
IN_FLIGHT = (JobState.SUBMITTING.value, JobState.SUBMITTED.value)
LEASE = timedelta(seconds=60)
STALE_RUN = timedelta(seconds=120)
BUSY_TIMEOUT_MS = 30_000
RELAXED = "reelpress_relaxed_durability"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PlannedJob:
    """A job the planner wants in the ledger (inserted only if its id is new)."""

    job: Job
    brief_key: str
    brief_json: str
    plan_key: str | None = None
    """What the job was planned from (see ``planner.plan_fingerprint``): a later plan that
    finds this key skips rendering the brief again."""


@dataclass(frozen=True)
class JobRecord:
    """A job plus what only the engine needs: its operation and lease."""

    job: Job
    operation: dict[str, Any] | None
    lease_owner: str | None
    run_id: str | None


@dataclass(frozen=True)
class SubmitGate:
    """The answer to "may this job be submitted now?"."""

    ok: bool
    wait_s: float = 0.0
    reason: str = ""
    over_budget: str | None = None
    limit: Literal["rate", "concurrency", ""] = ""
    """Which limit is full, when ``wait_s`` says to wait."""


@dataclass(frozen=True)
class JobSummary:
    """A light view of a job for listings (no brief body)."""

    id: str
    brief_id: str
    platform: str
    state: str
    title: str
    duration_s: float
    estimated_cost: float
    cost: float | None
    cached: bool
    attempts: int
    last_error: str | None
    updated_at: datetime
    due_at: datetime | None


def brief_key(brief: Brief) -> str:
    return sha256_text(brief_json(brief))


def brief_json(brief: Brief) -> str:
    return canonical_json(brief.model_dump(mode="json"))


def job_id_for(
    pipeline: str, brief: Brief, platform: str, texts: Texts, request: RenderRequest
) -> str:
    """A job is what would be made: same brief, platform, texts and request → same job. An edit
    to a field no template reads changes nothing here, so it never pays for a new video."""
    identity = [pipeline, brief.id, platform, texts.title, texts.caption, list(texts.hashtags),
                request.key]  # fmt: skip
    if texts.prompt != request.prompt or texts.negative_prompt != request.negative_prompt:
        identity += [texts.prompt, texts.negative_prompt]  # not already in the request key
    return sha256_text(json.dumps(identity, ensure_ascii=False))[:32]


ERROR_STATES = {
    JobState.FAILED,
    JobState.FILTERED,
    JobState.OVER_BUDGET,
    JobState.CANCELLED,
    JobState.NEEDS_RECONCILE,
}


def lease_free(now: datetime) -> Any:
    return or_(t.jobs.c.lease_owner.is_(None), t.jobs.c.lease_until < now)


async def bulk_insert(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows (all with the same keys). On SQLite they go to the driver as plain tuples:
    SQLAlchemy's generic per-value processing cost more than the insert itself when a plan
    writes 100,000 jobs."""
    if conn.dialect.name != "sqlite" or not rows:
        await conn.execute(insert(table), rows)
        return
    names = list(rows[0])
    binders = [(n, _sqlite_binder(table.c[n].type, conn.dialect)) for n in names]
    sql = (f"INSERT INTO {table.name} ({', '.join(names)}) "
           f"VALUES ({', '.join('?' for _ in names)})")  # fmt: skip
    values = [tuple(b(row[n]) if b else row[n] for n, b in binders) for row in rows]
    await conn.exec_driver_sql(sql, values)


def _sqlite_binder(column_type: Any, dialect: Any) -> Any:
    """A converter for values SQLite cannot take as they are (remembering the last datetime:
    a batch usually carries the same one many times)."""
    if isinstance(column_type, t.UTCDateTime):
        last: list[Any] = [None, None]

        def bind_time(value: Any) -> Any:
            if value is not last[0]:
                last[0], last[1] = value, column_type.process_bind_param(value, dialect)
            return last[1]

        return bind_time
    if isinstance(column_type, Boolean):
        return lambda value: None if value is None else int(value)
    return None


def insert_ignore(conn: AsyncConnection, table: Any) -> Any:
    """INSERT that skips rows whose key exists (same spelling on SQLite and PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    return postgresql_insert(table).on_conflict_do_nothing()


def job_row(item: PlannedJob, now: datetime) -> dict[str, Any]:
    job = item.job
    return {
        "id": job.id,
        "pipeline": job.pipeline,
        "brief_id": job.brief.id,
        "brief_key": item.brief_key,
        "platform": job.platform,
        "state": job.state.value,
        "provider": job.request.provider,
        "model": job.request.model,
        "request": job.request.to_json(),
        "request_key": job.request_key,
        "texts": texts_json(job),
        "sinks": json.dumps(list(job.sinks)),
        "duration_s": float(job.request.duration_s),
        "estimated_cost": job.estimated_cost_usd,
        "cached": False,
        "attempts": 0,
        "publish_attempts": 0,
        "due_at": now,
        "created_at": now,
        "updated_at": now,
        "plan_key": item.plan_key,
    }  # columns left out are NULL


def texts_json(job: Job) -> str:
    """The texts, leaving out the prompts when they are the request's own (the usual case): a
    100,000-job ledger need not hold every prompt twice."""
    texts = job.texts.to_dict()
    for name in ("prompt", "negative_prompt"):
        if texts[name] == getattr(job.request, name):
            del texts[name]
    return json.dumps(texts, ensure_ascii=False)


def job_from_row(row: Any) -> Job:
    request = RenderRequest.from_json(row["request"])
    texts = json.loads(row["texts"])
    texts.setdefault("prompt", request.prompt)
    texts.setdefault("negative_prompt", request.negative_prompt)
    return Job(
        id=row["id"], pipeline=row["pipeline"],
        brief=Brief.model_validate_json(row["data"]), platform=row["platform"],
        state=JobState(row["state"]), texts=Texts.from_dict(texts),
        request=request, sinks=tuple(json.loads(row["sinks"])),
        attempts=row["attempts"], estimated_cost_usd=row["estimated_cost"], cost_usd=row["cost"],
        cached=bool(row["cached"]), operation_id=row["operation_id"],
        video_sha256=row["video_sha256"], last_error=row["last_error"], due_at=row["due_at"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )  # fmt: skip


def video_from_row(row: Any, store_dir: Path) -> Video:
    return Video(
        sha256=row["sha256"], path=store_dir / row["path"], size=row["size"],
        duration_s=row["duration_s"], width=row["width"], height=row["height"], mime=row["mime"],
        video_codec=row["video_codec"], audio_codec=row["audio_codec"],
        poster=store_dir / row["poster"] if row["poster"] else None,
    )  # fmt: skip


def receipt_from_row(row: Any) -> Receipt:
    return Receipt(
        sink=row["sink"],
        remote_id=row["remote_id"],
        url=row["url"],
        published_at=row["published_at"],
        details=json.loads(row["details"]) if row["details"] else {},
    )


async def record_transition(
    conn: AsyncConnection,
    job_id: str,
    at: datetime,
    before: str | None,
    after: str,
    message: str | None,
) -> None:
    """Add one line to a job's history (in the caller's transaction)."""
    await conn.execute(insert(t.transitions).values(
        job_id=job_id, at=at, from_state=before, to_state=after, message=message))  # fmt: skip
