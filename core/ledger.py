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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from . import schema as t
from .errors import JobNotFound, LedgerError
from .ledger_planning import PlanningWrites
from .ledger_rows import (
    ACTIVE_STATES,
    BUSY_TIMEOUT_MS,
    ERROR_STATES,
    IN_FLIGHT,
    LEASE,
    RELAXED,
    STALE_RUN,
    JobRecord,
    JobSummary,
    PlannedJob,
    SubmitGate,
    brief_json,
    brief_key,
    insert_ignore,
    job_from_row,
    job_id_for,
    lease_free,
    receipt_from_row,
    record_transition,
    utcnow,
    video_from_row,
)
from .ledger_views import OperatorViews, spend_since
from .limits import RateWindow
from .models import TERMINAL_STATES, Job, JobState, Receipt, Video


class Ledger(PlanningWrites, OperatorViews):
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
        engine = create_async_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,  # one connection: SQLite has one writer anyway
            pool_size=1,
            max_overflow=0,
            pool_timeout=3600,
        )
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
                lease_free(now),
            )
            .order_by(t.jobs.c.due_at, t.jobs.c.created_at)
            .limit(limit)
        )
        if only is not None:
            due = due.where(t.jobs.c.id.in_(list(only)))
        stmt = (
            update(t.jobs)
            .where(t.jobs.c.id.in_(due.scalar_subquery()), lease_free(now))
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
            lease_free(now),
        )
        if only is not None:
            stmt = stmt.where(t.jobs.c.id.in_(list(only)))
        async with self.engine.begin() as conn:
            value = (await conn.execute(stmt)).scalar()
        if value is None:
            return None
        return t.UTCDateTime().process_result_value(value, conn.dialect)

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
            job=job_from_row(row),
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
        values.setdefault("last_error", message if to in ERROR_STATES else None)
        async with self.engine.begin() as conn:
            old = (await conn.execute(select(t.jobs.c.state).where(t.jobs.c.id == job_id))).scalar()
            done = await conn.execute(stmt.values(state=to.value, updated_at=now, **values))
            if done.rowcount != 1:
                return False
            await record_transition(conn, job_id, now, old, to.value, message)
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
                reason = f"{in_flight} renders in flight (limit {concurrency})"
                return SubmitGate(False, 1.0, reason, limit="concurrency")
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
                    return SubmitGate(False, max(wait, 0.001), f"rate limit {window}", limit="rate")
            for label, max_usd, start in budget:
                spent = await spend_since(
                    conn, job.pipeline, start, run_id if label == "run" else None
                )
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
            await record_transition(conn, job.id, now, "planned", "submitting", None)
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
        """Commit the operation id the instant the provider returns it. The submissions log keeps
        it even if the job was cancelled meanwhile: a render under way is never forgotten."""
        async with self.engine.begin() as conn:
            sub = (
                await conn.execute(
                    select(func.max(t.submissions.c.id)).where(t.submissions.c.job_id == job_id)
                )
            ).scalar()
            await conn.execute(
                update(t.submissions).where(t.submissions.c.id == sub).values(operation_id=op_id)
            )
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
            note = f"operation {op_id}"
            await record_transition(conn, job_id, now, "submitting", "submitted", note)
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
        video = video_from_row(row, store_dir)
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
        return video_from_row(row, store_dir) if row else None

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
                insert_ignore(conn, t.videos).values(
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
                    insert_ignore(conn, t.renders).values(
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
            note = "cache hit: no provider call" if cached else None
            await record_transition(conn, job.id, now, expect.value, "generated", note)
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
        return {r["sink"]: receipt_from_row(r) for r in rows}

    async def add_receipt(self, job_id: str, receipt: Receipt, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert_ignore(conn, t.receipts).values(
                    job_id=job_id,
                    sink=receipt.sink,
                    remote_id=receipt.remote_id,
                    url=receipt.url,
                    details=json.dumps(receipt.details) if receipt.details else None,
                    published_at=receipt.published_at or now,
                )
            )

    # --- operator actions ---------------------------------------------------------------------

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


__all__ = [
    "ACTIVE_STATES",
    "IN_FLIGHT",
    "LEASE",
    "STALE_RUN",
    "JobRecord",
    "JobSummary",
    "Ledger",
    "PlannedJob",
    "SubmitGate",
    "brief_json",
    "brief_key",
    "job_id_for",
    "utcnow",
]
