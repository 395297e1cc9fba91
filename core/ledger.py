"""The ledger: every job, submission, video and receipt, durably, in one database.

It is the single source of truth. Each state change is a compare-and-set (``WHERE state = :from
AND lease_owner = :me``) committed before the next side effect, so two runners, or a runner and an
operator, can never both act on a job. SQLite runs in WAL mode and every transaction begins
IMMEDIATE: writers queue behind one another instead of failing halfway.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Integer, String, Table, event, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Select

from . import schema as t
from .errors import JobNotFound, LedgerError
from .limits import RateWindow
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


class Ledger:
    """Async access to the ledger database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, url: str) -> Ledger:
        """Open (creating and migrating as needed) the ledger at ``url``."""
        parsed = make_url(url)
        if not parsed.drivername.startswith("sqlite"):
            raise LedgerError(f"unsupported ledger database {parsed.drivername!r}")
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=3600)
        _configure_sqlite(engine)
        ledger = cls(engine)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(t.migrate)
        except LedgerError:
            await engine.dispose()
            raise
        except Exception as exc:
            await engine.dispose()
            raise LedgerError(f"cannot open ledger {parsed.database}: {exc}") from exc
        return ledger

    async def close(self) -> None:
        await self.engine.dispose()

    # --- runs and leases ----------------------------------------------------------------------

    async def start_run(self, pipeline: str, now: datetime) -> str:
        run_id = uuid.uuid4().hex
        async with self.engine.begin() as conn:
            await conn.execute(insert(t.runs).values(
                id=run_id, pipeline=pipeline, host=socket.gethostname(), pid=os.getpid(),
                started_at=now, heartbeat_at=now))  # fmt: skip
        _LIVE_RUNS.add(run_id)
        return run_id

    async def heartbeat(self, run_id: str, now: datetime) -> None:
        """Say this run is alive and extend the leases it holds."""
        async with self.engine.begin() as conn:
            await conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(heartbeat_at=now))
            await conn.execute(
                update(t.jobs).where(t.jobs.c.lease_owner == run_id).values(lease_until=now + LEASE)
            )

    async def finish_run(self, run_id: str, now: datetime) -> None:
        _LIVE_RUNS.discard(run_id)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.runs)
                .where(t.runs.c.id == run_id)
                .values(finished_at=now, heartbeat_at=now)
            )
            await conn.execute(
                update(t.jobs)
                .where(t.jobs.c.lease_owner == run_id)
                .values(lease_owner=None, lease_until=None)
            )

    async def reclaim(self, now: datetime) -> list[str]:
        """Free the leases of runs that died (a dead process on this host, or a heartbeat gone
        stale anywhere). Returns the dead run ids. This is the crash recovery: their jobs become
        claimable at once instead of after their lease runs out."""
        host = socket.gethostname()
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(t.runs.c.id, t.runs.c.host, t.runs.c.pid, t.runs.c.heartbeat_at).where(
                        t.runs.c.finished_at.is_(None)
                    )
                )
            ).all()
            dead = [r.id for r in rows if _is_dead(r, host, now)]
            if dead:
                await conn.execute(
                    update(t.runs).where(t.runs.c.id.in_(dead)).values(finished_at=now)
                )
                await conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.lease_owner.in_(dead))
                    .values(lease_owner=None, lease_until=None)
                )
        return dead

    async def claim(
        self,
        pipeline: str,
        owner: str,
        now: datetime,
        *,
        limit: int,
        states: Sequence[str] = ACTIVE_STATES,
        only: Iterable[str] | None = None,
    ) -> list[str]:
        """Lease up to ``limit`` due jobs in ``states`` for ``owner``; returns their ids."""
        if limit <= 0:
            return []
        due = (
            select(t.jobs.c.id)
            .where(
                t.jobs.c.pipeline == pipeline,
                t.jobs.c.state.in_(states),
                t.jobs.c.due_at <= now,
                _lease_free(now),
            )
            .order_by(t.jobs.c.due_at, t.jobs.c.created_at)
            .limit(limit)
        )
        if only is not None:
            due = due.where(t.jobs.c.id.in_(list(only)))
        stmt = (
            update(t.jobs)
            .where(t.jobs.c.id.in_(due.scalar_subquery()), _lease_free(now))
            .values(lease_owner=owner, lease_until=now + LEASE)
            .returning(t.jobs.c.id)
        )
        async with self.engine.begin() as conn:
            return [row[0] for row in (await conn.execute(stmt)).all()]

    async def pick(self, pipeline: str, limit: int) -> list[str]:
        """For ``run --limit``: jobs under way first, then the oldest planned ones."""
        order = (t.jobs.c.state == JobState.PLANNED.value, t.jobs.c.created_at, t.jobs.c.id)
        stmt = (
            select(t.jobs.c.id)
            .where(
                t.jobs.c.pipeline == pipeline,
                t.jobs.c.state.in_(ACTIVE_STATES),
                t.jobs.c.due_at.is_not(None),
            )
            .order_by(*order)
            .limit(limit)
        )
        async with self.engine.begin() as conn:
            return list((await conn.execute(stmt)).scalars())

    async def release(self, job_id: str, owner: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id == job_id, t.jobs.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    async def next_due(
        self, pipeline: str, now: datetime, only: Iterable[str] | None = None
    ) -> datetime | None:
        """When the next job of this pipeline becomes due (None if no job will). Jobs another
        live run holds are its business, not ours."""
        stmt = select(func.min(t.jobs.c.due_at)).where(
            t.jobs.c.pipeline == pipeline,
            t.jobs.c.state.in_(ACTIVE_STATES),
            t.jobs.c.due_at.is_not(None),
            _lease_free(now),
        )
        if only is not None:
            stmt = stmt.where(t.jobs.c.id.in_(list(only)))
        async with self.engine.begin() as conn:
            value = (await conn.execute(stmt)).scalar()
        if value is None:
            return None
        return t.UTCDateTime().process_result_value(value, conn.dialect)

    # --- planning -----------------------------------------------------------------------------

    async def save_planned(self, items: Sequence[PlannedJob], now: datetime) -> list[str]:
        """Insert jobs that are new (by id); a new job for a brief and platform cancels older
        ones that have not started, so an article edited twice before the run pays once.
        Returns the ids that were new."""
        if not items:
            return []
        ids = [item.job.id for item in items]
        async with self.engine.execution_options(**{RELAXED: True}).begin() as conn:
            existing = set(
                (await conn.execute(select(t.jobs.c.id).where(t.jobs.c.id.in_(ids)))).scalars()
            )
            fresh = [item for item in items if item.job.id not in existing]
            if not fresh:
                return []
            briefs = {item.brief_key: item for item in fresh}
            await conn.execute(
                _insert_ignore(conn, t.briefs),
                [
                    {
                        "key": key,
                        "brief_id": item.job.brief.id,
                        "data": item.brief_json,
                        "created_at": now,
                    }
                    for key, item in briefs.items()
                ],
            )
            await self._supersede(conn, fresh, now)  # before the insert: finds only older jobs
            await _bulk_insert(conn, t.jobs, [_job_row(item, now) for item in fresh])
        return [item.job.id for item in fresh]

    async def _supersede(
        self, conn: AsyncConnection, fresh: Sequence[PlannedJob], now: datetime
    ) -> None:
        newest = {(i.job.brief.id, i.job.platform): i.job.id for i in fresh}
        fresh_ids = {i.job.id for i in fresh}
        pipeline = fresh[0].job.pipeline
        rows = (
            await conn.execute(
                select(t.jobs.c.id, t.jobs.c.brief_id, t.jobs.c.platform)
                .where(
                    t.jobs.c.pipeline == pipeline,
                    t.jobs.c.state == JobState.PLANNED.value,
                    t.jobs.c.brief_id.in_({b for b, _ in newest}),
                    t.jobs.c.attempts == 0,
                    t.jobs.c.lease_owner.is_(None),
                )
                # look up by brief, never by scanning every planned job of the pipeline
                .with_hint(t.jobs, "INDEXED BY jobs_brief", "sqlite")
            )
        ).all()
        old = [
            (r.id, newest[(r.brief_id, r.platform)])
            for r in rows
            if (r.brief_id, r.platform) in newest and r.id not in fresh_ids
        ]
        for job_id, new_id in old:
            message = f"superseded by job {new_id[:12]} (the content or template changed)"
            await conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id == job_id, t.jobs.c.state == "planned")
                .values(state="cancelled", last_error=message, due_at=None, updated_at=now)
            )
            await conn.execute(
                insert(t.transitions).values(
                    job_id=job_id,
                    at=now,
                    from_state="planned",
                    to_state="cancelled",
                    message=message,
                )
            )

    async def get_cursor(self, pipeline: str, source: str) -> str | None:
        async with self.engine.begin() as conn:
            value = (
                await conn.execute(
                    select(t.cursors.c.cursor).where(
                        t.cursors.c.pipeline == pipeline, t.cursors.c.source == source
                    )
                )
            ).scalar()
        return None if value is None else str(value)

    async def save_cursor(self, pipeline: str, source: str, cursor: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(t.cursors)
                .where(t.cursors.c.pipeline == pipeline, t.cursors.c.source == source)
                .values(cursor=cursor, updated_at=now)
            )
            if done.rowcount == 0:
                await conn.execute(
                    insert(t.cursors).values(
                        pipeline=pipeline, source=source, cursor=cursor, updated_at=now
                    )
                )

    # --- the engine's reads and writes --------------------------------------------------------

    async def load(self, job_id: str) -> JobRecord:
        stmt = (
            select(t.jobs, t.briefs.c.data)
            .join(t.briefs, t.briefs.c.key == t.jobs.c.brief_key)
            .where(t.jobs.c.id == job_id)
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return JobRecord(
            job=_job_from_row(row),
            operation=json.loads(row["operation"]) if row["operation"] else None,
            lease_owner=row["lease_owner"],
            run_id=row["run_id"],
        )

    async def transition(
        self,
        job_id: str,
        expect: JobState | Sequence[JobState],
        to: JobState,
        now: datetime,
        *,
        owner: str | None,
        message: str | None = None,
        **values: Any,
    ) -> bool:
        """Move a job from ``expect`` to ``to`` if nobody else moved it first (and, with an
        ``owner``, only while that owner holds the lease). Records the change."""
        expected = [expect] if isinstance(expect, JobState) else list(expect)
        stmt = update(t.jobs).where(
            t.jobs.c.id == job_id, t.jobs.c.state.in_([s.value for s in expected])
        )
        if owner is not None:
            stmt = stmt.where(t.jobs.c.lease_owner == owner)
        if to in TERMINAL_STATES:
            values.setdefault("due_at", None)
        values.setdefault("last_error", message if to in _ERROR_STATES else None)
        async with self.engine.begin() as conn:
            old = (await conn.execute(select(t.jobs.c.state).where(t.jobs.c.id == job_id))).scalar()
            done = await conn.execute(stmt.values(state=to.value, updated_at=now, **values))
            if done.rowcount != 1:
                return False
            await conn.execute(
                insert(t.transitions).values(
                    job_id=job_id, at=now, from_state=old, to_state=to.value, message=message
                )
            )
        return True

    async def reschedule(
        self,
        job_id: str,
        owner: str | None,
        due_at: datetime | None,
        now: datetime,
        *,
        error: str | None = None,
        **values: Any,
    ) -> bool:
        """Keep the state, set when the job is next due (None parks it until an operator acts)."""
        values |= {"due_at": due_at, "updated_at": now, "last_error": error}
        stmt = update(t.jobs).where(t.jobs.c.id == job_id)
        if owner is not None:
            stmt = stmt.where(t.jobs.c.lease_owner == owner)
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt.values(**values))).rowcount == 1

    async def begin_submit(
        self,
        record: JobRecord,
        owner: str,
        run_id: str,
        now: datetime,
        *,
        windows: Sequence[RateWindow],
        concurrency: int,
        budget: Sequence[tuple[str, float, datetime]],
    ) -> SubmitGate:
        """Atomically check the rate windows, the in-flight cap and the budget, then commit
        ``submitting`` and log the submission. Nothing reaches the provider before this commits.

        ``budget`` is (label, max_usd, period start) per cap.
        """
        job = record.job
        provider = job.request.provider
        async with self.engine.begin() as conn:
            in_flight = (
                await conn.execute(
                    select(func.count())
                    .select_from(t.jobs)
                    .where(t.jobs.c.provider == provider, t.jobs.c.state.in_(IN_FLIGHT))
                )
            ).scalar_one()
            if in_flight >= concurrency:
                return SubmitGate(
                    False, 1.0, f"{in_flight} renders in flight (limit {concurrency})"
                )
            for window in windows:
                since = now - timedelta(seconds=window.seconds)
                recent = (
                    (
                        await conn.execute(
                            select(t.submissions.c.at)
                            .where(t.submissions.c.provider == provider, t.submissions.c.at > since)
                            .order_by(t.submissions.c.at.desc())
                            .limit(window.limit)
                        )
                    )
                    .scalars()
                    .all()
                )
                if len(recent) >= window.limit:
                    oldest = t.UTCDateTime().process_result_value(recent[-1], conn.dialect)
                    assert oldest is not None
                    wait = (oldest + timedelta(seconds=window.seconds) - now).total_seconds()
                    return SubmitGate(False, max(wait, 0.001), f"rate limit {window}")
            for label, max_usd, start in budget:
                spent = await _spent(conn, job.pipeline, start, run_id if label == "run" else None)
                if spent + job.estimated_cost_usd > max_usd + 1e-9:
                    return SubmitGate(
                        False,
                        over_budget=(
                            f"budget per {label} is ${max_usd:.2f}: ${spent:.2f} spent or "
                            f"committed, this job would add ${job.estimated_cost_usd:.2f}"
                        ),
                    )
            done = await conn.execute(
                update(t.jobs)
                .where(
                    t.jobs.c.id == job.id,
                    t.jobs.c.state == "planned",
                    t.jobs.c.lease_owner == owner,
                )
                .values(
                    state="submitting",
                    attempts=t.jobs.c.attempts + 1,
                    run_id=run_id,
                    updated_at=now,
                    operation_id=None,
                    operation=None,
                )
            )
            if done.rowcount != 1:
                return SubmitGate(False, reason="job changed under us")
            await conn.execute(
                insert(t.submissions).values(
                    job_id=job.id,
                    provider=provider,
                    request_key=job.request_key,
                    run_id=run_id,
                    at=now,
                )
            )
            await conn.execute(
                insert(t.transitions).values(
                    job_id=job.id, at=now, from_state="planned", to_state="submitting", message=None
                )
            )
        return SubmitGate(True)

    async def save_operation(
        self,
        job_id: str,
        owner: str,
        op_id: str,
        data: dict[str, Any],
        now: datetime,
        poll_at: datetime,
    ) -> bool:
        """Commit the operation id the instant the provider returns it."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(t.jobs)
                .where(
                    t.jobs.c.id == job_id,
                    t.jobs.c.state == "submitting",
                    t.jobs.c.lease_owner == owner,
                )
                .values(
                    state="submitted",
                    operation_id=op_id,
                    operation=json.dumps(data),
                    due_at=poll_at,
                    updated_at=now,
                    last_error=None,
                )
            )
            if done.rowcount != 1:
                return False
            sub = (
                await conn.execute(
                    select(func.max(t.submissions.c.id)).where(t.submissions.c.job_id == job_id)
                )
            ).scalar()
            await conn.execute(
                update(t.submissions).where(t.submissions.c.id == sub).values(operation_id=op_id)
            )
            await conn.execute(
                insert(t.transitions).values(
                    job_id=job_id,
                    at=now,
                    from_state="submitting",
                    to_state="submitted",
                    message=f"operation {op_id}",
                )
            )
        return True

    async def cached_video(self, request_key: str, store_dir: Path) -> Video | None:
        """The stored video for a request, if there is one and its file is intact."""
        stmt = (
            select(t.videos)
            .join(t.renders, t.renders.c.video_sha256 == t.videos.c.sha256)
            .where(t.renders.c.request_key == request_key)
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            return None
        video = _video_from_row(row, store_dir)
        try:
            intact = video.path.stat().st_size == video.size
        except OSError:
            intact = False
        return video if intact else None

    async def video(self, sha256: str, store_dir: Path) -> Video | None:
        async with self.engine.begin() as conn:
            row = (
                (await conn.execute(select(t.videos).where(t.videos.c.sha256 == sha256)))
                .mappings()
                .first()
            )
        return _video_from_row(row, store_dir) if row else None

    async def record_generated(
        self,
        job: Job,
        owner: str,
        video: Video,
        store_dir: Path,
        now: datetime,
        *,
        cost: float,
        cached: bool,
        expect: JobState,
    ) -> bool:
        """Store the video facts, remember the render (the cache) and move the job on."""
        async with self.engine.begin() as conn:
            await conn.execute(
                _insert_ignore(conn, t.videos).values(
                    sha256=video.sha256,
                    path=video.path.relative_to(store_dir).as_posix(),
                    size=video.size,
                    duration_s=video.duration_s,
                    width=video.width,
                    height=video.height,
                    mime=video.mime,
                    video_codec=video.video_codec,
                    audio_codec=video.audio_codec,
                    poster=video.poster.relative_to(store_dir).as_posix() if video.poster else None,
                    created_at=now,
                )
            )
            if not cached:
                await conn.execute(
                    _insert_ignore(conn, t.renders).values(
                        request_key=job.request_key,
                        video_sha256=video.sha256,
                        provider=job.request.provider,
                        model=job.request.model,
                        cost=cost,
                        created_at=now,
                    )
                )
            done = await conn.execute(
                update(t.jobs)
                .where(
                    t.jobs.c.id == job.id,
                    t.jobs.c.state == expect.value,
                    t.jobs.c.lease_owner == owner,
                )
                .values(
                    state="generated",
                    video_sha256=video.sha256,
                    cost=cost,
                    cached=cached,
                    generated_at=now,
                    due_at=now,
                    updated_at=now,
                    last_error=None,
                )
            )
            if done.rowcount != 1:
                return False
            await conn.execute(
                insert(t.transitions).values(
                    job_id=job.id,
                    at=now,
                    from_state=expect.value,
                    to_state="generated",
                    message="cache hit: no provider call" if cached else None,
                )
            )
        return True

    async def count_publish_attempt(self, job_id: str) -> int:
        """Count one more failed publishing attempt; returns the new count."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id == job_id)
                .values(publish_attempts=t.jobs.c.publish_attempts + 1)
            )
            return int(
                (
                    await conn.execute(
                        select(t.jobs.c.publish_attempts).where(t.jobs.c.id == job_id)
                    )
                ).scalar_one()
            )

    async def receipts(self, job_id: str) -> dict[str, Receipt]:
        async with self.engine.begin() as conn:
            rows = (
                (await conn.execute(select(t.receipts).where(t.receipts.c.job_id == job_id)))
                .mappings()
                .all()
            )
        return {r["sink"]: _receipt_from_row(r) for r in rows}

    async def add_receipt(self, job_id: str, receipt: Receipt, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                _insert_ignore(conn, t.receipts).values(
                    job_id=job_id,
                    sink=receipt.sink,
                    remote_id=receipt.remote_id,
                    url=receipt.url,
                    details=json.dumps(receipt.details) if receipt.details else None,
                    published_at=receipt.published_at or now,
                )
            )

    # --- operator views and actions -----------------------------------------------------------

    async def resolve(self, prefix: str) -> str:
        """A full job id from an id or a unique prefix of one."""
        if len(prefix) < 4:
            raise JobNotFound(f"job id {prefix!r} is too short; give at least 4 characters")
        async with self.engine.begin() as conn:
            ids = (
                (
                    await conn.execute(
                        select(t.jobs.c.id)  # '%' and '_' in a prefix are not wildcards
                        .where(t.jobs.c.id.startswith(prefix, autoescape=True))
                        .limit(2)
                    )
                )
                .scalars()
                .all()
            )
        if not ids:
            raise JobNotFound(f"no job with id {prefix!r}")
        if len(ids) > 1:
            raise JobNotFound(f"job id {prefix!r} is ambiguous; give more characters")
        return str(ids[0])

    async def retry_job(self, job_id: str, now: datetime) -> tuple[JobState, JobState]:
        """Operator: try a stopped job again. Returns (state before, state after).

        A failed, filtered, over-budget, cancelled or needs-reconcile job is planned afresh (for
        needs-reconcile that means submitting again: the operator's call). A generated job whose
        publishing stopped is made due again; if its video is gone it is rendered again.
        """
        record = await self.load(job_id)
        state = record.job.state
        if state is JobState.PUBLISHED:
            raise LedgerError(f"job {job_id[:12]} is already published; nothing to retry")
        fresh = {"due_at": now, "last_error": None, "publish_attempts": 0}
        if state in TERMINAL_STATES:
            to = JobState.PLANNED
            fresh |= {"attempts": 0, "operation_id": None, "operation": None, "cost": None,
                      "video_sha256": None, "lease_owner": None, "lease_until": None}  # fmt: skip
        elif state is JobState.GENERATED and record.job.video_sha256 is None:
            to, fresh = JobState.PLANNED, fresh | {"attempts": 0}
        else:
            to = state
        if to is state:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(t.jobs).where(t.jobs.c.id == job_id).values(updated_at=now, **fresh)
                )
            return state, state
        if not await self.transition(
            job_id, state, to, now, owner=None, message="retried by operator", **fresh
        ):
            raise LedgerError(f"job {job_id[:12]} changed while retrying; try again")
        return state, to

    async def cancel_job(self, job_id: str, now: datetime) -> JobState:
        """Operator: stop a job that has not finished. Returns the state it was in."""
        record = await self.load(job_id)
        state = record.job.state
        if state in TERMINAL_STATES:
            raise LedgerError(f"job {job_id[:12]} is already {state.value}; nothing to cancel")
        message = "cancelled by operator"
        if state.value in IN_FLIGHT:  # a submission may have reached the provider already
            message += "; the provider may still finish (and bill) the render already under way"
        if not await self.transition(
            job_id, state, JobState.CANCELLED, now, owner=None, message=message
        ):
            raise LedgerError(f"job {job_id[:12]} changed while cancelling; try again")
        return state

    async def counts(self, pipeline: str, only: Iterable[str] | None = None) -> dict[str, int]:
        stmt: Select[Any] = (
            select(t.jobs.c.state, func.count())
            .where(t.jobs.c.pipeline == pipeline)
            .group_by(t.jobs.c.state)
        )
        if only is not None:
            stmt = stmt.where(t.jobs.c.id.in_(list(only)))
        async with self.engine.begin() as conn:
            return {state: n for state, n in (await conn.execute(stmt)).all()}

    async def jobs(
        self,
        pipeline: str | None,
        *,
        states: Iterable[str] | None = None,
        ids: Iterable[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobSummary]:
        stmt = select(
            t.jobs.c.id,
            t.jobs.c.brief_id,
            t.jobs.c.platform,
            t.jobs.c.state,
            t.jobs.c.texts,
            t.jobs.c.duration_s,
            t.jobs.c.estimated_cost,
            t.jobs.c.cost,
            t.jobs.c.cached,
            t.jobs.c.attempts,
            t.jobs.c.last_error,
            t.jobs.c.updated_at,
            t.jobs.c.due_at,
        )
        if pipeline is not None:
            stmt = stmt.where(t.jobs.c.pipeline == pipeline)
        if states:
            stmt = stmt.where(t.jobs.c.state.in_(list(states)))
        if ids is not None:
            stmt = stmt.where(t.jobs.c.id.in_(list(ids)))
        stmt = stmt.order_by(t.jobs.c.created_at, t.jobs.c.id).limit(limit).offset(offset)
        async with self.engine.begin() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [JobSummary(
            id=r["id"], brief_id=r["brief_id"], platform=r["platform"], state=r["state"],
            title=json.loads(r["texts"]).get("title", ""), duration_s=r["duration_s"],
            estimated_cost=r["estimated_cost"], cost=r["cost"], cached=bool(r["cached"]),
            attempts=r["attempts"], last_error=r["last_error"], updated_at=r["updated_at"],
            due_at=r["due_at"]) for r in rows]  # fmt: skip

    async def history(self, job_id: str) -> list[tuple[datetime, str | None, str, str | None]]:
        """(time, from, to, message) for every change, starting with the job's creation."""
        async with self.engine.begin() as conn:
            created = (
                await conn.execute(select(t.jobs.c.created_at).where(t.jobs.c.id == job_id))
            ).scalar()
            rows = (
                (
                    await conn.execute(
                        select(t.transitions)
                        .where(t.transitions.c.job_id == job_id)
                        .order_by(t.transitions.c.id)
                    )
                )
                .mappings()
                .all()
            )
        created_at = t.UTCDateTime().process_result_value(created, conn.dialect)
        if created_at is None:
            return []
        changes = [(r["at"], r["from_state"], r["to_state"], r["message"]) for r in rows]
        return [(created_at, None, "planned", None), *changes]

    async def submissions(self, job_id: str | None = None) -> list[dict[str, Any]]:
        stmt = select(t.submissions).order_by(t.submissions.c.id)
        if job_id is not None:
            stmt = stmt.where(t.submissions.c.job_id == job_id)
        async with self.engine.begin() as conn:
            return [dict(r) for r in (await conn.execute(stmt)).mappings().all()]

    async def costs(
        self, pipeline: str | None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Spend by day, provider and model (cache hits listed, at no cost)."""
        day = func.substr(func.cast(t.jobs.c.generated_at, String), 1, 10)
        stmt = (
            select(
                day.label("day"),
                t.jobs.c.provider,
                t.jobs.c.model,
                func.count().label("videos"),
                func.sum(t.jobs.c.duration_s).label("seconds"),
                func.sum(func.coalesce(t.jobs.c.cost, 0.0)).label("cost"),
                func.sum(func.cast(t.jobs.c.cached, Integer)).label("cached"),
            )
            .where(t.jobs.c.generated_at.is_not(None))
            .group_by(day, t.jobs.c.provider, t.jobs.c.model)
            .order_by(day)
        )
        if pipeline is not None:
            stmt = stmt.where(t.jobs.c.pipeline == pipeline)
        if since is not None:
            stmt = stmt.where(t.jobs.c.generated_at >= since)
        async with self.engine.begin() as conn:
            return [dict(r) for r in (await conn.execute(stmt)).mappings().all()]

    async def committed_spend(self, pipeline: str, since: datetime) -> float:
        async with self.engine.begin() as conn:
            return await _spent(conn, pipeline, since, None)


_ERROR_STATES = {
    JobState.FAILED,
    JobState.FILTERED,
    JobState.OVER_BUDGET,
    JobState.CANCELLED,
    JobState.NEEDS_RECONCILE,
}


async def _spent(
    conn: AsyncConnection, pipeline: str, since: datetime, run_id: str | None
) -> float:
    """Money spent since ``since`` plus money committed to renders still in flight."""
    charged = select(func.coalesce(func.sum(t.jobs.c.cost), 0.0)).where(
        t.jobs.c.pipeline == pipeline, t.jobs.c.cost.is_not(None)
    )
    flying = select(func.coalesce(func.sum(t.jobs.c.estimated_cost), 0.0)).where(
        t.jobs.c.pipeline == pipeline, t.jobs.c.state.in_(IN_FLIGHT)
    )
    if run_id is not None:
        charged = charged.where(t.jobs.c.run_id == run_id)
        flying = flying.where(t.jobs.c.run_id == run_id)
    else:
        charged = charged.where(t.jobs.c.generated_at >= since)
    return float((await conn.execute(charged)).scalar_one()) + float(
        (await conn.execute(flying)).scalar_one()
    )


def _lease_free(now: datetime) -> Any:
    return or_(t.jobs.c.lease_owner.is_(None), t.jobs.c.lease_until < now)


async def _bulk_insert(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
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


def _insert_ignore(conn: AsyncConnection, table: Any) -> Any:
    """INSERT that skips rows whose key exists (same spelling on SQLite and PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    return postgresql_insert(table).on_conflict_do_nothing()


def _job_row(item: PlannedJob, now: datetime) -> dict[str, Any]:
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
        "texts": _texts_json(job),
        "sinks": json.dumps(list(job.sinks)),
        "duration_s": float(job.request.duration_s),
        "estimated_cost": job.estimated_cost_usd,
        "cached": False,
        "attempts": 0,
        "publish_attempts": 0,
        "due_at": now,
        "created_at": now,
        "updated_at": now,
    }  # fmt: skip (columns left out are NULL)


def _texts_json(job: Job) -> str:
    """The texts, leaving out the prompts when they are the request's own (the usual case): a
    100,000-job ledger need not hold every prompt twice."""
    texts = job.texts.to_dict()
    for name in ("prompt", "negative_prompt"):
        if texts[name] == getattr(job.request, name):
            del texts[name]
    return json.dumps(texts, ensure_ascii=False)


def _job_from_row(row: Any) -> Job:
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


def _video_from_row(row: Any, store_dir: Path) -> Video:
    return Video(
        sha256=row["sha256"], path=store_dir / row["path"], size=row["size"],
        duration_s=row["duration_s"], width=row["width"], height=row["height"], mime=row["mime"],
        video_codec=row["video_codec"], audio_codec=row["audio_codec"],
        poster=store_dir / row["poster"] if row["poster"] else None,
    )  # fmt: skip


def _receipt_from_row(row: Any) -> Receipt:
    return Receipt(
        sink=row["sink"],
        remote_id=row["remote_id"],
        url=row["url"],
        published_at=row["published_at"],
        details=json.loads(row["details"]) if row["details"] else {},
    )


_LIVE_RUNS: set[str] = set()
"""Runs started by this process and not finished: with them, a run on this host with our own pid
(a container restarted as pid 1, say) can still be told apart from a crashed one."""


def _is_dead(run: Any, host: str, now: datetime) -> bool:
    if run.heartbeat_at < now - STALE_RUN:
        return True
    if run.host != host:
        return False
    if run.pid == os.getpid():
        return run.id not in _LIVE_RUNS
    return not _pid_alive(run.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Every commit is flushed to disk (FULL), because a committed "submitting" must survive
        # a power cut. Planned jobs are the exception (RELAXED): losing the last batch to a power
        # cut only means the next plan writes it again, and it halves the cost of a large plan.
        relaxed = conn.get_execution_options().get(RELAXED, False)
        conn.exec_driver_sql(f"PRAGMA synchronous={'NORMAL' if relaxed else 'FULL'}")
        conn.exec_driver_sql("BEGIN IMMEDIATE")


__all__ = ["JobRecord", "JobSummary", "Ledger", "PlannedJob", "SubmitGate"]
