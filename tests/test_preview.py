"""The built-in ``preview`` provider on real files: what it renders (codec, size, timing, audio,
layout of the MP4), that it is deterministic, that the progress bar moves and nothing else does,
that non-Latin text gets real glyphs, and how it recovers and validates."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import struct
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat
from pydantic import ValidationError

from reelpress import (
    Brief,
    Done,
    InvalidRequest,
    Platform,
    PluginContext,
    RenderRequest,
    Texts,
)
from reelpress.media import probe
from reelpress.plugins import PluginHost
from reelpress_plugins.preview import PreviewProvider, fonts, text
from reelpress_plugins.preview.encode import video_frames
from reelpress_plugins.preview.render import band_of, card_for, frame_count, render, timeline

PROMPT = "A slow dolly shot over a misty pine forest at dawn, golden light through the trees."

# --- helpers ---------------------------------------------------------------------------------


def make_provider(tmp_path: Path) -> PreviewProvider:
    context = PluginContext(
        pipeline="t",
        instance="preview",
        base_dir=tmp_path,
        state_dir=tmp_path / "state",
        store_dir=tmp_path / "store",
    )
    return PreviewProvider(PreviewProvider.Config(), context)


def make_request(
    provider: PreviewProvider,
    *,
    ratio: str = "9:16",
    resolution: str = "480p",
    duration: float = 2,
    fps: int = 24,
    title: str = "How to brew pour-over coffee",
    prompt: str = PROMPT,
    image: str | None = None,
) -> RenderRequest:
    platform = Platform(
        name="tiktok",
        label="TikTok",
        aspect_ratio=ratio,
        resolution=resolution,
        duration_s=duration,
        fps=fps,
    )
    brief = Brief(id="t:1", title=title)
    return provider.build_request(
        texts=Texts(prompt=prompt), platform=platform, brief=brief, image=image
    )


async def render_through(provider: PreviewProvider, request: RenderRequest, dest: Path) -> Path:
    operation = await provider.submit(request)
    done = await provider.poll(operation)
    assert isinstance(done, Done)
    assert done.cost_usd == 0.0
    await provider.download(done, dest)
    return dest


def read(path: str | Path, *, then_delete: bool = False) -> bytes:
    data = Path(path).read_bytes()
    if then_delete:
        Path(path).unlink()
    return data


def top_level_boxes(data: bytes) -> list[str]:
    """The MP4's top-level box types, in file order."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        elif size == 0:
            size = len(data) - offset
        assert size >= 8, f"corrupt box at {offset}"
        boxes.append(kind.decode("latin-1"))
        offset += size
    assert offset == len(data)
    return boxes


def decoded_frames(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


# --- the file ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "resolution", "duration", "size"),
    [
        ("9:16", "720p", 8, (720, 1280)),
        ("16:9", "720p", 4, (1280, 720)),
        ("1:1", "480p", 3, (480, 480)),
    ],
)
async def test_submit_poll_download_gives_a_playable_mp4(
    tmp_path: Path, ratio: str, resolution: str, duration: float, size: tuple[int, int]
) -> None:
    provider = make_provider(tmp_path)
    request = make_request(provider, ratio=ratio, resolution=resolution, duration=duration)
    dest = await render_through(provider, request, tmp_path / "out.mp4")

    fps = 24
    with av.open(str(dest)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert (video.codec_context.width, video.codec_context.height) == size
        assert audio.codec_context.name == "aac"
        assert audio.codec_context.sample_rate == 48000
        assert audio.codec_context.channels == 2
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == round(duration * fps)
    assert abs(probe(dest).duration_s - duration) <= 1 / fps

    boxes = top_level_boxes(dest.read_bytes())
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    # download moved the file: nothing is left behind in the state folder
    assert not list((tmp_path / "state" / "renders").glob("*.mp4"))


async def test_operation_can_be_polled_from_its_stored_data(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    request = make_request(provider)
    operation = await provider.submit(request)
    assert operation.id == f"preview-{request.key[:16]}"
    assert RenderRequest.from_json(operation.data["request"]) == request
    assert read(operation.data["path"])


async def test_poll_renders_again_when_the_file_vanished(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    operation = await provider.submit(make_request(provider))
    original = read(operation.data["path"], then_delete=True)

    result = await provider.poll(operation)

    assert isinstance(result, Done)
    assert read(result.result["path"]) == original
    assert not list((tmp_path / "state" / "renders").glob("*.part")), "temporary file left over"


async def test_rendering_leaves_the_event_loop_free(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    first = asyncio.create_task(provider.submit(make_request(provider)))
    second = asyncio.create_task(provider.submit(make_request(provider, title="Second")))
    turns = 0
    while not (first.done() and second.done()):
        turns += 1
        await asyncio.sleep(0)  # a turn of the loop, not a wait
    assert turns > 10  # rendering in the loop's thread would finish each task in one turn
    a, b = first.result(), second.result()
    assert a.data["path"] != b.data["path"]
    polled = [await provider.poll(operation) for operation in (a, b)]
    assert all(isinstance(result, Done) for result in polled)


# --- determinism -------------------------------------------------------------------------------


def test_same_request_renders_byte_identical_files(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    request = make_request(provider)
    first = render(request, tmp_path / "a.mp4").read_bytes()
    second = render(request, tmp_path / "b.mp4").read_bytes()
    other = render(make_request(provider, title="Another title"), tmp_path / "c.mp4")
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    assert other.read_bytes() != first


def test_title_and_platform_are_part_of_the_cache_key(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    request = make_request(provider, fps=30)
    assert request.options == {
        "title": "How to brew pour-over coffee",
        "platform": "TikTok",
        "fps": 30,
    }
    assert make_request(provider, title="Other").key != request.key


# --- what moves and what does not ----------------------------------------------------------------


def test_only_the_band_changes_between_frames_handed_to_the_encoder(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    request = make_request(provider, duration=3)
    card = card_for(request)
    steps = timeline(card, frame_count(request), fps=24)
    frames = list(video_frames(card.base, band_of(card), steps, 24))
    first, second, last = frames[0], frames[1], frames[-1]
    top, bottom = card.band.top, card.band.bottom

    # outside the band, every plane is byte for byte the same picture
    for other in (second, last):
        for plane in range(3):
            assert rows(first, plane, 0, top) == rows(other, plane, 0, top)
            assert rows(first, plane, bottom, None) == rows(other, plane, bottom, None)
    # inside it, the bar fills...
    assert rows(first, 0, top, bottom) != rows(second, 0, top, bottom)
    assert rows(first, 0, top, bottom) != rows(last, 0, top, bottom)
    # ...and the counter ticks once a second
    counter = card.counter
    crop = (counter.left, counter.top, counter.right, counter.bottom)
    shown = [frames[i].to_image().crop(crop).tobytes() for i in (0, 23, 24)]
    assert shown[0] == shown[1]  # 0:00 both
    assert shown[1] != shown[2]  # 0:00 → 0:01


def rows(frame: av.VideoFrame, plane: int, top: int, bottom: int | None) -> bytes:
    """Bytes of luma rows ``top``..``bottom`` (halved for the chroma planes)."""
    shift = 0 if plane == 0 else 1
    data, stride = bytes(frame.planes[plane]), frame.planes[plane].line_size
    end = None if bottom is None else (bottom >> shift) * stride
    return data[(top >> shift) * stride : end]


def test_decoded_progress_bar_moves_and_the_title_stays(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    request = make_request(provider, duration=2)
    card = card_for(request)
    frames = decoded_frames(render(request, tmp_path / "a.mp4"))
    first, last = frames[0], frames[-1]
    bar = card.bar
    bar_box = (bar.left, bar.top, bar.right, bar.bottom)
    title_box = (0, 0, card.base.width, card.band.top - 64)

    assert mean_difference(first.crop(bar_box), last.crop(bar_box)) > 40
    # H.264 may refine a few blocks of a still picture in later frames, so "the same" means
    # indistinguishable here; the frames handed to the encoder are compared byte for byte above.
    assert mean_difference(first.crop(title_box), last.crop(title_box)) < 0.5
    # the bar fills from the left: track colour at first, accent colour at the end
    middle = (bar.left + bar.width // 2, (bar.top + bar.bottom) // 2)
    before, after = first.getpixel(middle), last.getpixel(middle)
    assert isinstance(before, tuple) and isinstance(after, tuple)
    assert sum(abs(a - b) for a, b in zip(before, after, strict=True)) > 100


# --- non-Latin text ----------------------------------------------------------------------------


def test_font_chooser_reads_coverage_from_the_fonts() -> None:
    assert fonts.font_for("漢") == fonts.FALLBACK
    assert fonts.font_for("ع") == fonts.ARABIC
    assert fonts.font_for("ש") == fonts.HEBREW
    assert fonts.font_for("क") == fonts.DEVANAGARI
    assert fonts.font_for("ก") == fonts.THAI
    assert fonts.font_for("한") == fonts.HANGUL
    assert fonts.font_for("A") == fonts.REGULAR
    assert fonts.font_for("Ж") == fonts.REGULAR
    assert fonts.font_for("A", bold=True) == fonts.BOLD
    regular = fonts.coverage(fonts.REGULAR)
    assert ord("A") in regular and ord("Ω") in regular and ord("漢") not in regular
    assert ord("漢") in fonts.coverage(fonts.FALLBACK)


def _line_mask(line: str, font: str | None = None, size: int = 48) -> Image.Image:
    image = Image.new("L", (400, 80))
    draw = ImageDraw.Draw(image)
    if font is None:
        text.draw_line(
            draw,
            text.Line(line, text.strong_direction(line) or "ltr"),
            left=10,
            right=390,
            baseline=60,
            style=text.Style(size),
            fill=255,
        )
    else:
        draw.text((10, 60), line, font=fonts.load(font, size), fill=255, anchor="ls")
    return image


def test_cjk_text_is_drawn_with_real_glyphs() -> None:
    drawn = _line_mask("漢字")
    tofu = _line_mask("漢字", font=fonts.REGULAR)  # the primary font has only empty boxes
    assert drawn.getbbox() is not None
    assert drawn.tobytes() != tofu.tobytes()
    assert drawn.tobytes() == _line_mask("漢字", font=fonts.FALLBACK).tobytes()


def test_korean_is_drawn_with_real_glyphs() -> None:
    hangul = range(0xAC00, 0xD7A4)
    assert all(code in fonts.coverage(fonts.HANGUL) for code in hangul)  # all 11,172 syllables
    drawn = _line_mask("한국어")
    assert drawn.getbbox() is not None
    assert drawn.tobytes() != _line_mask("한국어", font=fonts.FALLBACK).tobytes()


def test_arabic_is_shaped_and_aligned_right() -> None:
    word = "عربي"
    style = text.Style(40)
    isolated = sum(text.measure(char, style) for char in word)
    assert text.measure(word, style) != pytest.approx(isolated, abs=0.5)  # joined forms
    box = _line_mask(word).getbbox()
    assert box is not None and box[2] > 370  # starts at the right edge


def test_wrapping_by_width_and_ellipsis() -> None:
    style = text.Style(30)
    cjk, cut = text.wrap("这是一个很长的中文提示用于测试换行" * 3, style, 300, 10)
    assert len(cjk) > 1 and not cut
    assert all(text.measure(line.text, style) <= 300 for line in cjk)
    latin, cut = text.wrap(PROMPT * 5, style, 300, 3)
    assert cut and len(latin) == 3
    assert latin[-1].text.endswith(text.ELLIPSIS)
    assert all(text.measure(line.text, style) <= 300 for line in latin)


# --- reference image ---------------------------------------------------------------------------


async def test_reference_image_is_shown_and_a_missing_one_is_ignored(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    image = tmp_path / "ref.png"
    Image.new("RGB", (64, 48), (250, 20, 20)).save(image)
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    asset = provider.context.asset_path(sha)
    request = make_request(provider, image=sha)

    plain = card_for(request).base
    assert card_for(request, tmp_path / "missing.png").base.tobytes() == plain.tobytes()
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert card_for(request, tmp_path / "broken.png").base.tobytes() == plain.tobytes()
    assert card_for(request, image).base.tobytes() != plain.tobytes()

    # through the provider: no asset in the store yet, still a video
    await render_through(provider, request, tmp_path / "without.mp4")
    asset.parent.mkdir(parents=True)
    asset.write_bytes(image.read_bytes())
    await render_through(provider, request, tmp_path / "with.mp4")
    assert _has_red(decoded_frames(tmp_path / "with.mp4")[0])
    assert not _has_red(decoded_frames(tmp_path / "without.mp4")[0])


def _has_red(image: Image.Image) -> bool:
    red, green, _ = image.convert("RGB").split()
    strong = red.point(lambda v: 255 if v > 200 else 0)
    weak = green.point(lambda v: 255 if v < 80 else 0)
    return ImageChops.multiply(strong, weak).getbbox() is not None


# --- rules and registration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": 61}, "duration_s"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"resolution": "999p"}, "resolution"),
        ({"aspect_ratio": "wide"}, "aspect_ratio"),
        ({"options": {"fps": 0}}, "fps"),
    ],
)
def test_validate_names_the_field(tmp_path: Path, changes: dict[str, object], field: str) -> None:
    provider = make_provider(tmp_path)
    request = dataclasses.replace(make_request(provider), **changes)
    with pytest.raises(InvalidRequest, match=field):
        provider.validate(request)


def test_validate_accepts_the_limits(tmp_path: Path) -> None:
    provider = make_provider(tmp_path)
    for duration in (1, 60):
        provider.validate(make_request(provider, duration=duration))
    provider.validate(make_request(provider, prompt="x" * 4000))
    assert provider.price(make_request(provider)) == 0.0


def test_config_is_small_and_checked() -> None:
    config = PreviewProvider.Config()
    assert (config.model, config.preset, config.crf) == ("preview-card-1", "veryfast", 23)
    with pytest.raises(ValidationError):
        PreviewProvider.Config(crf=52)
    with pytest.raises(ValidationError):
        PreviewProvider.Config(preset="warp-speed")
    with pytest.raises(ValidationError):
        PreviewProvider.Config(unknown=1)


def test_registered_through_the_entry_point() -> None:
    host = PluginHost.load(only=["preview"])
    assert host.plugins["preview"].error is None
    assert host.providers["preview"].value is PreviewProvider
    assert PreviewProvider.resubmit_safe is True
    assert PreviewProvider.default_concurrency == 2
