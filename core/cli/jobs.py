"""``reelpress jobs …`` and ``reelpress costs``: looking at and steering what the ledger holds."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from ..models import JobState
from . import EXIT_OK, cli, run_async
from .app import App
from .display import money, short, state_style, when

if TYPE_CHECKING:
    from ..ledger import Ledger

STATES = [s.value for s in JobState]


@cli.group()
def jobs() -> None:
    """List, inspect, retry and cancel jobs."""


@jobs.command("list")
@click.option(
    "-s",
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="Only jobs in this state (repeatable).",
)
@click.option("-n", "--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj  # fmt: skip
def list_jobs(app: App, states: tuple[str, ...], limit: int, offset: int, as_json: bool) -> None:
    """Jobs of this pipeline, oldest first."""

    async def body() -> int:
        async with app.ledger() as ledger:
            name = app.spec().name
            rows = await ledger.jobs(name, states=states or None, limit=limit, offset=offset)
            counts = await ledger.counts(name)
        if as_json:
            for r in rows:
                click.echo(json.dumps({
                    "id": r.id, "brief_id": r.brief_id, "platform": r.platform,
                    "state": r.state, "title": r.title, "duration_s": r.duration_s,
                    "estimated_cost_usd": r.estimated_cost, "cost_usd": r.cost,
                    "cached": r.cached, "attempts": r.attempts, "last_error": r.last_error,
                    "updated_at": r.updated_at.isoformat()}, ensure_ascii=False))  # fmt: skip
            return EXIT_OK
        table = Table(
            title_justify="left",
            title=f"Jobs of {name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            if counts
            else f"No jobs in {name}",
        )
        table.add_column("id", no_wrap=True)
        table.add_column("state", no_wrap=True)
        table.add_column("platform", no_wrap=True)
        table.add_column("cost", justify="right", no_wrap=True)
        table.add_column("updated", no_wrap=True)
        table.add_column("title · brief · note", ratio=1, overflow="fold")
        for r in rows:
            cost = money(r.cost if r.cost is not None else r.estimated_cost)
            if r.cost is None:
                cost = f"[dim]~{cost}[/]"
            note = r.last_error or ("cache hit" if r.cached else "")
            about = f"{escape(short(r.title, 60))}\n[dim]{escape(r.brief_id)}[/]"
            if note:
                about += f"\n[yellow]{escape(short(note, 160))}[/]"
            table.add_row(r.id[:8], f"[{state_style(r.state)}]{r.state}[/]", r.platform, cost,
                          when(r.updated_at), about)  # fmt: skip
        app.out.print(table)
        return EXIT_OK

    sys.exit(run_async(app, body))


@jobs.command("show")
@click.argument("job_id")
@click.pass_obj
def show(app: App, job_id: str) -> None:
    """Everything about one job: texts, request, video, receipts and its history."""

    async def body() -> int:
        async with app.ledger() as ledger:
            full = await ledger.resolve(job_id)
            record = await ledger.load(full)
            receipts = await ledger.receipts(full)
            history = await ledger.history(full)
            subs = await ledger.submissions(full)
            video = await ledger.video(record.job.video_sha256 or "", app.spec().store_dir)
        job, out = record.job, app.out
        out.print(f"[bold]Job {job.id}[/]  [{state_style(job.state)}]{job.state.value}[/]")
        rows = [
            ("brief", f"{job.brief.id} (revision {job.brief.revision or '–'})"),
            ("platform", job.platform),
            ("provider", f"{job.request.provider} / {job.request.model}"),
            ("request", f"{job.request.aspect_ratio}, {job.request.resolution}, "
                        f"{job.request.duration_s:g} s; key {job.request_key}"),
            ("cost", f"{money(job.cost_usd)} (estimated {money(job.estimated_cost_usd)})"
                     + (", cache hit" if job.cached else "")),
            ("attempts", str(job.attempts)),
            ("operation", job.operation_id or "–"),
            ("video", f"{video.path} ({video.size:,} bytes, {video.width}x{video.height}, "
                      f"{video.duration_s:.2f} s)" if video else "–"),
            ("due", when(job.due_at)),
            ("last error", job.last_error or "–"),
        ]  # fmt: skip
        for label, value in rows:
            out.print(f"  [dim]{label:>10}[/]  {value}", highlight=False, markup=True)
        out.rule("texts")
        for label, value in (("title", job.texts.title), ("prompt", job.texts.prompt),
                             ("negative", job.texts.negative_prompt),
                             ("caption", job.texts.caption),
                             ("hashtags", " ".join(job.texts.hashtags))):  # fmt: skip
            out.print(f"[dim]{label}[/]\n{value or '–'}", highlight=False)
        out.rule("receipts")
        for sink in job.sinks:
            r = receipts.get(sink)
            out.print(
                f"  {sink}: "
                + (
                    f"{r.remote_id} {r.url or ''} ({when(r.published_at)})"
                    if r
                    else "[dim]not yet[/]"
                ),
                highlight=False,
            )
        out.rule("history")
        for at, before, after, message in history:
            arrow = f"{before} → {after}" if before else after
            out.print(
                f"  {when(at)}  {arrow}" + (f"  [dim]{message}[/]" if message else ""),
                highlight=False,
            )
        if subs:
            out.print(
                f"  [dim]{len(subs)} provider submission(s): "
                + ", ".join(s["operation_id"] or "no answer" for s in subs)
                + "[/]"
            )
        return EXIT_OK

    sys.exit(run_async(app, body))


def _targeted(verb: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The job ids argument and ``--state`` option that retry and cancel share."""

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        fn = click.pass_obj(fn)
        fn = click.option("-s", "--state", "states", multiple=True, type=click.Choice(STATES),
                          help=f"{verb} every job in this state (repeatable).")(fn)  # fmt: skip
        return click.argument("job_ids", nargs=-1)(fn)

    return decorate


async def _targets(
    ledger: Ledger, pipeline: str, ids: tuple[str, ...], states: tuple[str, ...]
) -> list[str]:
    """Full ids for the ids or prefixes given, plus every job in the states given."""
    found = [await ledger.resolve(i) for i in ids]
    if states:
        found += [r.id for r in await ledger.jobs(pipeline, states=states, limit=10_000_000)]
    return list(dict.fromkeys(found))


@jobs.command("retry")
@_targeted("Retry")
def retry(app: App, job_ids: tuple[str, ...], states: tuple[str, ...]) -> None:
    """Try jobs again (the next `reelpress run` picks them up).

    A failed, filtered, over-budget or cancelled job is planned afresh. A needs_reconcile job is
    SUBMITTED AGAIN: check first that the provider did not already render (and bill) it.
    """
    if not job_ids and not states:
        raise click.UsageError("give job ids or --state")

    async def body() -> int:
        async with app.ledger() as ledger:
            for job_id in await _targets(ledger, app.spec().name, job_ids, states):
                before, after = await ledger.retry_job(job_id, datetime.now(UTC))
                app.out.print(f"{job_id[:12]}: {before.value} → {after.value}, due now")
        return EXIT_OK

    sys.exit(run_async(app, body))


@jobs.command("cancel")
@_targeted("Cancel")
def cancel(app: App, job_ids: tuple[str, ...], states: tuple[str, ...]) -> None:
    """Stop jobs that have not finished."""
    if not job_ids and not states:
        raise click.UsageError("give job ids or --state")

    async def body() -> int:
        async with app.ledger() as ledger:
            for job_id in await _targets(ledger, app.spec().name, job_ids, states):
                before = await ledger.cancel_job(job_id, datetime.now(UTC))
                app.out.print(f"{job_id[:12]}: {before.value} → cancelled")
        return EXIT_OK

    sys.exit(run_async(app, body))


@cli.command()
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Only spend on or after this day (UTC).",
)
@click.option("--all-pipelines", is_flag=True, help="Every pipeline in the ledger.")
@click.pass_obj  # fmt: skip
def costs(app: App, since: datetime | None, all_pipelines: bool) -> None:
    """What was spent, by day, provider and model (cache hits cost nothing)."""

    async def body() -> int:
        async with app.ledger() as ledger:
            name = None if all_pipelines else app.spec().name
            rows = await ledger.costs(name, since.replace(tzinfo=UTC) if since else None)
        table = Table(title=f"Spend of {name or 'all pipelines'}", title_justify="left")
        for column in ("day", "provider", "model", "videos", "cache hits", "seconds", "cost"):
            table.add_column(column, justify="right" if column in (
                "videos", "cache hits", "seconds", "cost") else "left")  # fmt: skip
        total = 0.0
        for r in rows:
            total += r["cost"] or 0.0
            table.add_row(
                r["day"],
                r["provider"],
                r["model"],
                str(r["videos"]),
                str(r["cached"] or 0),
                f"{r['seconds'] or 0:g}",
                money(r["cost"]),
            )
        table.add_section()
        table.add_row("total", "", "", str(sum(r["videos"] for r in rows)),
                      str(sum(r["cached"] or 0 for r in rows)),
                      f"{sum(r['seconds'] or 0 for r in rows):g}", money(total))  # fmt: skip
        app.out.print(table)
        return EXIT_OK

    sys.exit(run_async(app, body))
