"""The embedded runner: an asyncio loop over the ledger, no broker, no server.

It claims due jobs with a lease, drives each through :meth:`Engine.advance` under a concurrency
bound, and sleeps until the next job is due. A run that is killed leaves leases behind; the next
run frees those of dead processes at once (see :meth:`Ledger.reclaim`), which is the whole of crash
recovery: every step after a commit is safe to repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .engine import Engine
from .events import JobEvent
from .ledger import ACTIVE_STATES, Ledger, utcnow
from .models import JobState
from .pipeline import Pipeline

log = logging.getLogger("reelpress.runner")

HEARTBEAT_S = 15.0
MAX_IDLE_S = 5.0
"""Look at the ledger at least this often while waiting (new jobs, cancellations)."""
NOT_PLANNED = tuple(s for s in ACTIVE_STATES if s != JobState.PLANNED.value)


@dataclass
class RunResult:
    run_id: str
    counts: dict[str, int] = field(default_factory=dict)
    spent_usd: float = 0.0
    cache_hits: int = 0
    provider_calls: int = 0

    parked: int = 0
    """Jobs stopped mid-way until an operator acts (a sink that keeps failing, say)."""

    @property
    def problems(self) -> int:
        """Jobs that ended badly or wait on an operator."""
        bad = ("failed", "filtered", "over_budget", "needs_reconcile")
        return sum(self.counts.get(s, 0) for s in bad) + self.parked


class Runner:
    def __init__(
        self,
        pipeline: Pipeline,
        ledger: Ledger,
        *,
        only: Iterable[str] | None = None,
        workers: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        observer: Callable[[JobEvent], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.ledger = ledger
        self.only = set(only) if only is not None else None
        self.workers = workers or max(8, 2 * pipeline.concurrency)
        self.clock = clock
        self.observer = observer
        self._planned_blocked_until: datetime | None = None
        self._blocked_by = ""
        self._wake = asyncio.Event()

    async def run(self) -> RunResult:
        started = self.clock()
        run_id = await self.ledger.start_run(self.pipeline.name, started)
        result = RunResult(run_id)

        def observe(event: JobEvent) -> None:
            if event.kind == "cached":
                result.cache_hits += 1
            if event.kind == "submitted":
                result.provider_calls += 1
            if event.kind == "generated" and event.cost_usd:
                result.spent_usd += event.cost_usd
            if event.kind in ("generated", "cached") or event.state.terminal:
                if self._blocked_by == "concurrency":
                    self._planned_blocked_until = None  # a render slot just freed up
                self._wake.set()
            if self.observer is not None:
                self.observer(event)

        engine = Engine(
            self.pipeline,
            self.ledger,
            owner=run_id,
            run_id=run_id,
            run_started=started,
            clock=self.clock,
            observer=observe,
        )
        dead = await self.ledger.reclaim(started)
        if dead:
            log.info("freed the jobs of %d interrupted run(s)", len(dead))
        heartbeat = asyncio.create_task(self._heartbeat(run_id))
        active: dict[str, asyncio.Task[None]] = {}
        try:
            await self._loop(engine, run_id, active)
        finally:
            for task in active.values():
                task.cancel()
            await asyncio.gather(*active.values(), return_exceptions=True)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self.ledger.finish_run(run_id, self.clock())
        result.counts = await self.ledger.counts(self.pipeline.name, self.only)
        result.parked = await self.ledger.parked(self.pipeline.name, self.only)
        return result

    async def _loop(
        self, engine: Engine, run_id: str, active: dict[str, asyncio.Task[None]]
    ) -> None:
        while True:
            self._wake.clear()  # completions from here on wake the wait below
            now = self.clock()
            free = self.workers - len(active)
            claimed = await self.ledger.claim(
                self.pipeline.name, run_id, now, limit=free, states=NOT_PLANNED, only=self.only
            )
            free -= len(claimed)
            if free > 0 and (
                self._planned_blocked_until is None or now >= self._planned_blocked_until
            ):
                self._planned_blocked_until = None
                claimed += await self.ledger.claim(
                    self.pipeline.name,
                    run_id,
                    now,
                    limit=free,
                    states=(JobState.PLANNED.value,),
                    only=self.only,
                )
            for job_id in claimed:
                task = asyncio.create_task(self._drive(engine, job_id, run_id))
                active[job_id] = task
                task.add_done_callback(functools.partial(self._finished, active, job_id))
            if not active and not claimed:
                next_due = await self.ledger.next_due(self.pipeline.name, now, self.only)
                if next_due is None:
                    return
                wait = (next_due - self.clock()).total_seconds()
                if self._planned_blocked_until is not None:
                    wait = max(wait, (self._planned_blocked_until - self.clock()).total_seconds())
            elif claimed:
                continue  # there may be more due work and free workers
            else:
                wait = MAX_IDLE_S
                if self._planned_blocked_until is not None:
                    wait = min(wait, (self._planned_blocked_until - self.clock()).total_seconds())
            await self._sleep(max(0.01, min(wait, MAX_IDLE_S)))

    def _finished(
        self, active: dict[str, asyncio.Task[None]], job_id: str, _task: asyncio.Task[None]
    ) -> None:
        task = active.pop(job_id, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("job %s: unexpected error in the runner", job_id, exc_info=task.exception())
        self._wake.set()

    async def _drive(self, engine: Engine, job_id: str, run_id: str) -> None:
        """Advance one job for as long as it stays due now, then let it go."""
        try:
            while True:
                step = await engine.advance(job_id)
                if step.blocked is not None:
                    until = step.blocked.until
                    if self._planned_blocked_until is None or until > self._planned_blocked_until:
                        self._planned_blocked_until = until
                        self._blocked_by = step.blocked.kind
                    break
                if step.state is None or step.state.terminal or step.due_at is None:
                    break
                if step.due_at > self.clock():
                    break
        finally:
            await self.ledger.release(job_id, run_id)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _heartbeat(self, run_id: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self.ledger.heartbeat(run_id, self.clock())
            except Exception:
                log.exception("heartbeat failed")
