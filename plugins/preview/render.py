"""One request in, one finished MP4 out: the card, its timeline, the encoder, an atomic write.

Pure and synchronous (the provider runs it in a worker thread); the same request always gives the
same bytes, so a lost file can simply be rendered again.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from reelpress import RenderRequest

from .card import Card, CardSpec, draw_card, load_thumbnail
from .encode import Band, Settings, Step, encode, video_frames

DEFAULT_FPS = 24


def fps_of(request: RenderRequest) -> int:
    """Frame rate from the request's options (the platform's), 24 when absent."""
    value = request.options.get("fps", DEFAULT_FPS)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"options.fps must be a whole number, got {value!r}")
    return int(value)


def frame_count(request: RenderRequest) -> int:
    """Frames in the clip: the requested duration at the request's frame rate."""
    return max(1, round(request.duration_s * fps_of(request)))


def meta_line(request: RenderRequest) -> str:
    """``TikTok · 9:16 · 720p · 8 s``: where and how the real video would be published."""
    duration = f"{request.duration_s:g} s"
    platform = str(request.options.get("platform") or "")
    parts = [platform, request.aspect_ratio, request.resolution, duration]
    return " · ".join(part for part in parts if part)


def card_for(request: RenderRequest, image: Path | None = None) -> Card:
    """Draw the static card for a request (``image``: the reference image file, if any)."""
    width, height = request.size
    spec = CardSpec(
        width=width,
        height=height,
        title=str(request.options.get("title") or ""),
        prompt=request.prompt,
        meta=meta_line(request),
        duration_s=request.duration_s,
        thumbnail=load_thumbnail(image),
    )
    return draw_card(spec)


def band_of(card: Card) -> Band:
    """What the encoder needs to know about the card's moving rows."""
    return Band(card.band.top, card.band.bottom, card.draw_band)


def timeline(card: Card, frames: int, fps: int) -> list[Step]:
    """Per frame, the counter's second and the bar's fill: empty on the first frame, full on the
    last; the counter shows whole elapsed seconds and the total on the last frame."""
    steps = []
    for index in range(frames):
        last = index == frames - 1
        fraction = 1.0 if frames == 1 else index / (frames - 1)
        second = card.total_s if last else min(card.total_s, math.floor(index / fps))
        steps.append(Step(second, card.fill_x(fraction)))
    return steps


def render(
    request: RenderRequest,
    dest: Path,
    *,
    settings: Settings | None = None,
    image: Path | None = None,
) -> Path:
    """Render ``request`` to ``dest``, written beside it first and renamed into place, so a
    reader never sees a partial file."""
    settings = settings or Settings()
    fps = fps_of(request)
    card = card_for(request, image)
    frames = video_frames(card.base, band_of(card), timeline(card, frame_count(request), fps), fps)
    width, height = card.base.size
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".part", dir=dest.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        encode(tmp, frames, width=width, height=height, fps=fps, settings=settings)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def render_if_missing(
    request: RenderRequest,
    dest: Path,
    *,
    settings: Settings | None = None,
    image: Path | None = None,
) -> Path:
    """:func:`render` unless ``dest`` already exists (it can only be a complete render of the
    same request: files appear by rename and are named by the request's key)."""
    if not dest.is_file():
        render(request, dest, settings=settings, image=image)
    return dest
