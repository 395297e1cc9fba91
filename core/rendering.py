"""From one brief to its rendered texts and render requests, platform by platform.

Pure work (templates, provider rules, prices): no I/O, no ledger, plain data out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidRequest, TemplateError
from .models import Brief, Platform, RenderRequest, Texts
from .pipeline import Pipeline


@dataclass(frozen=True)
class Rendered:
    """One platform's texts and request for a brief."""

    platform: str
    texts: Texts
    request: RenderRequest
    estimated_cost_usd: float
    adjusted: bool
    """Whether a title or caption was shortened to the platform's limits."""


@dataclass(frozen=True)
class RenderFailure:
    """Why a brief cannot become a job on one platform."""

    where: str
    message: str


def render_brief(
    pipeline: Pipeline, brief: Brief, image: str | None, platforms: Sequence[Platform]
) -> list[Rendered | RenderFailure]:
    """Render a brief for each platform and check the result against the provider's rules."""
    data = brief.template_data()
    provider = pipeline.provider
    out: list[Rendered | RenderFailure] = []
    for platform in platforms:
        where = f"{brief.id} → {platform.name}"
        try:
            texts = pipeline.templates.render(brief, platform, data=data)
        except TemplateError as exc:
            out.append(RenderFailure(where, str(exc)))
            continue
        texts, adjusted = fit_texts(texts, platform)
        if not texts.prompt:
            out.append(RenderFailure(where, f"template {platform.template} rendered an empty "
                                     "prompt"))  # fmt: skip
            continue
        request = provider.build_request(texts=texts, platform=platform, brief=brief, image=image)
        try:
            provider.validate(request)
        except InvalidRequest as exc:
            out.append(RenderFailure(where, f"provider {provider.name!r} would reject this: {exc}"))
            continue
        out.append(Rendered(platform.name, texts, request, provider.price(request), adjusted))
    return out


def fit_texts(texts: Texts, platform: Platform) -> tuple[Texts, bool]:
    """Keep within the platform's limits: title length, hashtag count, and caption length with
    the hashtags counted in (as Instagram and TikTok count them). Cuts at a word boundary."""
    title = _cut(texts.title, platform.title_max)
    hashtags = texts.hashtags[: platform.hashtags_max]
    while hashtags and len(" ".join(hashtags)) + 2 > platform.caption_max // 2:
        hashtags = hashtags[:-1]  # tags never crowd out the caption itself
    tag_room = len(" ".join(hashtags)) + 2 if hashtags else 0
    caption = _cut(texts.caption, max(0, platform.caption_max - tag_room))
    fitted = Texts(texts.prompt, texts.negative_prompt, title, caption, hashtags)
    return fitted, fitted != texts


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    cut = text[: limit - 1]
    if not text[limit - 1].isspace():  # the cut falls inside a word: drop the piece
        space = cut.rfind(" ")
        if space > limit // 2:
            cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"
