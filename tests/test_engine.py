"""The state machine and the embedded runner, on scriptable fake plugins (real ledger, real
files, real MP4s)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakes
import pytest
from conftest import FAKE_PIPELINE, Harness
from sqlalchemy import select

from reelpress import (
    Brief,
    JobEvent,
    PluginError,
    ProviderError,
    SinkError,
    SkipBrief,
    hookimpl,
    schema,
)
from reelpress.ledger import Ledger
from reelpress.limits import RateWindow
from reelpress.models import JobState


def ledger_of(h: Harness) -> Ledger:
    assert h.ledger is not None
    return h.ledger


async def states(h: Harness) -> dict[str, str]:
    return {j.brief_id + "/" + j.platform: j.state for j in await ledger_of(h).jobs("t")}


async def test_plan_then_run_publishes_every_job(harness: Harness, script: fakes.Script) -> None:
    script.briefs = [fakes.brief(1), fakes.brief(2)]
    await harness.open()
    report = await harness.plan()
    assert (report.briefs, report.jobs, report.new) == (2, 4, 4)
    result = await harness.run()
    assert result.counts == {"published": 4}
    jobs = await ledger_of(harness).jobs("t")
    assert len(script.submits) == 4
    assert sorted(j for _, j in script.published) == sorted(j.id for j in jobs)
    assert all(j.cost == 0.0 and not j.cached for j in jobs)


async def test_rerun_is_a_noop_with_zero_provider_calls(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1), fakes.brief(2)]
    await harness.open()
    await harness.plan_and_run()
    submitted, published = len(script.submits), len(script.published)
    report = await harness.plan()
    assert (report.jobs, report.new) == (4, 0)
    result = await harness.run()
    assert result.provider_calls == 0
    assert (len(script.submits), len(script.published)) == (submitted, published)


async def test_same_request_elsewhere_is_a_cache_hit_at_no_cost(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1)]
    await harness.open()
    await harness.plan_and_run()
    assert len(script.submits) == 2
    # another pipeline on the same ledger asks for the very same renders
    await harness.open(FAKE_PIPELINE.replace("name: t", "name: other"))
    await harness.plan()
    result = await harness.run()
    assert result.provider_calls == 0
    assert result.cache_hits == 2
    assert len(script.submits) == 2
    jobs = await ledger_of(harness).jobs("other")
    assert [j.state for j in jobs] == ["published", "published"]
    assert all(j.cached and j.cost == 0.0 for j in jobs)


async def test_editing_a_field_no_template_reads_makes_no_new_job(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1, fields={"stock": 5})]
    await harness.open()
    await harness.plan_and_run()
    script.briefs = [fakes.brief(1, fields={"stock": 4}, revision="r2")]
    report = await harness.plan()
    assert report.new == 0


async def test_a_replan_renders_only_what_changed(
    harness: Harness, script: fakes.Script, monkeypatch: pytest.MonkeyPatch
) -> None:
    script.briefs = [fakes.brief(n) for n in range(1, 4)]
    pipeline = await harness.open()
    await harness.plan()
    rendered: list[str] = []
    real_render = pipeline.templates.render

    def spy(brief: Brief, platform: Any, **kwargs: Any) -> Any:
        rendered.append(brief.id)
        return real_render(brief, platform, **kwargs)

    monkeypatch.setattr(pipeline.templates, "render", spy)
    script.briefs = [
        fakes.brief(1),
        fakes.brief(2).model_copy(update={"summary": "Changed."}),
        fakes.brief(3),
    ]
    report = await harness.plan()
    assert rendered == ["fake:2", "fake:2"]  # two platforms of the one changed brief
    assert (report.briefs, report.jobs, report.new) == (3, 6, 2)


async def test_a_template_edit_plans_every_brief_again(
    harness: Harness, script: fakes.Script, tmp_path: Path
) -> None:
    script.briefs = [fakes.brief(1)]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    await harness.plan()
    folder = tmp_path / "templates" / "platforms"
    folder.mkdir(parents=True)
    (folder / "youtube.j2").write_text(
        '{% extends "base.j2" %}{% block prompt %}Brand new: {{ brief.title }}{% endblock %}'
    )
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    report = await harness.plan()
    assert report.new == 1
    assert report.sample[0][0].texts.prompt == "Brand new: Story 1"


async def test_an_edit_before_the_run_supersedes_the_planned_job(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1)]
    await harness.open()
    await harness.plan()
    script.briefs = [Brief(id="fake:1", title="Story 1, revised", summary="New.")]
    report = await harness.plan()
    assert report.new == 2
    result = await harness.run()
    assert result.counts == {"cancelled": 2, "published": 2}
    assert len(script.submits) == 2  # the superseded version was never rendered
    cancelled = await ledger_of(harness).jobs("t", states=["cancelled"])
    assert all("superseded" in (j.last_error or "") for j in cancelled)


async def test_a_reverted_edit_makes_the_original_job_current_again(
    harness: Harness, script: fakes.Script
) -> None:
    original = fakes.brief(1)
    script.briefs = [original]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    await harness.plan()
    script.briefs = [Brief(id="fake:1", title="Story 1, edited", summary="Oops.")]
    await harness.plan()
    script.briefs = [original]  # the edit is undone before anything ran
    report = await harness.plan()
    assert report.new == 1
    result = await harness.run()
    assert result.counts == {"published": 1, "cancelled": 1}
    [published] = await ledger_of(harness).jobs("t", states=["published"])
    assert published.title == "Story 1"
    assert len(script.submits) == 1


async def test_transient_submit_errors_are_retried(harness: Harness, script: fakes.Script) -> None:
    script.briefs = [fakes.brief(1)]
    script.submit_errors = [ProviderError("503 from upstream", retryable=True, retry_after=0)]
    await harness.open()
    result = await harness.plan_and_run()
    assert result.counts == {"published": 2}
    assert len(script.submits) == 3
    ledger = ledger_of(harness)
    retried = [j for j in await ledger.jobs("t") if j.attempts == 2]
    assert len(retried) == 1
    history = [to for _, _, to, _ in await ledger.history(retried[0].id)]
    assert history[:4] == ["planned", "submitting", "planned", "submitting"]


async def test_permanent_submit_error_fails_the_job_with_the_reason(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1)]
    script.submit_errors = [ProviderError("400 INVALID_ARGUMENT: durationSeconds", retryable=False)]
    await harness.open()
    result = await harness.plan_and_run()
    assert result.counts == {"failed": 1, "published": 1}
    failed = await ledger_of(harness).jobs("t", states=["failed"])
    assert "durationSeconds" in (failed[0].last_error or "")
    assert len(script.submits) == 2


async def test_submission_with_unknown_outcome_waits_for_the_operator(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1)]
    script.submit_errors = [ProviderError("read timeout", retryable=True, outcome_unknown=True)]
    await harness.open()
    result = await harness.plan_and_run()
    assert result.counts == {"needs_reconcile": 1, "published": 1}
    assert len(script.submits) == 2  # never submitted again by itself
    result = await harness.run()
    assert len(script.submits) == 2


async def test_interrupted_submission_is_not_paid_twice(
    harness: Harness, script: fakes.Script
) -> None:
    """A run dies after committing `submitting` but before the provider answered."""
    script.briefs = [fakes.brief(1)]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    await harness.plan()
    ledger = ledger_of(harness)
    t0 = datetime.now(UTC)
    dead_run = await ledger.start_run("t", t0)
    [job_id] = await ledger.claim("t", dead_run, t0, limit=1)
    record = await ledger.load(job_id)
    gate = await ledger.begin_submit(
        record, dead_run, dead_run, t0, windows=[], concurrency=4, budget=[]
    )
    assert gate.ok  # committed `submitting`; the process "dies" here
    later = t0 + timedelta(minutes=5)
    result = await harness.run(clock=lambda: later)
    assert result.counts == {"needs_reconcile": 1}
    assert script.submits == []
    [job] = await ledger.jobs("t")
    assert "may have accepted" in (job.last_error or "")
    # the operator decides to submit again
    await ledger.retry_job(job.id, later)
    result = await harness.run(clock=lambda: later)
    assert result.counts == {"published": 1}
    assert len(script.submits) == 1


async def test_interrupted_submission_is_redone_when_the_provider_says_it_is_free(
    harness: Harness, script: fakes.Script, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fakes.FakeProvider, "resubmit_safe", True)
    script.briefs = [fakes.brief(1)]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    await harness.plan()
    ledger = ledger_of(harness)
    t0 = datetime.now(UTC)
    dead_run = await ledger.start_run("t", t0)
    [job_id] = await ledger.claim("t", dead_run, t0, limit=1)
    await ledger.begin_submit(
        await ledger.load(job_id), dead_run, dead_run, t0, windows=[], concurrency=4, budget=[]
    )
    result = await harness.run(clock=lambda: t0 + timedelta(minutes=5))
    assert result.counts == {"published": 1}
    assert len(script.submits) == 1


async def test_a_job_cancelled_during_its_submission_keeps_the_operation_id(
    harness: Harness, script: fakes.Script, tmp_path: Path
) -> None:
    def operator_cancels(request: fakes.RenderRequest) -> None:
        with sqlite3.connect(tmp_path / "reelpress.db") as db:  # another process, in effect
            db.execute("UPDATE jobs SET state = 'cancelled' WHERE request_key = ?", (request.key,))

    script.briefs = [fakes.brief(1)]
    script.on_submit = operator_cancels
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    result = await harness.plan_and_run()
    assert result.counts == {"cancelled": 1}
    [submission] = await ledger_of(harness).submissions()
    assert submission["operation_id"] == "op-1"  # the render under way is not forgotten


async def test_a_job_leased_by_a_live_run_is_left_alone(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1)]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    await harness.plan()
    ledger = ledger_of(harness)
    now = datetime.now(UTC)
    other = await ledger.start_run("t", now)
    assert await ledger.claim("t", other, now, limit=5)
    result = await harness.run()
    assert script.submits == []
    assert result.counts == {"planned": 1}


async def test_safety_filtered_render_is_final_and_free(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1)]
    script.outcomes = [fakes.running, fakes.filtered]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    result = await harness.plan_and_run()
    assert result.counts == {"filtered": 1}
    [job] = await ledger_of(harness).jobs("t")
    assert job.cost == 0.0 and "people" in (job.last_error or "")
    assert len(script.submits) == 1 and script.polls == 2


async def test_failed_render_is_submitted_again_only_when_it_may_help(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1), fakes.brief(2)]
    script.outcomes = [fakes.failed(retryable=True), fakes.failed(retryable=False)]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    result = await harness.plan_and_run(workers=1)
    assert result.counts == {"failed": 1, "published": 1}
    assert len(script.submits) == 3


async def test_a_plugin_bug_parks_the_job_instead_of_looping(
    harness: Harness, script: fakes.Script
) -> None:
    def broken() -> fakes.PollResult:
        raise KeyError("status")  # a provider bug, not a ProviderError

    script.briefs = [fakes.brief(1), fakes.brief(2)]
    script.outcomes = [broken]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    result = await harness.plan_and_run(workers=1)
    assert result.counts == {"submitted": 1, "published": 1}
    assert result.parked == 1 and result.problems == 1
    assert script.polls == 2  # polled once, parked, never hammered again
    [job] = await ledger_of(harness).jobs("t", states=["submitted"])
    assert "KeyError" in (job.last_error or "") and job.due_at is None
    await ledger_of(harness).retry_job(job.id, datetime.now(UTC))
    result = await harness.run()
    assert result.counts == {"published": 2} and result.problems == 0


async def test_budget_stops_submissions_before_the_cap(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(n) for n in range(1, 4)]
    await harness.open(
        FAKE_PIPELINE.replace("{use: fake}", "{use: fake, usd_per_second: 0.1}").replace(
            "[youtube, tiktok]", "[youtube]"
        )
        + "budget: {max_usd: 2.0, per: run}\nlimits: {concurrency: 1}\n"
    )
    report = await harness.plan()
    assert report.estimated_cost_new == pytest.approx(2.4)
    result = await harness.run()
    assert result.counts == {"published": 2, "over_budget": 1}
    assert result.spent_usd == pytest.approx(1.6)
    [job] = await ledger_of(harness).jobs("t", states=["over_budget"])
    assert "$2.00" in (job.last_error or "") and "$0.80" in (job.last_error or "")
    assert len(script.submits) == 2


async def test_rate_windows_are_exact_and_say_how_long_to_wait(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(n) for n in range(1, 5)]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    await harness.plan()
    ledger = ledger_of(harness)
    t0 = datetime.now(UTC)
    run = await ledger.start_run("t", t0)
    ids = await ledger.claim("t", run, t0, limit=4)
    windows = [RateWindow(3, 10.0), RateWindow(100, 86400.0)]
    gates = []
    for i, job_id in enumerate(ids):
        at = t0 + timedelta(seconds=i * 0.1)
        gates.append(
            await ledger.begin_submit(
                await ledger.load(job_id), run, run, at, windows=windows, concurrency=10, budget=[]
            )
        )
    assert [g.ok for g in gates] == [True, True, True, False]
    assert gates[3].wait_s == pytest.approx(9.7, abs=0.01)
    assert "3/10s" in gates[3].reason
    later = t0 + timedelta(seconds=10.05)
    assert (
        await ledger.begin_submit(
            await ledger.load(ids[3]), run, run, later, windows=windows, concurrency=10, budget=[]
        )
    ).ok


async def test_in_flight_cap_holds_across_the_ledger(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(n) for n in range(1, 7)]
    script.outcomes = [fakes.running] * 12
    await harness.open(
        FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]") + "limits: {concurrency: 2}\n"
    )
    await harness.plan()
    result = await harness.run()
    assert result.counts == {"published": 6}
    # replay every transition in commit order: never more than 2 jobs in flight at once
    async with ledger_of(harness).engine.begin() as conn:
        rows = (
            (
                await conn.execute(
                    select(schema.transitions.c.to_state).order_by(schema.transitions.c.id)
                )
            )
            .scalars()
            .all()
        )
    level = peak = 0
    for to in rows:
        level += {"submitting": 1, "generated": -1}.get(to, 0)
        peak = max(peak, level)
    assert peak == 2


async def test_sink_errors_retry_then_park_and_resume_on_operator_retry(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1)]
    script.sink_errors = [
        SinkError("502 from CMS", retryable=True, retry_after=0),
        SinkError("401 bad credentials", retryable=False),
    ]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    result = await harness.plan_and_run()
    assert result.counts == {"generated": 1}
    assert result.problems == 1
    [job] = await ledger_of(harness).jobs("t")
    assert "401 bad credentials" in (job.last_error or "") and job.due_at is None
    assert script.published == []
    before, after = await ledger_of(harness).retry_job(job.id, datetime.now(UTC))
    assert (before, after) == (JobState.GENERATED, JobState.GENERATED)
    result = await harness.run()
    assert result.counts == {"published": 1}
    assert len(script.published) == 1 and len(script.submits) == 1


async def test_a_sink_that_finds_the_upload_does_not_post_again(
    harness: Harness, script: fakes.Script
) -> None:
    script.briefs = [fakes.brief(1)]
    await harness.open(
        FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]").replace(
            "{use: memory}", "{use: memory, searchable: true}"
        )
    )
    await harness.plan()
    [job] = await ledger_of(harness).jobs("t")
    # the destination already holds it: a crash happened after upload, before the receipt
    script.remote[job.id] = fakes.Receipt(sink="memory", remote_id="already-there")
    result = await harness.run()
    assert result.counts == {"published": 1}
    assert script.published == []
    receipts = await ledger_of(harness).receipts(job.id)
    assert receipts["memory"].remote_id == "already-there"


async def test_every_sink_publishes_once(harness: Harness, script: fakes.Script) -> None:
    script.briefs = [fakes.brief(1)]
    await harness.open(
        FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]").replace(
            "sinks: [{use: memory}]", "sinks: [{use: memory, name: a}, {use: memory, name: b}]"
        )
    )
    await harness.plan_and_run()
    await harness.plan_and_run()
    assert sorted(s for s, _ in script.published) == ["a", "b"]


async def test_observers_see_events_and_a_failing_one_breaks_nothing(
    harness: Harness, script: fakes.Script, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    class Observer:
        @hookimpl
        def job_event(self, event: JobEvent) -> None:
            seen.append(event.kind)

    class Broken:
        @hookimpl
        def job_event(self, event: JobEvent) -> None:
            raise RuntimeError("observer bug")

    harness.host.add("observer", Observer())
    harness.host.add("broken", Broken())
    script.briefs = [fakes.brief(1)]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    result = await harness.plan_and_run()
    assert result.counts == {"published": 1}
    assert seen == ["planned", "submitted", "generated", "sink_published", "published"]
    assert "plugin broken failed while observing" in caplog.text


async def test_prepare_brief_can_change_or_skip_briefs(
    harness: Harness, script: fakes.Script
) -> None:
    class Editor:
        @hookimpl
        def prepare_brief(self, brief: Brief, pipeline: Any) -> Brief | None:
            if brief.id.endswith("2"):
                raise SkipBrief("embargoed")
            return brief.model_copy(update={"title": brief.title.upper()})

    harness.host.add("editor", Editor())
    script.briefs = [fakes.brief(1), fakes.brief(2)]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    report = await harness.plan()
    assert report.new == 1
    assert report.skipped[0].message == "skipped by plugin 'editor': embargoed"
    [(job, _)] = report.sample
    assert job.texts.title == "STORY 1"


async def test_a_plugin_that_cannot_start_is_named_with_its_place_in_the_config(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, config: Any, context: Any) -> None:
        raise OSError("cannot reach the CMS")

    monkeypatch.setattr(fakes.MemorySink, "__init__", refuse)
    with pytest.raises(PluginError) as failed:
        await harness.open(
            FAKE_PIPELINE.replace("sinks: [{use: memory}]", "sinks: [{use: memory, name: cms}]")
        )
    assert str(failed.value) == (
        "sinks[0]: sink 'cms' (plugin 'memory') failed to start: OSError: cannot reach the CMS"
    )


async def test_operator_cancel_stops_a_planned_job(harness: Harness, script: fakes.Script) -> None:
    script.briefs = [fakes.brief(1)]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]"))
    await harness.plan()
    ledger = ledger_of(harness)
    [job] = await ledger.jobs("t")
    assert await ledger.cancel_job(job.id, datetime.now(UTC)) is JobState.PLANNED
    result = await harness.run()
    assert result.counts == {"cancelled": 1} and script.submits == []
    with pytest.raises(Exception, match="already cancelled"):
        await ledger.cancel_job(job.id, datetime.now(UTC))
