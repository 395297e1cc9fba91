"""The data that flows between stages: plain, frozen, validated at the edges.

Brief → (templates) → Texts + RenderRequest → Job → Video → Receipt.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_CATEGORY_RE = re.compile(r"[^a-z0-9_]+")


def category_slug(value: str) -> str:
    """Normalise a category name to the form used for template file names (``Pots & Pans`` →
    ``pots_pans``), so content can never name a path."""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().lower()
    return _CATEGORY_RE.sub("_", folded).strip("_") or "default"


class Brief(BaseModel):
    """What a source says about one piece of content.

    ``id`` is stable and source-scoped (``wordpress:blog.example.com:123``); ``revision`` changes
    when the content changes. Anything without a field of its own goes in ``fields``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    id: str = Field(min_length=1, max_length=500)
    title: str = Field(min_length=1)
    revision: str | None = None
    summary: str = ""
    body: str = ""
    url: str | None = None
    keywords: tuple[str, ...] = ()
    category: str = "default"
    locale: str = "en"
    image: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", "title")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("category", mode="before")
    @classmethod
    def _category(cls, value: object) -> object:
        return category_slug(value) if isinstance(value, str) else value

    @field_validator("keywords", mode="before")
    @classmethod
    def _keywords(cls, value: object) -> object:
        if isinstance(value, str):
            value = re.split(r"[,;|]", value)
        if isinstance(value, list | tuple):
            seen: dict[str, None] = {}
            for item in value:
                text = str(item).strip()
                if text:
                    seen.setdefault(text, None)
            return tuple(seen)
        return value

    def template_data(self) -> dict[str, Any]:
        """The brief as plain data for templates (never compiled: content is data, not code)."""
        return self.model_dump()


RESOLUTIONS = {"480p": 480, "720p": 720, "1080p": 1080, "4k": 2160}
_RATIO_RE = re.compile(r"^(\d{1,2}):(\d{1,2})$")


class Platform(BaseModel):
    """A named output format and its publishing rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str = ""
    aspect_ratio: str = "16:9"
    duration_s: float = Field(default=8, gt=0, le=600)
    resolution: str = "720p"
    fps: int = Field(default=24, ge=1, le=60)
    template: str = ""
    title_max: int = Field(default=100, ge=1)
    caption_max: int = Field(default=2200, ge=1)
    hashtags_max: int = Field(default=10, ge=0)

    @field_validator("aspect_ratio")
    @classmethod
    def _ratio(cls, value: str) -> str:
        match = _RATIO_RE.match(value)
        if not match or 0 in (int(match[1]), int(match[2])):
            raise ValueError(f"expected an aspect ratio like '16:9' or '9:16', got {value!r}")
        return value

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, value: str) -> str:
        value = value.lower()
        if value not in RESOLUTIONS:
            raise ValueError(f"expected one of {', '.join(RESOLUTIONS)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Platform:
        if not self.template:
            object.__setattr__(self, "template", f"platforms/{self.name}.j2")
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " ").title())
        return self

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels: the short side is the resolution, both sides even."""
        return frame_size(self.aspect_ratio, self.resolution)


@lru_cache(maxsize=256)
def frame_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """Pixel size for an aspect ratio and a resolution name (``9:16``, ``720p`` → 720×1280)."""
    match = _RATIO_RE.match(aspect_ratio)
    if not match:
        raise ValueError(f"bad aspect ratio {aspect_ratio!r}")
    w, h = int(match[1]), int(match[2])
    short = RESOLUTIONS[resolution.lower()]

    def even(x: float) -> int:
        return round(x / 2) * 2

    return (even(short * w / h), short) if w >= h else (short, even(short * h / w))


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(data: Any) -> str:
    """One spelling for one value: sorted keys, no spaces, UTF-8, integral floats as ints."""
    return _CANONICAL.encode(_canonical(data))


def _canonical(value: Any) -> Any:
    kind = type(value)  # exact types first: this runs for every job of a 100,000-job plan
    if kind is str:
        return unicodedata.normalize("NFC", value)
    if kind is float:
        return int(value) if value.is_integer() else value
    if kind is dict:
        return {str(k): _canonical(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_canonical(v) for v in value]
    if isinstance(value, str):
        return unicodedata.normalize("NFC", str(value))
    if isinstance(value, float):
        return _canonical(float(value))
    if isinstance(value, dict):
        return _canonical(dict(value))
    if isinstance(value, list | tuple):
        return _canonical(list(value))
    return value


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RenderRequest:
    """Exactly what a provider needs to render one video, and nothing else.

    Its ``key`` (sha256 of the canonical JSON) is the content address of the result: the cache key
    and the idempotency key. ``image`` is the sha256 of the reference image in the store.
    ``options`` holds provider-specific parameters; they are part of the key.
    """

    provider: str
    model: str
    prompt: str
    negative_prompt: str = ""
    aspect_ratio: str = "16:9"
    resolution: str = "720p"
    duration_s: float = 8
    seed: int | None = None
    audio: bool = True
    image: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The canonical JSON (computed once: requests are immutable)."""
        cached: str | None = self.__dict__.get("_json")
        if cached is None:
            cached = canonical_json({"v": 1, **{n: getattr(self, n) for n in _REQUEST_FIELDS}})
            object.__setattr__(self, "_json", cached)
        return cached

    @property
    def key(self) -> str:
        cached: str | None = self.__dict__.get("_key")
        if cached is None:
            cached = sha256_text(self.to_json())
            object.__setattr__(self, "_key", cached)
        return cached

    @property
    def size(self) -> tuple[int, int]:
        return frame_size(self.aspect_ratio, self.resolution)

    @classmethod
    def from_json(cls, text: str) -> RenderRequest:
        data = json.loads(text)
        data.pop("v", None)
        return cls(**data)


_REQUEST_FIELDS = tuple(f.name for f in dataclass_fields(RenderRequest))


class JobState(StrEnum):
    """Where a job is. The ledger is the single source of truth."""

    PLANNED = "planned"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    GENERATED = "generated"
    PUBLISHED = "published"
    FAILED = "failed"
    FILTERED = "filtered"
    OVER_BUDGET = "over_budget"
    CANCELLED = "cancelled"
    NEEDS_RECONCILE = "needs_reconcile"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        JobState.PUBLISHED,
        JobState.FAILED,
        JobState.FILTERED,
        JobState.OVER_BUDGET,
        JobState.CANCELLED,
        JobState.NEEDS_RECONCILE,
    }
)


@dataclass(frozen=True)
class Texts:
    """What the platform template rendered for one brief."""

    prompt: str
    negative_prompt: str = ""
    title: str = ""
    caption: str = ""
    hashtags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "title": self.title,
            "caption": self.caption,
            "hashtags": list(self.hashtags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Texts:
        return cls(**{**data, "hashtags": tuple(data.get("hashtags", ()))})


@dataclass(frozen=True)
class Video:
    """A verified file in the content-addressed store."""

    sha256: str
    path: Path
    size: int
    duration_s: float
    width: int
    height: int
    mime: str = "video/mp4"
    video_codec: str = ""
    audio_codec: str = ""
    poster: Path | None = None


@dataclass(frozen=True)
class Receipt:
    """What a sink reports after publishing one job."""

    sink: str
    remote_id: str
    url: str | None = None
    published_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """One brief on one platform, as the ledger last recorded it."""

    id: str
    pipeline: str
    brief: Brief
    platform: str
    state: JobState
    texts: Texts
    request: RenderRequest
    sinks: tuple[str, ...]
    attempts: int = 0
    estimated_cost_usd: float = 0.0
    cost_usd: float | None = None
    cached: bool = False
    operation_id: str | None = None
    video_sha256: str | None = None
    last_error: str | None = None
    due_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def request_key(self) -> str:
        return self.request.key
