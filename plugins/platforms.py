"""The built-in platform presets.

Limits come from each platform's publishing rules as of 2026 (see docs/platforms.md); durations
and ratios are ones every supported provider can render (Veo renders 4, 6 or 8 s at 16:9 or 9:16).
A pipeline may override any field, or add its own platforms.
"""

from __future__ import annotations

from collections.abc import Callable

from reelpress import Platform, hookimpl

PRESETS = (
    Platform(
        name="youtube", label="YouTube", aspect_ratio="16:9", duration_s=8, resolution="720p",
        title_max=100, caption_max=5000, hashtags_max=15,
    ),
    Platform(
        name="youtube_shorts", label="YouTube Shorts", aspect_ratio="9:16", duration_s=8,
        resolution="720p", title_max=100, caption_max=5000, hashtags_max=15,
    ),
    Platform(
        name="instagram_reels", label="Instagram Reels", aspect_ratio="9:16", duration_s=8,
        resolution="720p", title_max=100, caption_max=2200, hashtags_max=30,
    ),
    Platform(
        name="tiktok", label="TikTok", aspect_ratio="9:16", duration_s=8, resolution="720p",
        title_max=90, caption_max=2200, hashtags_max=10,
    ),
    Platform(
        name="linkedin", label="LinkedIn", aspect_ratio="16:9", duration_s=8, resolution="720p",
        title_max=200, caption_max=3000, hashtags_max=5,
    ),
    Platform(
        name="hero", label="Article hero", aspect_ratio="16:9", duration_s=8, resolution="1080p",
        title_max=200, caption_max=500, hashtags_max=0,
    ),
)  # fmt: skip


@hookimpl
def register_platforms(register: Callable[[Platform], None]) -> None:
    for preset in PRESETS:
        register(preset)
