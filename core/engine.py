"""The state machine: ``advance(job_id)`` does one step of one job against the ledger.

    planned → submitting → submitted → generated → published
    (terminal: failed · filtered · over_budget · cancelled · needs_reconcile)

Every step commits to the ledger before its next side effect, and every transition is a
compare-and-set under the caller's lease. The rule that stops paying twice: ``submitting`` is
committed BEFORE the provider is called and the operation id right after it answers; a job found
in ``submitting`` afterwards was interrupted mid-call and is never resubmitted on its own (unless
its provider says a repeat costs nothing). Everything after the operation id is safe to repeat.

Runners only decide who calls :meth:`Engine.advance` when.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from .errors import ProviderError, SinkError
from .events import JobEvent, emit
from .ledger import JobRecord, Ledger, utcnow
from .limits import backoff, period_start
from .media import MediaError, poster, probe
from .models import Job, JobState, Video
from .pipeline import Pipeline
from .plugin_api import Done, Failed, Filtered, Operation, Running

log = logging.getLogger("reelpress.engine")


@dataclass(frozen=True)
class Block:
    """Submissions must wait: a rate window is full, or too many renders are in flight."""

    kind: Literal["rate", "concurrency"]
    until: datetime
    reason: str


@dataclass(frozen=True)
class Step:
    """Where one call of ``advance`` left the job."""

    state: JobState | None
    due_at: datetime | None = None
    blocked: Block | None = None


class Engine:
    def __init__(
        self,
        pipeline: Pipeline,
        ledger: Ledger,
        *,
        owner: str,
        run_id: str,
        run_started: datetime,
        clock: Callable[[], datetime] = utcnow,
        observer: Callable[[JobEvent], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.ledger = ledger
        self.owner = owner
        self.run_id = run_id
        self.run_started = run_started
        self.clock = clock
        self.observer = observer
        self.max_attempts = pipeline.spec.limits.max_attempts

    async def advance(self, job_id: str) -> Step:
        record = await self.ledger.load(job_id)
        if record.lease_owner != self.owner:
            return Step(None)
        try:
            return await self._step(record)
        except Exception as exc:  # a bug (ours or a plugin's): stop this job, not the run
            log.exception("unexpected error advancing job %s", job_id)
            return await self._park(
                record.job, f"unexpected error: {type(exc).__name__}: {exc} (details in the "
                "log; `reelpress jobs retry` once it is fixed)")  # fmt: skip

    async def _step(self, record: JobRecord) -> Step:
        state = record.job.state
        if state is JobState.PLANNED:
            return await self._submit(record)
        if state is JobState.SUBMITTING:
            return await self._interrupted(record)
        if state is JobState.SUBMITTED:
            return await self._poll(record)
        if state is JobState.GENERATED:
            return await self._publish(record)
        return Step(state)

    # --- planned → submitting → submitted -----------------------------------------------------

    async def _submit(self, record: JobRecord) -> Step:
        job, now = record.job, self.clock()
        provider = self.pipeline.provider
        cached = await self.ledger.cached_video(job.request_key, self.pipeline.store.root)
        if cached is not None:
            if await self.ledger.record_generated(
                job,
                self.owner,
                cached,
                self.pipeline.store.root,
                now,
                cost=0.0,
                cached=True,
                expect=JobState.PLANNED,
            ):
                self._emit(
                    "cached",
                    job,
                    JobState.GENERATED,
                    now,
                    cost=0.0,
                    message="cache hit: same request rendered before, no provider call",
                )
                return Step(JobState.GENERATED, now)
            return Step(None)
        gate = await self.ledger.begin_submit(
            record,
            self.owner,
            self.run_id,
            now,
            windows=self.pipeline.windows,
            concurrency=self.pipeline.concurrency,
            budget=[
                (cap.per, cap.max_usd, period_start(cap.per, now, self.run_started))
                for cap in self.pipeline.spec.budget
            ],
        )
        if gate.over_budget:
            if await self.ledger.transition(
                job.id,
                JobState.PLANNED,
                JobState.OVER_BUDGET,
                now,
                owner=self.owner,
                message=gate.over_budget,
            ):
                self._emit("over_budget", job, JobState.OVER_BUDGET, now, message=gate.over_budget)
            return Step(JobState.OVER_BUDGET)
        if not gate.ok:
            if not gate.wait_s:
                return Step(None)
            until = now + timedelta(seconds=gate.wait_s)
            limit = gate.limit or "concurrency"
            return Step(JobState.PLANNED, job.due_at, Block(limit, until, gate.reason))
        try:
            operation = await provider.submit(job.request)
        except ProviderError as exc:
            return await self._submit_failed(job, exc)
        except Exception as exc:  # a plugin bug: we cannot know whether the call went out
            log.exception("provider %s raised while submitting job %s", provider.name, job.id)
            return await self._submit_failed(
                job,
                ProviderError(
                    f"provider {provider.name!r} raised {type(exc).__name__}: {exc}",
                    outcome_unknown=True,
                ),
            )
        now = self.clock()
        poll_at = now + timedelta(seconds=provider.first_poll_s)
        if not await self.ledger.save_operation(
            job.id, self.owner, operation.id, operation.data, now, poll_at
        ):
            log.error(
                "job %s changed while its submission was in flight; operation %s kept "
                "in the submissions log",
                job.id,
                operation.id,
            )
            return Step(None)
        self._emit("submitted", job, JobState.SUBMITTED, now, details={"operation": operation.id})
        return Step(JobState.SUBMITTED, poll_at)

    async def _submit_failed(self, job: Job, exc: ProviderError) -> Step:
        provider = self.pipeline.provider
        if exc.outcome_unknown and not provider.resubmit_safe:
            return await self._reconcile(
                job,
                f"the submission may have reached {provider.name} "
                f"(and may be billed) but no answer came back: {exc}",
            )
        attempts = job.attempts + 1
        if (exc.retryable or exc.outcome_unknown) and attempts < self.max_attempts:
            message = f"attempt {attempts} of {self.max_attempts} failed, retrying: {exc}"
            return await self._plan_again(job, JobState.SUBMITTING, attempts, exc, message)
        return await self._fail(job, JobState.SUBMITTING, f"submission failed: {exc}")

    async def _interrupted(self, record: JobRecord) -> Step:
        """A job left in ``submitting``: the run stopped between the commit and the answer."""
        job, now = record.job, self.clock()
        provider = self.pipeline.provider
        if provider.resubmit_safe:
            message = f"resubmitting after an interrupted submission (free for {provider.name})"
            if await self.ledger.transition(
                job.id,
                JobState.SUBMITTING,
                JobState.PLANNED,
                now,
                owner=self.owner,
                message=message,
                due_at=now,
            ):
                return Step(JobState.PLANNED, now)
            return Step(None)
        return await self._reconcile(
            job,
            (
                "the run stopped while submitting this job: the provider may have accepted (and "
                "billed) it. Check the provider's console, then `reelpress jobs retry "
                f"{job.id[:12]}` to submit again, or `reelpress jobs cancel {job.id[:12]}`"
            ),
        )

    async def _reconcile(self, job: Job, message: str) -> Step:
        now = self.clock()
        if await self.ledger.transition(
            job.id,
            JobState.SUBMITTING,
            JobState.NEEDS_RECONCILE,
            now,
            owner=self.owner,
            message=message,
        ):
            self._emit("needs_reconcile", job, JobState.NEEDS_RECONCILE, now, message=message)
            return Step(JobState.NEEDS_RECONCILE)
        return Step(None)

    # --- submitted → generated ----------------------------------------------------------------

    async def _poll(self, record: JobRecord) -> Step:
        job = record.job
        provider = self.pipeline.provider
        operation = Operation(job.operation_id or "", record.operation or {})
        try:
            result = await provider.poll(operation)
        except ProviderError as exc:
            return await self._poll_error(job, exc)
        now = self.clock()
        if isinstance(result, Running):
            due = now + timedelta(seconds=result.poll_after or provider.poll_interval_s)
            await self.ledger.reschedule(job.id, self.owner, due, now)
            return Step(JobState.SUBMITTED, due)
        if isinstance(result, Filtered):
            reasons = "; ".join(result.reasons) or "no reason given"
            message = f"the provider's safety filter removed the video: {reasons}"
            if await self.ledger.transition(
                job.id,
                JobState.SUBMITTED,
                JobState.FILTERED,
                now,
                owner=self.owner,
                message=message,
                cost=0.0,
            ):
                self._emit("filtered", job, JobState.FILTERED, now, cost=0.0, message=message)
            return Step(JobState.FILTERED)
        if isinstance(result, Failed):
            return await self._render_failed(job, result.error)
        return await self._download(job, result)

    async def _render_failed(self, job: Job, exc: ProviderError) -> Step:
        if exc.retryable and job.attempts < self.max_attempts:
            message = (f"render failed (attempt {job.attempts} of {self.max_attempts}), "
                       f"submitting again: {exc}")  # fmt: skip
            return await self._plan_again(job, JobState.SUBMITTED, job.attempts, exc, message)
        return await self._fail(job, JobState.SUBMITTED, f"render failed: {exc}")

    async def _plan_again(
        self, job: Job, expect: JobState, attempt: int, exc: ProviderError, message: str
    ) -> Step:
        """Back to ``planned`` for a new submission later (backoff, or the provider's hint)."""
        now = self.clock()
        due = now + self._delay(attempt, exc.retry_after)
        if await self.ledger.transition(job.id, expect, JobState.PLANNED, now, owner=self.owner,
                                        message=message, due_at=due, last_error=message,
                                        operation_id=None, operation=None):  # fmt: skip
            self._emit("retrying", job, JobState.PLANNED, now, message=message)
        return Step(JobState.PLANNED, due)

    async def _poll_error(self, job: Job, exc: ProviderError) -> Step:
        now = self.clock()
        if not exc.retryable:
            return await self._fail(job, JobState.SUBMITTED, f"polling failed: {exc}")
        due = now + self._delay(2, exc.retry_after)
        await self.ledger.reschedule(
            job.id, self.owner, due, now, error=f"polling failed, will ask again: {exc}"
        )
        return Step(JobState.SUBMITTED, due)

    async def _download(self, job: Job, done: Done) -> Step:
        store = self.pipeline.store
        tmp = store.tmp_path(".mp4")
        try:
            await self.pipeline.provider.download(done, tmp)
            info = await asyncio.to_thread(probe, tmp)
            sha, path, size = await asyncio.to_thread(store.put_video, tmp)
            still = store.root / "posters" / f"{sha}.jpg"
            if not still.exists():
                await asyncio.to_thread(poster, path, still, at_s=min(1.0, info.duration_s / 2))
        except ProviderError as exc:
            tmp.unlink(missing_ok=True)
            return await self._poll_error(job, exc)
        except MediaError as exc:
            tmp.unlink(missing_ok=True)
            return await self._render_failed(
                job,
                ProviderError(
                    f"the downloaded file is not a playable video: {exc}", retryable=True
                ),
            )
        video = Video(
            sha256=sha,
            path=path,
            size=size,
            duration_s=info.duration_s,
            width=info.width,
            height=info.height,
            video_codec=info.video_codec,
            audio_codec=info.audio_codec,
            poster=still,
        )
        now = self.clock()
        cost = done.cost_usd if done.cost_usd is not None else job.estimated_cost_usd
        if await self.ledger.record_generated(
            job,
            self.owner,
            video,
            store.root,
            now,
            cost=cost,
            cached=False,
            expect=JobState.SUBMITTED,
        ):
            self._emit("generated", job, JobState.GENERATED, now, cost=cost)
            return Step(JobState.GENERATED, now)
        return Step(None)

    # --- generated → published ----------------------------------------------------------------

    async def _publish(self, record: JobRecord) -> Step:
        job = record.job
        video = await self.ledger.video(job.video_sha256 or "", self.pipeline.store.root)
        if video is None or not self.pipeline.store.has(video.path, video.size):
            return await self._park(
                job,
                "the video is missing from the store "
                f"({self.pipeline.store.root}); `reelpress jobs retry` renders it again",
                video_sha256=None,
            )
        receipts = await self.ledger.receipts(job.id)
        for sink_name in job.sinks:
            if sink_name in receipts:
                continue
            sink = self.pipeline.sinks.get(sink_name)
            if sink is None:
                return await self._park(
                    job,
                    f"sink {sink_name!r} is no longer in the pipeline; "
                    "add it back or cancel the job",
                )
            try:
                receipt = await sink.find(job) or await sink.publish(job, video)
            except SinkError as exc:
                return await self._sink_failed(job, sink_name, exc)
            except Exception as exc:
                log.exception("sink %s raised while publishing job %s", sink_name, job.id)
                return await self._sink_failed(
                    job, sink_name, SinkError(f"{type(exc).__name__}: {exc}")
                )
            now = self.clock()
            await self.ledger.add_receipt(job.id, receipt, now)
            self._emit(
                "sink_published",
                job,
                JobState.GENERATED,
                now,
                details={"sink": sink_name, "url": receipt.url, "remote_id": receipt.remote_id},
            )
        now = self.clock()
        if await self.ledger.transition(
            job.id, JobState.GENERATED, JobState.PUBLISHED, now, owner=self.owner
        ):
            self._emit("published", job, JobState.PUBLISHED, now, cost=job.cost_usd)
            return Step(JobState.PUBLISHED)
        return Step(None)

    async def _sink_failed(self, job: Job, sink: str, exc: SinkError) -> Step:
        attempts = await self.ledger.count_publish_attempt(job.id)
        message = f"sink {sink!r} failed (attempt {attempts} of {self.max_attempts}): {exc}"
        if exc.retryable and attempts < self.max_attempts:
            now = self.clock()
            due = now + self._delay(attempts, exc.retry_after)
            await self.ledger.reschedule(job.id, self.owner, due, now, error=message)
            self._emit("retrying", job, JobState.GENERATED, now, message=message)
            return Step(JobState.GENERATED, due)
        return await self._park(job, message + "; `reelpress jobs retry` tries again")

    async def _park(self, job: Job, message: str, **values: object) -> Step:
        """Leave the job where it is, not due again until an operator acts (``jobs retry``)."""
        now = self.clock()
        await self.ledger.reschedule(job.id, self.owner, None, now, error=message, **values)
        self._emit("failed", job, job.state, now, message=message)
        return Step(job.state)

    # --- helpers ------------------------------------------------------------------------------

    async def _fail(self, job: Job, expect: JobState, message: str) -> Step:
        now = self.clock()
        if await self.ledger.transition(
            job.id, expect, JobState.FAILED, now, owner=self.owner, message=message
        ):
            self._emit("failed", job, JobState.FAILED, now, message=message)
            return Step(JobState.FAILED)
        return Step(None)

    def _delay(self, attempt: int, hint: float | None) -> timedelta:
        if hint is not None:
            return timedelta(seconds=hint)
        return backoff(attempt, jitter=random.random())

    def _emit(
        self,
        kind: str,
        job: Job,
        state: JobState,
        at: datetime,
        *,
        cost: float | None = None,
        message: str | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        event = JobEvent(
            kind=kind,
            job_id=job.id,
            pipeline=job.pipeline,
            brief_id=job.brief.id,
            platform=job.platform,
            state=state,
            at=at,
            cost_usd=cost,
            message=message,
            details=details or {},
        )
        if self.observer is not None:
            self.observer(event)
        emit(self.pipeline.host, event)
