"""The gallery: one self-contained ``index.html`` listing every video in the output folder.

It is built from the sidecars on disk, not from this run, so videos from earlier runs stay listed.
Memory stays flat however many videos there are: a first pass keeps only a sort key per sidecar,
and the page is streamed to disk while a second pass reads the sidecars again, one at a time.
Titles, captions and prompts are CMS content, so the template escapes everything.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from . import fileops
from .slugs import slugify

PACKAGE = "reelpress_plugins.filesystem"
TEMPLATE = "gallery.html.j2"


@dataclass(frozen=True)
class _Entry:
    """What the first pass keeps of one sidecar: where it is and how it sorts."""

    platform: str
    title_key: str
    folder: str
    sidecar: str
    portrait: bool


@dataclass(frozen=True)
class Card:
    """One video as the template shows it (every text is escaped there)."""

    title: str
    caption: str
    hashtags: list[str]
    prompt: str
    negative_prompt: str
    provider: str
    model: str
    cost: str
    duration: str
    size: str
    published: str
    width: int
    height: int
    video_url: str
    poster_url: str | None
    sidecar_url: str
    brief_url: str | None
    disclosure: str
    preview: bool


@dataclass(frozen=True)
class Section:
    """One platform's videos; ``cards`` is read lazily while the page is written."""

    platform: str
    anchor: str
    count: int
    portrait: bool
    cards: Iterator[Card]


def write_gallery(root: Path, index: Path, pipeline: str) -> int:
    """Write ``index`` (atomically) listing every published video under ``root``; returns how
    many it lists."""
    entries = sorted(_scan(root), key=lambda e: (e.platform, e.title_key, e.folder, e.sidecar))
    counts = Counter(e.platform for e in entries)
    template = _environment().get_template(TEMPLATE)
    stream = template.generate(
        pipeline=pipeline,
        total=len(entries),
        sections=_sections(root, entries, counts),
        platform_count=len(counts),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    with fileops.atomic_path(index) as tmp, tmp.open("x", encoding="utf-8") as handle:
        handle.writelines(stream)
    return len(entries)


@cache
def _environment() -> Environment:
    """Autoescaping on: every value from a sidecar is text, never markup."""
    folder = str(files(PACKAGE))
    return Environment(
        loader=FileSystemLoader(folder),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _scan(root: Path) -> Iterator[_Entry]:
    """First pass: every ``<root>/<folder>/<name>.json`` that is a sidecar of an existing video.

    Links are skipped (a folder or file planted as a link is not this sink's)."""
    for folder in _listdir(root):
        if not folder.is_dir(follow_symlinks=False):
            continue
        for item in _listdir(Path(folder.path)):
            if not item.name.endswith(".json") or not item.is_file(follow_symlinks=False):
                continue
            data = fileops.read_sidecar(Path(item.path))
            if data is None or _video_name(Path(folder.path), data) is None:
                continue
            width, height = _dimensions(data)
            yield _Entry(
                platform=_text(data.get("platform")) or folder.name,
                title_key=_text(data.get("title")).casefold(),
                folder=folder.name,
                sidecar=item.name,
                portrait=height > width,
            )


def _listdir(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda entry: entry.name)


def _sections(root: Path, entries: list[_Entry], counts: Counter[str]) -> list[Section]:
    """One section per platform, in order; each reads its cards only when the page gets there."""
    sections = []
    start = 0
    for number, (platform, count) in enumerate(sorted(counts.items()), 1):
        chunk = entries[start : start + count]
        start += count
        sections.append(
            Section(
                platform=platform,
                anchor=f"p{number}-{slugify(platform, keep='_')}",
                count=count,
                portrait=sum(e.portrait for e in chunk) * 2 > count,
                cards=_cards(root, chunk),
            )
        )
    return sections


def _cards(root: Path, entries: list[_Entry]) -> Iterator[Card]:
    """Second pass: read each sidecar again as its card is written (one in memory at a time)."""
    for entry in entries:
        folder = root / entry.folder
        data = fileops.read_sidecar(folder / entry.sidecar)
        if data is not None:
            card = _card(folder, data, entry)
            if card is not None:
                yield card


def _card(folder: Path, data: dict[str, Any], entry: _Entry) -> Card | None:
    video = _video_name(folder, data)
    if video is None:
        return None
    poster = _plain_name(data.get("poster"))
    has_poster = poster is not None and (folder / poster).is_file()
    width, height = _dimensions(data)
    provider, model = _text(data.get("provider")), _text(data.get("model"))
    return Card(
        title=_text(data.get("title")) or video,
        caption=_text(data.get("caption")),
        hashtags=[_hashtag(tag) for tag in _list(data.get("hashtags"))],
        prompt=_text(data.get("prompt")),
        negative_prompt=_text(data.get("negative_prompt")),
        provider=provider,
        model=model,
        cost=_cost(data.get("cost_usd"), data.get("cached") is True),
        duration=_duration(data.get("duration_s")),
        size=f"{width}×{height}",
        published=_text(data.get("published_at"))[:16].replace("T", " "),
        width=width,
        height=height,
        video_url=_url(entry.folder, video),
        poster_url=_url(entry.folder, poster) if has_poster and poster else None,
        sidecar_url=_url(entry.folder, entry.sidecar),
        brief_url=_web_url(data.get("brief_url")),
        disclosure=_text(data.get("disclosure")) or "This video was generated with AI.",
        preview=provider == "preview",
    )


def _video_name(folder: Path, data: dict[str, Any]) -> str | None:
    """The sidecar's video file name, if it is a plain name of a file that exists."""
    name = _plain_name(data.get("file"))
    return name if name is not None and (folder / name).is_file() else None


def _plain_name(value: object) -> str | None:
    """A file name in the same folder; anything that could point elsewhere is ignored."""
    if not isinstance(value, str) or value in {"", ".", ".."}:
        return None
    return value if "/" not in value and "\\" not in value and "\0" not in value else None


def _url(folder: str, name: str) -> str:
    """A relative URL from ``index.html``: each path part percent-encoded."""
    return f"{quote(folder, safe='')}/{quote(name, safe='')}"


def _web_url(value: object) -> str | None:
    """Only http(s) links to the source: a ``javascript:`` URL in a CMS field stays text."""
    if isinstance(value, str) and urlsplit(value).scheme.lower() in {"http", "https"}:
        return value
    return None


def _dimensions(data: dict[str, Any]) -> tuple[int, int]:
    width, height = data.get("width"), data.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return 16, 9


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _list(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def _hashtag(tag: str) -> str:
    return tag if tag.startswith("#") else f"#{tag}"


def _cost(value: object, cached: bool) -> str:
    if cached:
        return "cached, no cost"
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"${value:,.2f}"
    return "cost unknown"


def _duration(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.1f} s"
    return ""
