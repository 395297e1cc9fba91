"""``reelpress plan`` and ``reelpress run``: the main job."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..limits import period_start
from . import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, cli, run_async
from .app import App
from .display import money, short, state_style

if TYPE_CHECKING:  # imported where used, so other commands and `--help` do not pay for them
    from ..events import JobEvent
    from ..ledger import Ledger
    from ..pipeline import Pipeline
    from ..planner import PlanIssue, PlanReport
    from ..runner import RunResult

RENDER_DONE = {"generated", "cached", "filtered", "over_budget", "needs_reconcile", "cancelled"}


@cli.command()
@click.option("--rows", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="How many jobs to list.")  # fmt: skip
@click.pass_obj
def plan(app: App, rows: int) -> None:
    """Show what would be made and what it would cost; spend nothing.

    Reads every source, renders every template and records the jobs in the ledger as
    `planned` (so `run` starts from them), but calls no provider and publishes nothing.
    """

    async def body() -> int:
        async with app.pipeline() as (pipeline, ledger):
            report = await _plan(app, pipeline, ledger, write=True, rows=rows)
            _print_plan(app, pipeline, report, rows)
            await _print_budget(app, pipeline, ledger, report)
            return EXIT_BAD_INPUT if report.failed_count and not report.jobs else EXIT_OK

    sys.exit(run_async(app, body))


@cli.command()
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Run at most N jobs: those under way first, then the oldest planned.",
)
@click.option(
    "--dry-run", is_flag=True, help="Plan and show what would happen; write nothing, spend nothing."
)
@click.option("--no-plan", is_flag=True, help="Skip reading sources; run the jobs in the ledger.")
@click.pass_obj  # fmt: skip
def run(app: App, limit: int | None, dry_run: bool, no_plan: bool) -> None:
    """Plan, render and publish: the main job. Safe to stop and run again at any time."""

    async def body() -> int:
        async with app.pipeline() as (pipeline, ledger):
            report = None
            if not no_plan:
                report = await _plan(app, pipeline, ledger, write=not dry_run, rows=0)
                _print_plan(app, pipeline, report, rows=0)
            if dry_run:
                await _print_budget(app, pipeline, ledger, report)
                app.out.print("[dim]dry run: nothing was written or spent[/]")
                return EXIT_OK
            if report is not None and report.failed_count and not report.jobs:
                return EXIT_BAD_INPUT
            await _print_budget(app, pipeline, ledger, report)
            only = await ledger.pick(pipeline.name, limit) if limit else None
            result = await _run(app, pipeline, ledger, only)
            await pipeline.close()  # sinks finish (a gallery is written) before the summary
            _print_summary(app, pipeline, result)
            plan_problems = report is not None and report.failed_count > 0
            return EXIT_FAILED if result.problems or plan_problems else EXIT_OK

    sys.exit(run_async(app, body))


async def _plan(
    app: App, pipeline: Pipeline, ledger: Ledger, *, write: bool, rows: int
) -> PlanReport:
    from ..planner import Planner

    planner = Planner(pipeline, ledger, sample=max(rows, 1))
    with Progress(TextColumn("[bold]Planning[/]"), TextColumn("{task.fields[text]}"),
                  TimeElapsedColumn(), console=app.err, transient=True,
                  disable=app.quiet) as progress:  # fmt: skip
        task = progress.add_task("plan", text="")

        def update(report: PlanReport) -> None:
            progress.update(task, text=f"{report.briefs} briefs, {report.jobs} jobs")

        return await planner.plan(write=write, progress=update)


def _print_plan(app: App, pipeline: Pipeline, report: PlanReport, rows: int) -> None:
    out = app.out
    if rows and report.sample:
        table = Table(title=f"Plan for {pipeline.name}", title_justify="left", expand=True)
        table.add_column("job", no_wrap=True)
        table.add_column("platform", no_wrap=True)
        table.add_column("cost", justify="right", no_wrap=True)
        table.add_column("brief and prompt", ratio=1, overflow="fold")
        for job, is_new in report.sample[:rows]:
            status = "[green]new[/]" if is_new else "[dim]planned before[/]"
            about = (f"{escape(job.brief.id)}  {status}  {job.request.duration_s:g} s\n"
                     f"[dim]{escape(short(job.texts.prompt, 160))}[/]")  # fmt: skip
            table.add_row(job.id[:8], job.platform, money(job.estimated_cost_usd), about)
        out.print(table)
        if report.jobs > rows:
            out.print(f"[dim]… and {report.jobs - rows} more (reelpress jobs list)[/]")
    per_platform = ", ".join(f"{n} {p}" for p, n in sorted(report.by_platform.items()))
    out.print(
        f"[bold]{report.briefs}[/] briefs → [bold]{report.jobs}[/] jobs"
        + (f" ({per_platform})" if per_platform else "")
        + f"; [bold]{report.new}[/] new, {report.existing} planned before. "
        f"New work: {report.seconds_new:g} s of video, est. "
        f"[bold]{money(report.estimated_cost_new)}[/] with "
        f"{pipeline.provider.name}/{pipeline.provider.model}."
    )
    if report.adjusted:
        out.print(f"[dim]{report.adjusted} titles or captions were shortened to the platform's "
                  "limits[/]")  # fmt: skip
    _print_issues(app, "skipped", report.skipped, report.skipped_count)
    _print_issues(app, "failed", report.failed, report.failed_count)


def _print_issues(app: App, label: str, issues: list[PlanIssue], count: int) -> None:
    """Problems grouped by message, so 5,000 rows missing one column read as one line."""
    if not count:
        return
    colour = "yellow" if label == "skipped" else "red"
    app.err.print(f"[{colour}]{count} {label}[/]:", highlight=False)
    groups: dict[str, list[str]] = {}
    for issue in issues:
        groups.setdefault(issue.message, []).append(issue.where)
    for message, wheres in list(groups.items())[:10]:
        more = f" (and {len(wheres) - 1} more like it)" if len(wheres) > 1 else ""
        app.err.print(f"  {wheres[0]}: {message}{more}", markup=False, highlight=False)
    if len(groups) > 10:
        app.err.print(f"  … and {len(groups) - 10} other kinds of problem", highlight=False)


async def _print_budget(
    app: App, pipeline: Pipeline, ledger: Ledger, report: PlanReport | None
) -> None:
    if not pipeline.spec.budget:
        return
    now = datetime.now(UTC)
    parts = []
    for cap in pipeline.spec.budget:
        if cap.per == "run":
            parts.append(f"{money(cap.max_usd)} per run")
            continue
        spent = await ledger.committed_spend(pipeline.name, period_start(cap.per, now, now))
        parts.append(f"{money(cap.max_usd)} per {cap.per} ({money(spent)} used)")
    app.out.print("Budget: " + "; ".join(parts) + ". Jobs that would pass a cap are not "
                  "submitted (state over_budget).")  # fmt: skip


async def _run(app: App, pipeline: Pipeline, ledger: Ledger, only: list[str] | None) -> RunResult:
    counts = await ledger.counts(pipeline.name, only)
    to_render = sum(counts.get(s, 0) for s in ("planned", "submitting", "submitted"))
    to_publish = to_render + counts.get("generated", 0)
    if not to_publish:
        app.out.print("Nothing to do: every job is finished.")
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[note]}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=app.err, disable=app.quiet or not to_publish) as progress:
        render = progress.add_task("Rendering", total=to_render, note="")
        publish = progress.add_task("Publishing", total=to_publish, note="")
        spent = [0.0]

        def observe(event: JobEvent) -> None:
            if event.kind in RENDER_DONE or (
                event.kind == "failed" and event.state.value != "generated"
            ):
                progress.advance(render)
            if event.kind == "generated" and event.cost_usd:
                spent[0] += event.cost_usd
            if event.kind == "published" or event.state.terminal:
                progress.advance(publish)
            progress.update(render, note=f"{money(spent[0])} spent")

        from ..runner import Runner

        return await Runner(pipeline, ledger, only=only, observer=observe).run()


def _print_summary(app: App, pipeline: Pipeline, result: RunResult) -> None:
    order = sorted(result.counts.items(), key=lambda kv: -kv[1])
    states = ", ".join(f"[{state_style(state)}]{n} {state}[/]" for state, n in order)
    app.out.print(f"Run {result.run_id[:8]} of [bold]{pipeline.name}[/]: {states or 'no jobs'}.")
    app.out.print(
        f"Spent [bold]{money(result.spent_usd)}[/] this run; {result.provider_calls} renders "
        f"submitted, {result.cache_hits} served from the cache at no cost."
    )
    for sink in pipeline.sinks.values():
        line = sink.summary()
        if line:
            app.out.print(f"{sink.context.instance}: {line}")
    from ..ledger import ACTIVE_STATES

    waiting = sum(result.counts.get(s, 0) for s in ACTIVE_STATES)
    if result.problems:
        app.out.print(
            "[yellow]Some jobs need attention:[/] `reelpress jobs list --state failed` "
            "(or needs_reconcile, generated), then `reelpress jobs show <id>`."
        )
    elif waiting:
        app.out.print(f"{waiting} jobs are still under way; run again to continue.")
