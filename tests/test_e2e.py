"""The quick start as a user runs it: the real `reelpress` command on the bundled example, in a
subprocess, producing real videos; then again (nothing to do); then killed halfway and resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart"
_SCRIPT = Path(sys.executable).with_name("reelpress")  # the console script pip installed
REELPRESS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "reelpress.cli"]
SIZES = {"tiktok": (720, 1280), "instagram_reels": (720, 1280), "youtube": (1280, 720)}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the quick-start example, so runs never write into the repository."""
    target = tmp_path / "quickstart"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("out", "*.db*", ".reelpress"))
    return target


def reelpress(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REELPRESS, "-c", str(project / "pipeline.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELPRESS_")}
    env["COLUMNS"] = "200"
    return env


def submissions(project: Path) -> dict[str, int]:
    """Provider submissions per job id, read straight from the ledger file."""
    with sqlite3.connect(project / "reelpress.db") as db:
        rows = db.execute("SELECT job_id, count(*) FROM submissions GROUP BY job_id").fetchall()
    return dict(rows)


def states(project: Path) -> dict[str, str]:
    with sqlite3.connect(project / "reelpress.db") as db:
        return dict(db.execute("SELECT id, state FROM jobs").fetchall())


def videos(project: Path) -> Iterator[tuple[str, Path]]:
    for platform in SIZES:
        for path in sorted((project / "out" / platform).glob("*.mp4")):
            yield platform, path


def test_quick_start_makes_real_videos_and_a_rerun_does_nothing(project: Path) -> None:
    first = reelpress(project, "run")
    assert first.returncode == 0, first.stderr + first.stdout
    assert "21 published" in first.stdout
    made = list(videos(project))
    assert len(made) == 21  # 3 articles + 4 products, 3 platforms each
    for platform, path in made:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            audio = container.streams.audio[0]
            assert video.codec_context.name == "h264"
            assert (video.codec_context.width, video.codec_context.height) == SIZES[platform]
            assert video.codec_context.pix_fmt == "yuv420p"
            assert abs(float(video.duration * video.time_base) - 8.0) <= 1 / 24
            assert audio.codec_context.name == "aac"
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["platform"] == platform and sidecar["ai_generated"] is True
        assert path.with_suffix(".jpg").stat().st_size > 0
    gallery = (project / "out" / "index.html").read_text()
    assert gallery.count("<video") == 21
    assert "台北の夜市を歩く" in gallery  # non-Latin titles survive end to end
    before = submissions(project)
    assert sum(before.values()) == 21

    second = reelpress(project, "run")
    assert second.returncode == 0, second.stderr
    assert "0 renders submitted" in second.stdout
    assert submissions(project) == before
    assert len(list(videos(project))) == 21


def test_a_killed_run_resumes_without_rendering_finished_jobs_again(project: Path) -> None:
    pipeline = project / "pipeline.yaml"  # shorter clips: this test is about resuming
    pipeline.write_text(pipeline.read_text().replace(
        "platforms: [tiktok, instagram_reels, youtube]",
        "platforms: [{name: tiktok, duration_s: 4}, {name: instagram_reels, duration_s: 4},"
        " {name: youtube, duration_s: 4}]"))  # fmt: skip
    proc = subprocess.Popen(
        [*REELPRESS, "-c", str(project / "pipeline.yaml"), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    try:
        finished = _wait_for_published(project, at_least=4, proc=proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 4 <= len(finished) < 21, "the run must be killed halfway for this test to mean much"
    before = submissions(project)
    assert all(before[job] == 1 for job in finished)

    resumed = reelpress(project, "run")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    after = submissions(project)
    assert set(states(project).values()) == {"published"}
    for job in finished:
        assert after[job] == 1, "a finished job was rendered again"
    # only jobs the kill interrupted mid-render may have been submitted twice (the preview
    # provider is free, so it resubmits them by itself)
    assert sum(after.values()) <= 21 + (len(before) - len(finished))
    assert len(list(videos(project))) == 21


def _wait_for_published(project: Path, *, at_least: int, proc: subprocess.Popen[bytes]) -> set[str]:
    """Poll the ledger (a condition, not a fixed sleep) until some jobs are published."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        try:
            done = {j for j, s in states(project).items() if s == "published"}
        except sqlite3.OperationalError:  # the ledger is not created yet
            done = set()
        if len(done) >= at_least:
            return done
        time.sleep(0.05)
    raise AssertionError("no job was published within 300 s")
