"""The ``filesystem`` sink on real files: what it writes, where (never outside its folder), how it
names things, finds earlier publishes, and the HTML gallery."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import av
import pytest
from PIL import Image
from pydantic import ValidationError

from reelpress import (
    Brief,
    Job,
    JobState,
    PluginContext,
    Receipt,
    RenderRequest,
    SinkError,
    Texts,
    Video,
)
from reelpress.media import probe
from reelpress.plugins import PluginHost
from reelpress.store import file_sha256, video_path
from reelpress_plugins.filesystem import FilesystemSink
from reelpress_plugins.filesystem.slugs import slugify

# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, small H.264 MP4: 48 frames (2 s at 24 fps), 160×90, no audio."""
    path = tmp_path_factory.mktemp("media") / "sample.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 160, 90, "yuv420p"
        for i in range(48):
            image = Image.new("RGB", (160, 90), (i * 5, 120, 200))
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture
def context(tmp_path: Path) -> PluginContext:
    return PluginContext(
        pipeline="t",
        instance="files",
        base_dir=tmp_path,
        state_dir=tmp_path / "state",
        store_dir=tmp_path / "store",
    )


@pytest.fixture
def video(sample_mp4: Path, context: PluginContext) -> Video:
    """The sample, placed in the content-addressed store the way the engine keeps it."""
    sha, size = file_sha256(sample_mp4)
    path = video_path(context.store_dir, sha)
    path.parent.mkdir(parents=True)
    shutil.copyfile(sample_mp4, path)
    info = probe(path)
    return Video(
        sha256=sha,
        path=path,
        size=size,
        duration_s=info.duration_s,
        width=info.width,
        height=info.height,
        video_codec=info.video_codec,
    )


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def sink(context: PluginContext, **options: Any) -> FilesystemSink:
    return FilesystemSink(FilesystemSink.Config.model_validate(options), context)


def job(
    job_id: str = "0a1b2c3d-0000-4000-8000-000000000001",
    *,
    title: str = "Cast iron pan care",
    brief_title: str = "How to season a cast iron pan",
    platform: str = "youtube",
    caption: str = "Season it once, use it forever.",
    provider: str = "preview",
    model: str = "m",
    video: Video | None = None,
    brief_url: str | None = "https://blog.example/pan",
) -> Job:
    return Job(
        id=job_id,
        pipeline="t",
        brief=Brief(id=f"blog:{job_id}", title=brief_title, url=brief_url),
        platform=platform,
        state=JobState.GENERATED,
        texts=Texts(
            prompt="A cast iron pan on a wooden table, warm light",
            negative_prompt="blur",
            title=title,
            caption=caption,
            hashtags=("#castiron", "cooking"),
        ),
        request=RenderRequest(provider=provider, model=model, prompt="p"),
        sinks=("files",),
        cost_usd=0.0,
        video_sha256=video.sha256 if video else None,
    )


def files_under(folder: Path) -> set[Path]:
    """Every file and link below ``folder`` (links not followed)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            found.add(Path(dirpath) / name)
    return found


def written(tmp_path: Path) -> set[Path]:
    """Every file the sink could have written: everything but the store."""
    store = tmp_path / "store"
    return {p for p in files_under(tmp_path) if not p.is_relative_to(store)}


def assert_all_inside(paths: set[Path], out: Path) -> None:
    root = out.resolve()
    for path in paths:
        assert path.resolve().is_relative_to(root), path


def local(out: Path, receipt: Receipt) -> Path:
    return out / receipt.remote_id


# --- publishing ----------------------------------------------------------------------------------


async def test_publish_writes_video_poster_and_sidecar(
    context: PluginContext, video: Video, out: Path
) -> None:
    before = datetime.now(UTC)
    the_job = job(video=video)

    receipt = await sink(context).publish(the_job, video)

    mp4 = out / "youtube" / "cast-iron-pan-care.mp4"
    jpg = mp4.with_suffix(".jpg")
    sidecar = mp4.with_suffix(".json")
    assert mp4.read_bytes() == video.path.read_bytes()
    with Image.open(jpg) as image:
        assert image.format == "JPEG"
        image.load()
        assert image.size == (160, 90)
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    expected = {
        "job_id": the_job.id,
        "pipeline": "t",
        "brief_id": the_job.brief.id,
        "brief_url": "https://blog.example/pan",
        "platform": "youtube",
        "title": "Cast iron pan care",
        "prompt": "A cast iron pan on a wooden table, warm light",
        "negative_prompt": "blur",
        "caption": "Season it once, use it forever.",
        "hashtags": ["#castiron", "cooking"],
        "provider": "preview",
        "model": "m",
        "cost_usd": 0.0,
        "cached": False,
        "request_key": the_job.request_key,
        "video_sha256": video.sha256,
        "size_bytes": video.size,
        "duration_s": video.duration_s,
        "width": 160,
        "height": 90,
        "file": "cast-iron-pan-care.mp4",
        "poster": "cast-iron-pan-care.jpg",
        "ai_generated": True,
    }
    assert {key: data[key] for key in expected} == expected
    assert "preview card" in data["disclosure"]
    published = datetime.fromisoformat(data["published_at"])
    assert published.utcoffset() == timedelta(0)
    assert before <= published <= datetime.now(UTC)

    assert receipt.sink == "files"
    assert receipt.remote_id == "youtube/cast-iron-pan-care.mp4"
    assert receipt.url == mp4.resolve().as_uri()
    assert receipt.url is not None and receipt.url.startswith("file:///")
    assert receipt.published_at == published
    assert receipt.details == {"sidecar": "youtube/cast-iron-pan-care.json"}
    assert written(context.base_dir) == {mp4, jpg, sidecar}


async def test_disclosure_names_the_provider_and_model(
    context: PluginContext, video: Video, out: Path
) -> None:
    the_job = job(provider="vertex-veo", model="veo-3.1-fast-generate-001", video=video)
    receipt = await sink(context).publish(the_job, video)
    data = json.loads((out / receipt.details["sidecar"]).read_text(encoding="utf-8"))
    assert data["ai_generated"] is True
    assert data["disclosure"] == (
        "This video was generated with AI (vertex-veo/veo-3.1-fast-generate-001)."
    )


async def test_title_falls_back_to_the_brief_title(
    context: PluginContext, video: Video, out: Path
) -> None:
    receipt = await sink(context).publish(job(title="", video=video), video)
    assert receipt.remote_id == "youtube/how-to-season-a-cast-iron-pan.mp4"


async def test_link_auto_hardlinks_on_one_filesystem(context: PluginContext, video: Video) -> None:
    receipt = await sink(context).publish(job(video=video), video)
    mp4 = local(context.base_dir / "out", receipt)
    assert mp4.stat().st_ino == video.path.stat().st_ino
    assert not mp4.is_symlink()


async def test_link_copy_writes_an_independent_copy(context: PluginContext, video: Video) -> None:
    receipt = await sink(context, link="copy").publish(job(video=video), video)
    mp4 = local(context.base_dir / "out", receipt)
    assert mp4.stat().st_ino != video.path.stat().st_ino
    assert mp4.read_bytes() == video.path.read_bytes()


async def test_link_hardlink_and_symlink(context: PluginContext, video: Video, out: Path) -> None:
    hard = await sink(context, link="hardlink").publish(job("h" * 12, video=video), video)
    assert local(out, hard).stat().st_ino == video.path.stat().st_ino

    soft_sink = sink(context, link="symlink")
    soft = await soft_sink.publish(job("s" * 12, title="Soft", video=video), video)
    assert local(out, soft).is_symlink()
    assert local(out, soft).resolve() == video.path.resolve()
    # Publishing again replaces its own link (the link itself points outside, by design).
    again = await soft_sink.publish(job("s" * 12, title="Soft", video=video), video)
    assert again.remote_id == soft.remote_id


async def test_a_poster_from_the_engine_is_used(
    context: PluginContext, video: Video, tmp_path: Path
) -> None:
    still = tmp_path / "store" / "posters" / f"{video.sha256}.jpg"
    still.parent.mkdir(parents=True)
    Image.new("RGB", (32, 18), (255, 0, 0)).save(still, "JPEG")
    with_poster = replace(video, poster=still)

    receipt = await sink(context).publish(job(video=video), with_poster)

    jpg = local(tmp_path / "out", receipt).with_suffix(".jpg")
    assert jpg.read_bytes() == still.read_bytes()


async def test_output_path_resolves_against_the_pipeline_folder(
    context: PluginContext, video: Video, tmp_path: Path
) -> None:
    receipt = await sink(context, path="public/videos").publish(job(video=video), video)
    assert (tmp_path / "public" / "videos" / receipt.remote_id).is_file()


# --- names: sanitised, and never outside the output folder ---------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Cast Iron: 5 Tips!", "cast-iron-5-tips"),
        ("../../etc/passwd", "etc-passwd"),
        ("/etc/passwd", "etc-passwd"),
        ("C:\\Windows\\system32", "c-windows-system32"),
        ("..", ""),
        ("...", ""),
        ("   \t\n", ""),
        ("--a--b--", "a-b"),
        ("日本語のタイトル：テスト", "日本語のタイトル-テスト"),
        ("Straße ﬁx ①", "straße-fix-1"),
        ("नमस्ते दुनिया", "नमस्ते-दुनिया"),
        ("\u202egpj.exe", "gpj-exe"),
        ("con", "_con"),
        ("NUL", "_nul"),
        ("com1", "_com1"),
        ("LPT9", "_lpt9"),
        ("console", "console"),
    ],
)
def test_slugify(text: str, expected: str) -> None:
    assert slugify(text) == expected


def test_slugify_caps_long_titles_at_a_word() -> None:
    slug = slugify("word " * 40)
    assert len(slug) <= 80
    assert slug == "-".join(["word"] * 16)
    assert len(slugify("x" * 500)) == 80


def test_slugify_caps_bytes_for_wide_scripts() -> None:
    slug = slugify("𠀀" * 100)  # 4 bytes each in UTF-8
    assert slug and len(slug.encode()) <= 200


@pytest.mark.parametrize(
    ("title", "brief_title", "platform"),
    [
        ("../../etc/passwd", "x", "youtube"),
        ("/etc/passwd", "x", "youtube"),
        ("..", "..", "youtube"),
        (".", "...", "youtube"),
        ("   ", "   .   ", "youtube"),
        ("a" * 300, "x", "youtube"),
        ("日本語のタイトル / テスト", "x", "youtube"),
        ("Fine title", "x", "../../escape"),
        ("Fine title", "x", "/abs/platform"),
        ("Fine title", "x", ".."),
        ("nul", "x", "con"),
    ],
)
async def test_hostile_names_stay_inside_the_output_folder(
    context: PluginContext, video: Video, out: Path, title: str, brief_title: str, platform: str
) -> None:
    the_job = job(title=title, brief_title=brief_title, platform=platform, video=video)

    receipt = await sink(context).publish(the_job, video)

    files = written(context.base_dir)
    assert len(files) == 3
    assert_all_inside(files, out)
    mp4 = local(out, receipt)
    assert mp4 in files
    assert len(Path(receipt.remote_id).parts) == 2
    stem = mp4.stem
    assert stem and stem not in {".", ".."} and not stem.startswith((".", "-"))
    assert len(stem) <= 80
    assert stem.lower() not in {"con", "nul", "prn", "aux"}
    assert mp4.parent.name.lower() not in {"con", "nul", "prn", "aux", ".", ".."}


async def test_a_title_with_nothing_readable_uses_the_job_id(
    context: PluginContext, video: Video
) -> None:
    the_job = job("Job-42", title="   ", brief_title="?!", video=video)
    receipt = await sink(context).publish(the_job, video)
    assert receipt.remote_id == "youtube/job-42.mp4"


async def test_cjk_titles_stay_readable(context: PluginContext, video: Video) -> None:
    receipt = await sink(context).publish(job(title="鋳鉄フライパンの手入れ", video=video), video)
    assert receipt.remote_id == "youtube/鋳鉄フライパンの手入れ.mp4"
    assert "%E9%8B%B3" in (receipt.url or "")


async def test_platform_folder_keeps_its_underscores(context: PluginContext, video: Video) -> None:
    receipt = await sink(context).publish(job(platform="youtube_shorts", video=video), video)
    assert receipt.remote_id.startswith("youtube_shorts/")


async def test_a_symlink_planted_at_the_platform_folder_is_refused(
    context: PluginContext, video: Video, out: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (out / "unrelated").mkdir(parents=True)
    elsewhere.mkdir()
    (out / "youtube").symlink_to(elsewhere, target_is_directory=True)
    files = sink(context)

    with pytest.raises(SinkError, match="symbolic link") as caught:
        await files.publish(job(video=video), video)
    assert caught.value.retryable is False
    assert str(out / "youtube") in str(caught.value)
    with pytest.raises(SinkError, match="symbolic link"):
        await files.find(job(video=video))
    assert list(elsewhere.iterdir()) == []


async def test_a_symlink_planted_at_a_file_is_replaced_not_written_through(
    context: PluginContext, video: Video, out: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "youtube").mkdir(parents=True)
    for ext in (".mp4", ".jpg"):
        (out / "youtube" / f"cast-iron-pan-care{ext}").symlink_to(victim)

    receipt = await sink(context, link="copy").publish(job(video=video), video)

    assert victim.read_text() == "keep me"
    mp4 = local(out, receipt)
    assert not mp4.is_symlink() and mp4.read_bytes() == video.path.read_bytes()
    assert not mp4.with_suffix(".jpg").is_symlink()


# --- collisions and idempotency ------------------------------------------------------------------


async def test_two_jobs_with_one_title_get_two_files(
    context: PluginContext, video: Video, out: Path
) -> None:
    files = sink(context)
    first = await files.publish(job("aaaaaaaa-1111", video=video), video)
    second = await files.publish(job("bbbbbbbb-2222", video=video), video)

    assert first.remote_id == "youtube/cast-iron-pan-care.mp4"
    assert second.remote_id == "youtube/cast-iron-pan-care-bbbbbbbb.mp4"
    for receipt, job_id in ((first, "aaaaaaaa-1111"), (second, "bbbbbbbb-2222")):
        data = json.loads((out / receipt.details["sidecar"]).read_text(encoding="utf-8"))
        assert data["job_id"] == job_id
    assert len(written(context.base_dir)) == 6


async def test_concurrent_publishes_of_one_title_never_share_a_name(
    context: PluginContext, video: Video, out: Path
) -> None:
    files = sink(context)
    jobs = [job(f"{i:08d}-job", video=video) for i in range(6)]
    receipts = await asyncio.gather(*(files.publish(j, video) for j in jobs))
    assert len({r.remote_id for r in receipts}) == 6
    for the_job, receipt in zip(jobs, receipts, strict=True):
        data = json.loads((out / receipt.details["sidecar"]).read_text(encoding="utf-8"))
        assert data["job_id"] == the_job.id


async def test_publishing_the_same_job_again_is_idempotent(
    context: PluginContext, video: Video, out: Path
) -> None:
    files = sink(context)
    await files.publish(job("aaaaaaaa-1111", video=video), video)
    second_job = job("bbbbbbbb-2222", video=video)
    first = await files.publish(second_job, video)
    snapshot = written(context.base_dir)

    again = await sink(context).publish(second_job, video)

    assert again.remote_id == first.remote_id
    assert again.details == first.details
    assert written(context.base_dir) == snapshot
    assert not [p for p in (out / "youtube").iterdir() if p.name.startswith(".")]


async def test_a_foreign_json_file_is_never_overwritten(
    context: PluginContext, video: Video, out: Path
) -> None:
    (out / "youtube").mkdir(parents=True)
    foreign = out / "youtube" / "cast-iron-pan-care.json"
    foreign.write_text("not ours")
    receipt = await sink(context).publish(job("cccccccc-3", video=video), video)
    assert foreign.read_text() == "not ours"
    assert receipt.remote_id == "youtube/cast-iron-pan-care-cccccccc.mp4"


# --- find ----------------------------------------------------------------------------------------


async def test_find_returns_the_receipt_of_an_earlier_publish(
    context: PluginContext, video: Video, out: Path
) -> None:
    the_job = job(video=video)
    assert await sink(context).find(the_job) is None
    assert written(context.base_dir) == set()  # looking writes nothing
    assert not any(p.name == "out" for p in context.base_dir.iterdir())

    published = await sink(context).publish(the_job, video)
    snapshot = written(context.base_dir)
    found = await sink(context).find(the_job)

    assert found is not None
    assert (found.sink, found.remote_id, found.url, found.details) == (
        published.sink,
        published.remote_id,
        published.url,
        published.details,
    )
    assert found.published_at == published.published_at
    assert written(context.base_dir) == snapshot


async def test_find_locates_a_suffixed_name(context: PluginContext, video: Video) -> None:
    files = sink(context)
    await files.publish(job("aaaaaaaa-1", video=video), video)
    second = await files.publish(job("bbbbbbbb-2", video=video), video)
    found = await files.find(job("bbbbbbbb-2", video=video))
    assert found is not None and found.remote_id == second.remote_id


async def test_find_returns_none_for_a_new_job(context: PluginContext, video: Video) -> None:
    files = sink(context)
    await files.publish(job("aaaaaaaa-1", video=video), video)
    assert await files.find(job("bbbbbbbb-2", video=video)) is None


async def test_find_returns_none_when_the_video_is_gone_or_incomplete(
    context: PluginContext, video: Video, out: Path
) -> None:
    files = sink(context, link="copy")
    the_job = job(video=video)
    receipt = await files.publish(the_job, video)
    mp4 = local(out, receipt)

    with mp4.open("r+b") as handle:
        handle.truncate(video.size // 2)
    assert await files.find(the_job) is None

    mp4.unlink()
    assert await files.find(the_job) is None


async def test_find_returns_none_for_a_different_video(
    context: PluginContext, video: Video
) -> None:
    files = sink(context)
    the_job = job(video=video)
    await files.publish(the_job, video)
    rerendered = replace(the_job, video_sha256="f" * 64)
    assert await files.find(rerendered) is None


# --- errors --------------------------------------------------------------------------------------


async def test_an_unwritable_output_folder_is_a_clear_permanent_error(
    context: PluginContext, video: Video, tmp_path: Path
) -> None:
    (tmp_path / "blocked").write_text("a file where the folder should be")
    with pytest.raises(SinkError) as caught:
        await sink(context, path="blocked").publish(job(video=video), video)
    assert caught.value.retryable is False
    assert str(tmp_path / "blocked") in str(caught.value)


async def test_a_video_missing_from_the_store_is_an_error(
    context: PluginContext, video: Video
) -> None:
    video.path.unlink()
    with pytest.raises(SinkError, match="missing from the store"):
        await sink(context).publish(job(video=video), video)


def test_config_is_validated_and_documented() -> None:
    config = FilesystemSink.Config.model_validate({})
    assert (config.path, config.link, config.gallery) == ("out", "auto", True)
    with pytest.raises(ValidationError):
        FilesystemSink.Config.model_validate({"link": "reflink"})
    with pytest.raises(ValidationError):
        FilesystemSink.Config.model_validate({"folder": "x"})
    properties = FilesystemSink.Config.model_json_schema()["properties"]
    assert all(properties[name].get("description") for name in ("path", "link", "gallery"))


# --- the gallery ---------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects the tags and text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


async def test_gallery_lists_every_run_and_escapes_content(
    context: PluginContext, video: Video, out: Path
) -> None:
    earlier_run = sink(context)
    await earlier_run.publish(job("aaaaaaaa-1", title="Earlier video", video=video), video)
    await earlier_run.close()

    this_run = sink(context)
    hostile = job(
        "bbbbbbbb-2",
        title="Pan <b>care</b>",
        caption="<script>alert(1)</script>",
        platform="tiktok",
        brief_url="javascript:alert(2)",
        video=video,
    )
    await this_run.publish(hostile, video)
    await this_run.close()

    html = (out / "index.html").read_text(encoding="utf-8")
    page = parse(html)
    text = " ".join(page.text)
    assert "Earlier video" in text and "Pan <b>care</b>" in text
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" in text  # shown to the reader as text
    assert "javascript:" not in " ".join(str(a.get("href")) for _, a in page.tags)
    assert "AI-generated" in text
    assert "2 videos on 2 platforms" in text
    assert [t for t, _ in page.tags].count("section") == 2

    videos = [attrs for tag, attrs in page.tags if tag == "video"]
    assert len(videos) == 2
    for attrs in videos:
        assert "controls" in attrs and attrs["preload"] == "none"
        assert "aspect-ratio: 160 / 90" in (attrs["style"] or "")
    links = [
        attrs[name]
        for _, attrs in page.tags
        for name in ("src", "poster", "href")
        if attrs.get(name) and not (attrs[name] or "").startswith(("#", "http"))
    ]
    assert len(links) >= 6
    for link in links:
        assert link is not None and not urlsplit(link).scheme and not link.startswith("/")
        target = out / unquote(link)
        assert target.is_file(), link
        assert_all_inside({target}, out)


async def test_gallery_urls_encode_file_names(context: PluginContext, video: Video) -> None:
    files = sink(context)
    await files.publish(job(title="鋳鉄 & pan #1", video=video), video)
    await files.close()
    page = parse((context.base_dir / "out" / "index.html").read_text(encoding="utf-8"))
    (src,) = [a["src"] for t, a in page.tags if t == "video"]
    assert src == "youtube/%E9%8B%B3%E9%89%84-pan-1.mp4"


async def test_gallery_skips_stray_files_and_deleted_videos(
    context: PluginContext, video: Video, out: Path
) -> None:
    files = sink(context)
    kept = await files.publish(job("aaaaaaaa-1", title="Kept", video=video), video)
    gone = await files.publish(job("bbbbbbbb-2", title="Gone", video=video), video)
    local(out, gone).unlink()
    (out / "youtube" / "notes.json").write_text("[1, 2")
    (out / "youtube" / "other.json").write_text('{"hello": "world"}')
    await files.close()

    page = parse((out / "index.html").read_text(encoding="utf-8"))
    sources = [a["src"] for t, a in page.tags if t == "video"]
    assert sources == [kept.remote_id]
    assert "1 video on 1 platform" in " ".join(page.text)


async def test_gallery_can_be_turned_off(context: PluginContext, video: Video, out: Path) -> None:
    files = sink(context, gallery=False)
    await files.publish(job(video=video), video)
    await files.close()
    assert not (out / "index.html").exists()


async def test_close_without_an_output_folder_writes_nothing(
    context: PluginContext, tmp_path: Path
) -> None:
    await sink(context).close()
    assert not (tmp_path / "out").exists()


# --- registration --------------------------------------------------------------------------------


def test_registered_through_the_entry_point() -> None:
    host = PluginHost.load(only=["filesystem"])
    assert host.plugins["filesystem"].loaded
    assert host.sink("filesystem") is FilesystemSink
    assert "filesystem" in host.sinks
