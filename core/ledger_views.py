"""Reading the ledger for people: listings, one job's history, spend."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select

from . import schema as t
from .ledger_rows import ACTIVE_STATES, IN_FLIGHT, JobSummary


class OperatorViews:
    """Queries behind ``reelpress jobs`` and ``costs`` (mixed into the Ledger)."""

    engine: AsyncEngine

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

    async def parked(self, pipeline: str, only: Iterable[str] | None = None) -> int:
        """Unfinished jobs that are not due again until an operator acts."""
        stmt = select(func.count()).select_from(t.jobs).where(
            t.jobs.c.pipeline == pipeline, t.jobs.c.state.in_(ACTIVE_STATES),
            t.jobs.c.due_at.is_(None))  # fmt: skip
        if only is not None:
            stmt = stmt.where(t.jobs.c.id.in_(list(only)))
        async with self.engine.begin() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def committed_spend(self, pipeline: str, since: datetime) -> float:
        async with self.engine.begin() as conn:
            return await spend_since(conn, pipeline, since, None)


async def spend_since(
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
