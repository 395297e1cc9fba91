"""The ledger: schema versions and migrations, leases and crash recovery, compare-and-set state
changes, and the operator's retry and cancel. Every time is an explicit ``now``."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, select
from sqlalchemy.engine import Connection

from reelpress import schema
from reelpress.errors import JobNotFound, LedgerError
from reelpress.ledger import LEASE, STALE_RUN, Ledger, PlannedJob, brief_json, brief_key, job_id_for
from reelpress.models import Brief, Job, JobState, RenderRequest, Texts

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PIPELINE = "t"


def planned(n: int, platform: str = "youtube") -> PlannedJob:
    brief = Brief(id=f"brief:{n}", title=f"Story {n}")
    texts = Texts(prompt=f"A video about story {n}", title=f"Story {n}")
    request = RenderRequest(provider="fake", model="fake-1", prompt=texts.prompt)
    job = Job(
        id=job_id_for(PIPELINE, brief, platform, texts, request),
        pipeline=PIPELINE,
        brief=brief,
        platform=platform,
        state=JobState.PLANNED,
        texts=texts,
        request=request,
        sinks=("memory",),
    )
    return PlannedJob(job, brief_key(brief), brief_json(brief))


def url_of(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]


def columns(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.db"


@pytest.fixture
async def ledger(db_path: Path) -> AsyncIterator[Ledger]:
    opened = await Ledger.open(url_of(db_path))
    yield opened
    await opened.close()


@pytest.fixture
async def jobs(ledger: Ledger) -> list[str]:
    """Three planned jobs, due at T0."""
    return await ledger.save_planned([planned(1), planned(2), planned(3)], T0)


async def state_of(ledger: Ledger, job_id: str) -> JobState:
    return (await ledger.load(job_id)).job.state


# --- schema versions and migrations -----------------------------------------------------------


async def test_a_new_ledger_is_created_at_the_latest_schema_version(db_path: Path) -> None:
    ledger = await Ledger.open(url_of(db_path))
    await ledger.close()
    assert versions(db_path) == [schema.LATEST]
    with sqlite3.connect(db_path) as db:
        tables = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert set(schema.metadata.tables) <= tables


async def test_opening_an_up_to_date_ledger_again_changes_nothing(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await (await Ledger.open(url_of(db_path))).close()
    with sqlite3.connect(db_path) as db:
        before = db.execute("SELECT version, applied_at FROM schema_version").fetchall()
    monkeypatch.setattr(schema, "MIGRATIONS", {schema.LATEST: fail_halfway})  # must not run
    await (await Ledger.open(url_of(db_path))).close()
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT version, applied_at FROM schema_version").fetchall() == before
    with create_engine(f"sqlite:///{db_path}").begin() as conn:
        assert schema.migrate(conn) == schema.LATEST  # started at the latest: nothing to do


async def test_a_ledger_from_a_newer_reelpress_is_refused(db_path: Path) -> None:
    await (await Ledger.open(url_of(db_path))).close()
    with sqlite3.connect(db_path) as db:
        db.execute(
            "INSERT INTO schema_version VALUES (?, '2027-01-01 00:00:00')", (schema.LATEST + 1,)
        )
    with pytest.raises(LedgerError, match="newer than this reelpress understands") as caught:
        await Ledger.open(url_of(db_path))
    assert "upgrade reelpress" in str(caught.value)
    assert versions(db_path) == [schema.LATEST, schema.LATEST + 1]


def add_priority(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")


def add_tags(conn: Connection) -> None:
    conn.exec_driver_sql("CREATE TABLE tags (job_id TEXT, tag TEXT)")


def fail_halfway(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE jobs ADD COLUMN doomed TEXT")
    raise RuntimeError("disk says no")


async def test_an_older_ledger_is_migrated_step_by_step_and_stamped(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = await Ledger.open(url_of(db_path))
    (job_id,) = await ledger.save_planned([planned(1)], T0)
    await ledger.close()
    monkeypatch.setattr(schema, "MIGRATIONS", {2: add_priority, 3: add_tags})
    monkeypatch.setattr(schema, "LATEST", 3)
    ledger = await Ledger.open(url_of(db_path))
    try:
        assert (await ledger.load(job_id)).job.state is JobState.PLANNED  # data kept
    finally:
        await ledger.close()
    assert versions(db_path) == [1, 2, 3]
    assert "priority" in columns(db_path, "jobs")
    assert columns(db_path, "tags") == {"job_id", "tag"}


async def test_a_failing_migration_leaves_the_ledger_as_it_was(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await (await Ledger.open(url_of(db_path))).close()
    jobs_before = columns(db_path, "jobs")
    monkeypatch.setattr(schema, "MIGRATIONS", {2: add_priority, 3: fail_halfway})
    monkeypatch.setattr(schema, "LATEST", 3)
    with pytest.raises(LedgerError, match="disk says no"):
        await Ledger.open(url_of(db_path))
    assert versions(db_path) == [1]
    assert columns(db_path, "jobs") == jobs_before  # neither step 2 nor half of step 3 stayed


async def test_a_missing_migration_step_is_reported_and_changes_nothing(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await (await Ledger.open(url_of(db_path))).close()
    monkeypatch.setattr(schema, "MIGRATIONS", {2: add_priority})
    monkeypatch.setattr(schema, "LATEST", 3)
    with pytest.raises(LedgerError, match="no migration to schema version 3"):
        await Ledger.open(url_of(db_path))
    assert versions(db_path) == [1]
    assert "priority" not in columns(db_path, "jobs")


async def test_a_database_with_jobs_but_no_schema_record_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, payload TEXT)")
    with pytest.raises(LedgerError, match="has a 'jobs' table but no reelpress schema record"):
        await Ledger.open(url_of(db_path))
    assert columns(db_path, "jobs") == {"id", "payload"}  # left alone


def write_csv(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("name,title\n" * 200)


async def test_a_file_that_is_not_a_database_is_refused_with_its_name(db_path: Path) -> None:
    write_csv(db_path)
    with pytest.raises(LedgerError, match=f"cannot open ledger {db_path}"):
        await Ledger.open(url_of(db_path))


async def test_only_sqlite_ledgers_are_opened() -> None:
    with pytest.raises(LedgerError, match="unsupported ledger database 'postgresql"):
        await Ledger.open("postgresql+psycopg://user@localhost/reelpress")


# --- claiming jobs ----------------------------------------------------------------------------


async def test_claim_takes_only_jobs_that_are_due(ledger: Ledger, jobs: list[str]) -> None:
    later = T0 + timedelta(minutes=10)
    assert await ledger.reschedule(jobs[2], None, later, T0)
    assert sorted(await ledger.claim(PIPELINE, "a", T0, limit=10)) == sorted(jobs[:2])
    almost = await ledger.claim(PIPELINE, "b", later - timedelta(seconds=1), limit=10)
    assert jobs[2] not in almost
    assert await ledger.claim(PIPELINE, "c", later, limit=10) == [jobs[2]]


async def test_claim_takes_the_earliest_due_first_and_no_more_than_the_limit(
    ledger: Ledger, jobs: list[str]
) -> None:
    await ledger.reschedule(jobs[0], None, T0 + timedelta(seconds=30), T0)
    await ledger.reschedule(jobs[1], None, T0 + timedelta(seconds=10), T0)
    await ledger.reschedule(jobs[2], None, T0 + timedelta(seconds=20), T0)
    now = T0 + timedelta(minutes=1)
    assert await ledger.claim(PIPELINE, "a", now, limit=2) == [jobs[1], jobs[2]]
    assert await ledger.claim(PIPELINE, "a", now, limit=0) == []


async def test_parked_finished_and_other_pipelines_jobs_are_never_claimed(
    ledger: Ledger, jobs: list[str]
) -> None:
    await ledger.reschedule(jobs[0], None, None, T0)  # parked for the operator
    await ledger.transition(jobs[1], JobState.PLANNED, JobState.FAILED, T0, owner=None)
    later = T0 + timedelta(days=1)
    assert await ledger.claim("another-pipeline", "a", later, limit=10) == []
    assert await ledger.claim(PIPELINE, "a", later, limit=10) == [jobs[2]]


async def test_a_job_leased_by_another_owner_is_claimable_only_once_the_lease_expires(
    ledger: Ledger, jobs: list[str]
) -> None:
    assert len(await ledger.claim(PIPELINE, "a", T0, limit=10)) == 3
    assert await ledger.claim(PIPELINE, "b", T0 + LEASE - timedelta(seconds=1), limit=10) == []
    stolen = await ledger.claim(PIPELINE, "b", T0 + LEASE + timedelta(seconds=1), limit=10)
    assert sorted(stolen) == sorted(jobs)
    assert {(await ledger.load(j)).lease_owner for j in jobs} == {"b"}


async def test_a_heartbeat_extends_the_leases_of_its_run(ledger: Ledger, jobs: list[str]) -> None:
    run = await ledger.start_run(PIPELINE, T0)
    await ledger.claim(PIPELINE, run, T0, limit=10)
    beat = T0 + timedelta(seconds=50)
    await ledger.heartbeat(run, beat)
    assert await ledger.claim(PIPELINE, "b", T0 + LEASE + timedelta(seconds=1), limit=10) == []
    assert (
        len(await ledger.claim(PIPELINE, "b", beat + LEASE + timedelta(seconds=1), limit=10)) == 3
    )


async def test_finishing_a_run_releases_its_leases_at_once(ledger: Ledger, jobs: list[str]) -> None:
    run = await ledger.start_run(PIPELINE, T0)
    assert len(await ledger.claim(PIPELINE, run, T0, limit=10)) == 3
    await ledger.finish_run(run, T0 + timedelta(seconds=1))
    assert len(await ledger.claim(PIPELINE, "b", T0 + timedelta(seconds=2), limit=10)) == 3


async def test_release_frees_only_a_lease_the_owner_holds(ledger: Ledger, jobs: list[str]) -> None:
    await ledger.claim(PIPELINE, "a", T0, limit=1)
    await ledger.release(jobs[0], "b")
    assert (await ledger.load(jobs[0])).lease_owner == "a"
    await ledger.release(jobs[0], "a")
    assert (await ledger.load(jobs[0])).lease_owner is None


# --- crash recovery ---------------------------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


async def add_run(ledger: Ledger, run_id: str, *, host: str, pid: int, heartbeat: datetime) -> None:
    async with ledger.engine.begin() as conn:
        await conn.execute(
            insert(schema.runs).values(
                id=run_id,
                pipeline=PIPELINE,
                host=host,
                pid=pid,
                started_at=heartbeat,
                heartbeat_at=heartbeat,
            )
        )


async def finished_at(ledger: Ledger, run_id: str) -> datetime | None:
    async with ledger.engine.begin() as conn:
        value: datetime | None = (
            await conn.execute(select(schema.runs.c.finished_at).where(schema.runs.c.id == run_id))
        ).scalar_one()
    return value


async def test_reclaim_frees_the_leases_of_a_run_whose_process_died_on_this_host(
    ledger: Ledger, jobs: list[str]
) -> None:
    await add_run(ledger, "crashed", host=socket.gethostname(), pid=dead_pid(), heartbeat=T0)
    await ledger.claim(PIPELINE, "crashed", T0, limit=10)
    now = T0 + timedelta(seconds=1)  # long before the lease or the heartbeat would expire
    assert await ledger.reclaim(now) == ["crashed"]
    assert await finished_at(ledger, "crashed") == now
    assert len(await ledger.claim(PIPELINE, "b", now, limit=10)) == 3


async def test_reclaim_frees_the_leases_of_a_run_whose_heartbeat_went_stale(
    ledger: Ledger, jobs: list[str]
) -> None:
    await add_run(ledger, "remote", host="another-host", pid=1, heartbeat=T0)
    await ledger.claim(PIPELINE, "remote", T0, limit=10)
    assert await ledger.reclaim(T0 + STALE_RUN - timedelta(seconds=1)) == []
    assert await ledger.reclaim(T0 + STALE_RUN + timedelta(seconds=1)) == ["remote"]
    assert (await ledger.load(jobs[0])).lease_owner is None


async def test_reclaim_leaves_live_runs_alone(ledger: Ledger, jobs: list[str]) -> None:
    mine = await ledger.start_run(PIPELINE, T0)  # this very process: alive
    await add_run(ledger, "remote", host="another-host", pid=dead_pid(), heartbeat=T0)
    await ledger.claim(PIPELINE, mine, T0, limit=1)
    await ledger.claim(PIPELINE, "remote", T0, limit=10)
    # a pid means nothing on another host: only its heartbeat says whether it is alive
    assert await ledger.reclaim(T0 + timedelta(seconds=5)) == []
    assert {(await ledger.load(j)).lease_owner for j in jobs} == {mine, "remote"}
    assert await finished_at(ledger, mine) is None


async def test_reclaim_frees_a_crashed_run_that_had_our_own_pid(
    ledger: Ledger, jobs: list[str]
) -> None:
    """A container restarted under the same host name runs as the same pid (often 1): the old
    run's pid looks alive, but this process never started that run."""
    await add_run(ledger, "before-restart", host=socket.gethostname(), pid=os.getpid(),
                  heartbeat=T0)  # fmt: skip
    await ledger.claim(PIPELINE, "before-restart", T0, limit=10)
    assert await ledger.reclaim(T0 + timedelta(seconds=1)) == ["before-restart"]


# --- compare-and-set state changes ------------------------------------------------------------


async def test_a_transition_happens_once_and_is_recorded(ledger: Ledger, jobs: list[str]) -> None:
    job = jobs[0]
    await ledger.claim(PIPELINE, "a", T0, limit=1)
    at = T0 + timedelta(seconds=3)
    assert await ledger.transition(job, JobState.PLANNED, JobState.SUBMITTING, at, owner="a")
    assert not await ledger.transition(job, JobState.PLANNED, JobState.SUBMITTING, at, owner="a")
    record = await ledger.load(job)
    assert record.job.state is JobState.SUBMITTING
    assert record.job.updated_at == at
    assert await ledger.history(job) == [
        (T0, None, "planned", None),
        (at, "planned", "submitting", None),
    ]


async def test_a_transition_by_an_owner_without_the_lease_changes_nothing(
    ledger: Ledger, jobs: list[str]
) -> None:
    job = jobs[0]
    await ledger.claim(PIPELINE, "a", T0, limit=1)
    later = T0 + timedelta(seconds=1)
    assert not await ledger.transition(job, JobState.PLANNED, JobState.FAILED, later, owner="b")
    record = await ledger.load(job)
    assert (record.job.state, record.job.updated_at, record.lease_owner) == (
        JobState.PLANNED,
        T0,
        "a",
    )
    assert len(await ledger.history(job)) == 1


async def test_a_transition_accepts_any_of_several_expected_states(
    ledger: Ledger, jobs: list[str]
) -> None:
    expected = (JobState.SUBMITTED, JobState.PLANNED)
    assert await ledger.transition(jobs[0], expected, JobState.SUBMITTING, T0, owner=None)
    assert not await ledger.transition(jobs[0], expected, JobState.FAILED, T0, owner=None)


async def test_a_failed_transition_keeps_the_reason_and_is_no_longer_due(
    ledger: Ledger, jobs: list[str]
) -> None:
    at = T0 + timedelta(seconds=1)
    assert await ledger.transition(
        jobs[0], JobState.PLANNED, JobState.FAILED, at, owner=None, message="400 bad duration"
    )
    job = (await ledger.load(jobs[0])).job
    assert (job.state, job.last_error, job.due_at) == (JobState.FAILED, "400 bad duration", None)
    assert (await ledger.history(jobs[0]))[-1] == (at, "planned", "failed", "400 bad duration")


async def test_an_unknown_job_cannot_transition(ledger: Ledger) -> None:
    assert not await ledger.transition("0" * 32, JobState.PLANNED, JobState.FAILED, T0, owner=None)


# --- operator: retry and cancel ---------------------------------------------------------------


async def move(ledger: Ledger, job_id: str, *states: JobState) -> None:
    current = await state_of(ledger, job_id)
    for state in states:
        assert await ledger.transition(job_id, current, state, T0, owner=None)
        current = state


async def test_a_failed_job_is_retried_as_a_fresh_plan(ledger: Ledger, jobs: list[str]) -> None:
    job = jobs[0]
    await ledger.claim(PIPELINE, "a", T0, limit=1)
    await ledger.transition(job, JobState.PLANNED, JobState.SUBMITTING, T0, owner="a")
    await ledger.transition(
        job, JobState.SUBMITTING, JobState.FAILED, T0, owner="a", message="boom"
    )
    now = T0 + timedelta(hours=1)
    assert await ledger.retry_job(job, now) == (JobState.FAILED, JobState.PLANNED)
    record = await ledger.load(job)
    assert record.job.state is JobState.PLANNED
    assert (record.job.attempts, record.job.last_error, record.job.due_at) == (0, None, now)
    assert record.lease_owner is None
    assert (await ledger.history(job))[-1] == (now, "failed", "planned", "retried by operator")
    assert job in await ledger.claim(PIPELINE, "b", now, limit=10)  # claimable again


async def test_a_published_job_cannot_be_retried(ledger: Ledger, jobs: list[str]) -> None:
    await move(
        ledger,
        jobs[0],
        JobState.SUBMITTING,
        JobState.SUBMITTED,
        JobState.GENERATED,
        JobState.PUBLISHED,
    )
    with pytest.raises(LedgerError, match="already published; nothing to retry"):
        await ledger.retry_job(jobs[0], T0)
    assert await state_of(ledger, jobs[0]) is JobState.PUBLISHED


async def test_retrying_a_generated_job_without_its_video_renders_it_again(
    ledger: Ledger, jobs: list[str]
) -> None:
    await move(ledger, jobs[0], JobState.SUBMITTING, JobState.SUBMITTED, JobState.GENERATED)
    assert await ledger.retry_job(jobs[0], T0) == (JobState.GENERATED, JobState.PLANNED)


async def test_retrying_a_job_that_has_not_stopped_only_makes_it_due_now(
    ledger: Ledger, jobs: list[str]
) -> None:
    later = T0 + timedelta(hours=2)
    await ledger.reschedule(jobs[0], None, later, T0, error="429: retry later")
    now = T0 + timedelta(minutes=5)
    assert await ledger.retry_job(jobs[0], now) == (JobState.PLANNED, JobState.PLANNED)
    job = (await ledger.load(jobs[0])).job
    assert (job.due_at, job.last_error) == (now, None)


@pytest.mark.parametrize(
    "path",
    [
        (JobState.FAILED,),
        (JobState.CANCELLED,),
        (JobState.SUBMITTING, JobState.SUBMITTED, JobState.GENERATED, JobState.PUBLISHED),
    ],
)
async def test_a_finished_job_cannot_be_cancelled(
    ledger: Ledger, jobs: list[str], path: tuple[JobState, ...]
) -> None:
    await move(ledger, jobs[0], *path)
    with pytest.raises(LedgerError, match=f"already {path[-1].value}; nothing to cancel"):
        await ledger.cancel_job(jobs[0], T0)
    assert await state_of(ledger, jobs[0]) is path[-1]


async def test_cancelling_a_planned_job_stops_it(ledger: Ledger, jobs: list[str]) -> None:
    now = T0 + timedelta(minutes=1)
    assert await ledger.cancel_job(jobs[0], now) is JobState.PLANNED
    job = (await ledger.load(jobs[0])).job
    assert (job.state, job.due_at, job.last_error) == (
        JobState.CANCELLED,
        None,
        "cancelled by operator",
    )
    assert jobs[0] not in await ledger.claim(PIPELINE, "a", now, limit=10)


@pytest.mark.parametrize(
    "path", [(JobState.SUBMITTING,), (JobState.SUBMITTING, JobState.SUBMITTED)]
)
async def test_cancelling_a_render_under_way_warns_it_may_still_finish_and_bill(
    ledger: Ledger, jobs: list[str], path: tuple[JobState, ...]
) -> None:
    await move(ledger, jobs[0], *path)
    assert await ledger.cancel_job(jobs[0], T0) is path[-1]
    job = (await ledger.load(jobs[0])).job
    assert job.state is JobState.CANCELLED
    assert job.last_error is not None
    assert "may still finish (and bill)" in job.last_error
    assert (await ledger.history(jobs[0]))[-1][3] == job.last_error


# --- finding a job by a prefix of its id ------------------------------------------------------


async def test_a_unique_prefix_resolves_to_the_full_id(ledger: Ledger, jobs: list[str]) -> None:
    for job in jobs:
        assert await ledger.resolve(job[:8]) == job
        assert await ledger.resolve(job) == job


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("abc", "too short; give at least 4 characters"),
        ("ffffffffffff", "no job with id 'ffffffffffff'"),
        ("%%%%", "no job with id '%%%%'"),  # never a wildcard
        ("____", "no job with id '____'"),
    ],
)
async def test_a_prefix_that_names_no_single_job_says_why(
    ledger: Ledger, jobs: list[str], prefix: str, expected: str
) -> None:
    with pytest.raises(JobNotFound, match=re.escape(expected)):
        await ledger.resolve(prefix)
