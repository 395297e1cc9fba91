"""Planning: sources → briefs → (hooks, templates, provider rules) → jobs in the ledger.

Streaming end to end: briefs are handled in small batches and written as they come, so a catalog
of any size plans in flat memory. Nothing here spends money or calls a provider's API.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from . import schema as t
from .assets import AssetError, Assets
from .errors import InvalidRequest, SkipBrief, TemplateError
from .events import JobEvent, emit
from .ledger import Ledger, PlannedJob, brief_json, job_id_for, utcnow
from .models import Brief, Job, JobState, Platform, Texts, sha256_text
from .pipeline import Pipeline
from .plugin_api import Bookmark, Skipped, SourceItem

BATCH = 1000
OVERLAP = False
MAX_ISSUES = 1000
SAMPLE = 25


@dataclass(frozen=True)
class PlanIssue:
    where: str
    message: str


@dataclass
class PlanReport:
    """What a planning pass found. Issue lists are capped; the counts are exact."""

    briefs: int = 0
    jobs: int = 0
    new: int = 0
    estimated_cost_new: float = 0.0
    estimated_cost_all: float = 0.0
    seconds_new: float = 0.0
    adjusted: int = 0
    skipped_count: int = 0
    failed_count: int = 0
    skipped: list[PlanIssue] = field(default_factory=list)
    failed: list[PlanIssue] = field(default_factory=list)
    by_platform: Counter[str] = field(default_factory=Counter)
    sample: list[tuple[Job, bool]] = field(default_factory=list)
    """The first jobs planned, each with whether it is new."""

    @property
    def existing(self) -> int:
        return self.jobs - self.new

    def skip(self, where: str, message: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_ISSUES:
            self.skipped.append(PlanIssue(where, message))

    def fail(self, where: str, message: str) -> None:
        self.failed_count += 1
        if len(self.failed) < MAX_ISSUES:
            self.failed.append(PlanIssue(where, message))


class Planner:
    """Plans one pipeline into its ledger (or, with ``write=False``, only reports)."""

    def __init__(
        self,
        pipeline: Pipeline,
        ledger: Ledger,
        *,
        clock: Callable[[], datetime] = utcnow,
        sample: int = SAMPLE,
    ) -> None:
        self.pipeline = pipeline
        self.ledger = ledger
        self.clock = clock
        self.sample = sample
        self._prepare = list(pipeline.host.impls("prepare_brief"))
        self._observed = any(True for _ in pipeline.host.impls("job_event"))
        self._pending: tuple[asyncio.Future[Any], list[PlannedJob], datetime] | None = None

    async def plan(
        self, *, write: bool = True, progress: Callable[[PlanReport], None] | None = None
    ) -> PlanReport:
        report = PlanReport()
        assets = Assets(
            self.pipeline.store, self.ledger if write else None, self.pipeline.spec.base_dir
        )
        seen: dict[str, str] = {}
        try:
            for spec, source in self.pipeline.sources:
                cursor = await self.ledger.get_cursor(self.pipeline.name, spec.name)
                batch: list[Brief] = []
                stream = source.briefs(cursor)
                async for item_ in _closing(stream):
                    item: object = item_  # a plugin may yield anything; say so if it does
                    if isinstance(item, Skipped):
                        report.skip(f"{spec.name}: {item.location}", item.reason)
                    elif isinstance(item, Bookmark):
                        await self._flush(batch, assets, report, write)
                        await self._drain(report, write)
                        batch = []
                        if write:
                            await self.ledger.save_cursor(
                                self.pipeline.name, spec.name, item.cursor, self.clock()
                            )
                    elif isinstance(item, Brief):
                        if item.id in seen:
                            report.skip(
                                f"{spec.name}: {item.id}",
                                f"duplicate brief id (already from source {seen[item.id]!r})",
                            )
                            continue
                        seen[item.id] = spec.name
                        batch.append(item)
                        if len(batch) >= BATCH:
                            await self._flush(batch, assets, report, write)
                            batch = []
                            if progress:
                                progress(report)
                    else:
                        report.fail(
                            spec.name,
                            f"source yielded {type(item).__name__}, "
                            "expected Brief, Skipped or Bookmark",
                        )
                await self._flush(batch, assets, report, write)
                await self._drain(report, write)
                if progress:
                    progress(report)
        finally:
            if self._pending is not None:
                self._pending[0].cancel()
                self._pending = None
            await assets.close()
        return report

    async def _flush(
        self, briefs: list[Brief], assets: Assets, report: PlanReport, write: bool
    ) -> None:
        """Render a batch, then hand it to the ledger in the background: the write of one batch
        overlaps the rendering of the next (at most one write is outstanding, in order)."""
        if not briefs:
            return
        now = self.clock()
        prepared = [b for b in (self._prepared(b, report) for b in briefs) if b is not None]
        images = await asyncio.gather(*(self._image(b, assets, now) for b in prepared))
        planned: list[PlannedJob] = []
        for brief, image in zip(prepared, images, strict=True):
            if isinstance(image, AssetError):
                report.fail(brief.id, str(image))
                continue
            report.briefs += 1
            planned.extend(self._jobs_for(brief, image, report))
        await self._drain(report, write)
        if planned:
            save = self.ledger.save_planned(planned, now) if write else self._unknown_ids(
                [p.job.id for p in planned])  # fmt: skip
            self._pending = (asyncio.ensure_future(save), planned, now)
            if not OVERLAP:
                await self._drain(report, write)

    async def _drain(self, report: PlanReport, write: bool) -> None:
        """Wait for the outstanding ledger write and count what it found new."""
        if self._pending is None:
            return
        task, planned, now = self._pending
        self._pending = None
        new = set(await task)
        for item in planned:
            job, is_new = item.job, item.job.id in new
            report.jobs += 1
            report.estimated_cost_all += job.estimated_cost_usd
            if is_new:
                report.new += 1
                report.estimated_cost_new += job.estimated_cost_usd
                report.seconds_new += job.request.duration_s
                if write and self._observed:
                    emit(self.pipeline.host, JobEvent(
                        kind="planned", job_id=job.id, pipeline=job.pipeline,
                        brief_id=job.brief.id, platform=job.platform, state=JobState.PLANNED,
                        at=now, cost_usd=job.estimated_cost_usd))  # fmt: skip
            if len(report.sample) < self.sample:
                report.sample.append((job, is_new))

    def _prepared(self, brief: Brief, report: PlanReport) -> Brief | None:
        for plugin, fn in self._prepare:
            try:
                changed = fn(brief=brief, pipeline=self.pipeline.info)
            except SkipBrief as exc:
                report.skip(brief.id, f"skipped by plugin {plugin!r}: {exc}")
                return None
            except Exception as exc:
                report.fail(
                    brief.id,
                    f"plugin {plugin!r} failed in prepare_brief: {type(exc).__name__}: {exc}",
                )
                return None
            if changed is not None:
                if not isinstance(changed, Brief):
                    report.fail(
                        brief.id,
                        f"plugin {plugin!r} returned {type(changed).__name__} "
                        "from prepare_brief, expected a Brief or None",
                    )
                    return None
                brief = changed
        return brief

    async def _image(self, brief: Brief, assets: Assets, now: datetime) -> str | AssetError | None:
        if not brief.image:
            return None
        try:
            return await assets.resolve(brief.image, now)
        except AssetError as exc:
            return exc

    def _jobs_for(self, brief: Brief, image: str | None, report: PlanReport) -> list[PlannedJob]:
        pipeline = self.pipeline
        data = brief.template_data()
        text = brief_json(brief)
        key = sha256_text(text)
        out = []
        for platform in pipeline.platforms.values():
            where = f"{brief.id} → {platform.name}"
            try:
                texts = pipeline.templates.render(brief, platform, data=data)
            except TemplateError as exc:
                report.fail(where, str(exc))
                continue
            texts, changed = fit_texts(texts, platform)
            report.adjusted += changed
            if not texts.prompt:
                report.fail(where, f"template {platform.template} rendered an empty prompt")
                continue
            request = pipeline.provider.build_request(
                texts=texts, platform=platform, brief=brief, image=image
            )
            try:
                pipeline.provider.validate(request)
            except InvalidRequest as exc:
                report.fail(where, f"provider {pipeline.provider.name!r} would reject this: {exc}")
                continue
            job = Job(
                id=job_id_for(pipeline.name, brief, platform.name, texts, request),
                pipeline=pipeline.name,
                brief=brief,
                platform=platform.name,
                state=JobState.PLANNED,
                texts=texts,
                request=request,
                sinks=tuple(pipeline.sinks),
                estimated_cost_usd=pipeline.provider.price(request),
            )
            report.by_platform[platform.name] += 1
            out.append(PlannedJob(job, key, text))
        return out

    async def _unknown_ids(self, ids: list[str]) -> set[str]:
        async with self.ledger.engine.begin() as conn:
            known = set(
                (await conn.execute(select(t.jobs.c.id).where(t.jobs.c.id.in_(ids)))).scalars()
            )
        return set(ids) - known


def fit_texts(texts: Texts, platform: Platform) -> tuple[Texts, bool]:
    """Keep within the platform's limits: title length, hashtag count, and caption length with
    the hashtags counted in (as Instagram and TikTok count them). Cuts at a word boundary."""
    title = _cut(texts.title, platform.title_max)
    hashtags = texts.hashtags[: platform.hashtags_max]
    while hashtags and len(" ".join(hashtags)) + 2 > platform.caption_max // 2:
        hashtags = hashtags[:-1]  # tags never crowd out the caption itself
    tag_room = len(" ".join(hashtags)) + 2 if hashtags else 0
    caption = _cut(texts.caption, max(0, platform.caption_max - tag_room))
    fitted = Texts(texts.prompt, texts.negative_prompt, title, caption, hashtags)
    return fitted, fitted != texts


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    cut = text[: limit - 1]
    if not text[limit - 1].isspace():  # the cut falls inside a word: drop the piece
        space = cut.rfind(" ")
        if space > limit // 2:
            cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


async def _closing(stream: AsyncIterator[SourceItem]) -> AsyncIterator[SourceItem]:
    """Iterate a source's stream and always close it, even when planning stops early, so a
    source's open files and connections are released at once, not when garbage is collected."""
    try:
        async for item in stream:
            yield item
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
