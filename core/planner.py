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

from sqlalchemy import select

from . import __version__
from . import schema as t
from .assets import AssetError, Assets
from .errors import SkipBrief
from .events import JobEvent, emit
from .ledger import Ledger, PlannedJob, brief_json, job_id_for, utcnow
from .models import Brief, Job, JobState, canonical_json, sha256_text
from .pipeline import Pipeline
from .plugin_api import Bookmark, Skipped, SourceItem
from .rendering import Rendered, RenderFailure, render_brief

BATCH = 1000
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


Work = list[tuple[Brief, str | None, list[str]]]
"""(brief, reference image hash, names of the platforms to render it for) per brief."""


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
        self._fingerprint = plan_fingerprint(pipeline)

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
                if progress:
                    progress(report)
        finally:
            await assets.close()
        return report

    async def _flush(
        self, briefs: list[Brief], assets: Assets, report: PlanReport, write: bool
    ) -> None:
        """Plan a batch of briefs: skip what the ledger already has, render the rest, save."""
        if not briefs:
            return
        now = self.clock()
        prepared = [b for b in (self._prepared(b, report) for b in briefs) if b is not None]
        images = await asyncio.gather(*(self._image(b, assets, now) for b in prepared))
        texts: dict[str, str] = {}
        ready: list[tuple[Brief, str | None]] = []
        for brief, image in zip(prepared, images, strict=True):
            if isinstance(image, AssetError):
                report.fail(brief.id, str(image))
                continue
            report.briefs += 1
            texts[brief.id] = brief_json(brief)
            ready.append((brief, image))
        platforms = self.pipeline.platforms
        keys = {(b.id, p): self._plan_key(texts[b.id], image, p) for b, image in ready
                for p in platforms}  # fmt: skip
        known = await self.ledger.known_plan_keys(list(keys.values()))
        work: Work = []
        for brief, image in ready:
            todo = [name for name in platforms if keys[brief.id, name] not in known]
            report.jobs += len(platforms) - len(todo)  # unchanged since the last plan
            if todo:
                work.append((brief, image, todo))
        if not work:
            return
        results = self._render(work)
        await self._save(work, results, texts, keys, now, report, write)

    def _render(self, work: Work) -> list[list[Rendered | RenderFailure]]:
        platforms = self.pipeline.platforms
        return [render_brief(self.pipeline, brief, image, [platforms[n] for n in names])
                for brief, image, names in work]  # fmt: skip

    async def _save(
        self,
        work: Work,
        results: list[list[Rendered | RenderFailure]],
        texts: dict[str, str],
        keys: dict[tuple[str, str], str],
        now: datetime,
        report: PlanReport,
        write: bool,
    ) -> None:
        pipeline = self.pipeline
        planned: list[PlannedJob] = []
        for (brief, _, _), rendered in zip(work, results, strict=True):
            text = texts[brief.id]
            brief_key = sha256_text(text)
            for item in rendered:
                if isinstance(item, RenderFailure):
                    report.fail(item.where, item.message)
                    continue
                report.adjusted += item.adjusted
                report.by_platform[item.platform] += 1
                job = Job(
                    id=job_id_for(pipeline.name, brief, item.platform, item.texts, item.request),
                    pipeline=pipeline.name, brief=brief, platform=item.platform,
                    state=JobState.PLANNED, texts=item.texts, request=item.request,
                    sinks=tuple(pipeline.sinks), estimated_cost_usd=item.estimated_cost_usd,
                )  # fmt: skip
                planned.append(PlannedJob(job, brief_key, text, keys[brief.id, item.platform]))
        if not planned:
            return
        if write:
            new = set(await self.ledger.save_planned(planned, now))
        else:
            new = await self._unknown_ids([p.job.id for p in planned])
        self._count(planned, new, report, now, write)

    def _count(
        self,
        planned: list[PlannedJob],
        new: set[str],
        report: PlanReport,
        now: datetime,
        write: bool,
    ) -> None:
        for item in planned:
            job, is_new = item.job, item.job.id in new
            report.jobs += 1
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

    def _plan_key(self, brief_text: str, image: str | None, platform: str) -> str:
        """What a job's content depends on besides the templates' output: if this key is in the
        ledger, the brief, its image, the platform and everything the pipeline renders with are
        unchanged, and rendering again would make the very same job."""
        return sha256_text(f"{self._fingerprint}\0{platform}\0{image}\0{brief_text}")[:32]

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

    async def _unknown_ids(self, ids: list[str]) -> set[str]:
        async with self.ledger.engine.begin() as conn:
            known = set(
                (await conn.execute(select(t.jobs.c.id).where(t.jobs.c.id.in_(ids)))).scalars()
            )
        return set(ids) - known


def plan_fingerprint(pipeline: Pipeline) -> str:
    """A hash of everything besides the brief that decides what a plan renders: every template
    file on the search path, the platforms, the provider and its settings, and the versions of
    reelpress and its plugins. While it stays the same, an unchanged brief needs no rendering."""
    parts: list[str] = [__version__, pipeline.name]
    for folder in pipeline.templates.search_path:
        for path in sorted(folder.rglob("*.j2")):
            parts += [path.relative_to(folder).as_posix(), path.read_text(encoding="utf-8")]
    provider = pipeline.provider
    parts += [
        canonical_json([p.model_dump(mode="json") for p in pipeline.platforms.values()]),
        f"{type(provider).__module__}.{type(provider).__qualname__}", provider.model,
        canonical_json(provider.config.model_dump(mode="json")),
        canonical_json(sorted(pipeline.templates.env.filters)),
        canonical_json(sorted((p.name, p.version or "") for p in pipeline.host.plugins.values())),
    ]  # fmt: skip
    return sha256_text("\0".join(parts))


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
