"""Writing a plan into the ledger: new jobs in bulk, superseded ones cancelled, source cursors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import schema as t
from .ledger_rows import (
    RELAXED,
    PlannedJob,
    bulk_insert,
    insert_ignore,
    job_row,
    record_transition,
)
from .models import JobState


class PlanningWrites:
    """The planner's side of the ledger (mixed into :class:`reelpress.ledger.Ledger`)."""

    engine: AsyncEngine

    async def save_planned(self, items: Sequence[PlannedJob], now: datetime) -> list[str]:
        """Make these the current jobs of their briefs and platforms. New ids are inserted; a
        job that was superseded and is current again (an edit was reverted) is planned again;
        any other job of the same brief and platform that has not started is cancelled, so an
        article edited twice before the run pays once. Returns the ids that now need work."""
        if not items:
            return []
        ids = [item.job.id for item in items]
        async with self.engine.execution_options(**{RELAXED: True}).begin() as conn:
            known = {
                row.id: row
                for row in await conn.execute(
                    select(
                        t.jobs.c.id, t.jobs.c.state, t.jobs.c.last_error, t.jobs.c.plan_key
                    ).where(t.jobs.c.id.in_(ids))
                )
            }
            fresh = [item for item in items if item.job.id not in known]
            revived = [item for item in items if _superseded(known.get(item.job.id))]
            for item in items:  # the same job, reached from a new plan key: remember that one
                row = known.get(item.job.id)
                if row is not None and item.plan_key and row.plan_key != item.plan_key:
                    await conn.execute(update(t.jobs).where(t.jobs.c.id == item.job.id)
                                       .values(plan_key=item.plan_key))  # fmt: skip
            if not fresh and not revived:
                return []
            briefs = {item.brief_key: item for item in fresh}
            if briefs:
                await conn.execute(insert_ignore(conn, t.briefs), [
                    {"key": key, "brief_id": item.job.brief.id, "data": item.brief_json,
                     "created_at": now} for key, item in briefs.items()])  # fmt: skip
            await self._supersede(conn, [*fresh, *revived], now)  # finds only other jobs
            for item in revived:
                await conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.id == item.job.id, t.jobs.c.state == "cancelled")
                    .values(state="planned", due_at=now, last_error=None, updated_at=now)
                )
                await record_transition(
                    conn,
                    item.job.id,
                    now,
                    "cancelled",
                    "planned",
                    "current again: the brief went back to this version",
                )
            if fresh:
                await bulk_insert(conn, t.jobs, [job_row(item, now) for item in fresh])
        return [item.job.id for item in (*fresh, *revived)]

    async def known_plan_keys(self, keys: Sequence[str]) -> set[str]:
        """The plan keys the ledger has for jobs that are still current (not cancelled)."""
        found: set[str] = set()
        async with self.engine.begin() as conn:
            for start in range(0, len(keys), 5000):
                query = select(t.jobs.c.plan_key).where(
                    t.jobs.c.plan_key.in_(keys[start : start + 5000]),
                    t.jobs.c.state != JobState.CANCELLED.value,
                )
                found.update(key for key in (await conn.execute(query)).scalars() if key)
        return found

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
            message = f"{SUPERSEDED} {new_id[:12]} (the content or template changed)"
            await conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id == job_id, t.jobs.c.state == "planned")
                .values(state="cancelled", last_error=message, due_at=None, updated_at=now)
            )
            await record_transition(conn, job_id, now, "planned", "cancelled", message)

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


SUPERSEDED = "superseded by job"


def _superseded(row: Any) -> bool:
    """Whether a known job was cancelled only because a newer version of its brief came."""
    return (
        row is not None
        and row.state == JobState.CANCELLED.value
        and (row.last_error or "").startswith(SUPERSEDED)
    )
