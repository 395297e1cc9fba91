"""The built-in offline ``preview`` provider: renders a title card video locally, for free.

It lets a pipeline run end to end (plan, render, store, publish) before any paid provider is
configured, and shows what each job would ask for: title, prompt, platform and timing. Registered
through the ``reelpress`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import av
from pydantic import Field

from reelpress import (
    Brief,
    Done,
    Failed,
    InvalidRequest,
    Operation,
    Platform,
    PluginConfig,
    PollResult,
    Provider,
    ProviderError,
    RenderRequest,
    Texts,
    hookimpl,
)

from .encode import Settings
from .render import fps_of, render_if_missing

__all__ = ["PreviewProvider", "register_providers"]

MIN_DURATION_S = 1
MAX_DURATION_S = 60
MAX_PROMPT_CHARS = 4000
MAX_SIDE = 8192

X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]


class PreviewConfig(PluginConfig):
    """Options of the ``preview`` provider."""

    model: str = "preview-card-1"
    """Recorded in the request (and so in the cache key); there is only one card design."""
    preset: X264Preset = "veryfast"
    """x264 preset: slower presets make smaller files, not better-looking cards."""
    crf: int = Field(default=23, ge=0, le=51)
    """x264 constant rate factor: lower is higher quality and larger files."""


class PreviewProvider(Provider[PreviewConfig]):
    """Renders an H.264/AAC MP4 title card: the brief's title, the prompt, the platform and a
    progress bar. Deterministic, so a lost file is simply rendered again."""

    name = "preview"
    Config = PreviewConfig
    default_model = "preview-card-1"
    resubmit_safe: ClassVar[bool] = True
    """Rendering locally costs nothing, so a repeated submission is harmless."""
    default_concurrency: ClassVar[int] = 2
    first_poll_s: ClassVar[float] = 0.0
    """The render is finished when ``submit`` returns: poll at once."""

    def request_options(self, *, texts: Texts, platform: Platform, brief: Brief) -> dict[str, Any]:
        """What the card shows beyond the prompt (title, platform, frame rate): it changes the
        output, so it belongs in the request and its cache key."""
        return {"title": brief.title, "platform": platform.label, "fps": platform.fps}

    def validate(self, request: RenderRequest) -> None:
        """Reject what the renderer cannot make, naming the field, the limits and the value."""
        duration = request.duration_s
        if not MIN_DURATION_S <= duration <= MAX_DURATION_S:
            raise InvalidRequest(
                f"preview: duration_s must be between {MIN_DURATION_S} and {MAX_DURATION_S} "
                f"seconds, got {duration:g}"
            )
        if not request.prompt.strip():
            raise InvalidRequest("preview: prompt must not be empty")
        if len(request.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(
                f"preview: prompt must be at most {MAX_PROMPT_CHARS} characters, "
                f"got {len(request.prompt)}"
            )
        try:
            width, height = request.size
        except (KeyError, ValueError, ZeroDivisionError) as exc:
            raise InvalidRequest(
                f"preview: cannot compute a frame size from aspect_ratio "
                f"{request.aspect_ratio!r} and resolution {request.resolution!r} (expected a "
                f"ratio like '9:16' and one of 480p, 720p, 1080p, 4k): {exc}"
            ) from None
        if max(width, height) > MAX_SIDE:
            raise InvalidRequest(
                f"preview: frame size {width}x{height} from aspect_ratio "
                f"{request.aspect_ratio!r} is too large (at most {MAX_SIDE} pixels a side)"
            )
        try:
            fps = fps_of(request)
        except ValueError as exc:
            raise InvalidRequest(f"preview: {exc}") from None
        if not 1 <= fps <= 60:
            raise InvalidRequest(f"preview: options.fps must be between 1 and 60, got {fps}")

    def price(self, request: RenderRequest) -> float:
        return 0.0

    async def submit(self, request: RenderRequest) -> Operation:
        """Render now, in a worker thread so the event loop keeps serving other jobs (a file
        left by an earlier submission of the same request is reused: rendering is
        deterministic)."""
        path = self._path(request)
        await self._ensure(request, path)
        return Operation(
            id=f"preview-{request.key[:16]}",
            data={"request": request.to_json(), "path": str(path)},
        )

    async def poll(self, operation: Operation) -> PollResult:
        """Done once the file exists; rendered again if it vanished (say, the process was killed
        after submitting and the state folder was cleaned)."""
        try:
            request = RenderRequest.from_json(operation.data["request"])
            path = Path(operation.data.get("path") or self._path(request))
        except (KeyError, TypeError, ValueError) as exc:
            message = f"preview: operation {operation.id} has no usable request: {exc}"
            return Failed(ProviderError(message))
        try:
            await self._ensure(request, path)
        except ProviderError as exc:
            return Failed(exc)
        return Done(result={"path": str(path)}, cost_usd=0.0)

    async def download(self, done: Done, dest: Path) -> None:
        """Move the rendered file to ``dest`` (it is not needed here afterwards)."""
        source = Path(done.result["path"])
        try:
            await asyncio.to_thread(shutil.move, source, dest)
        except FileNotFoundError:
            # Submitting again renders it again (and costs nothing).
            raise ProviderError(
                f"preview: rendered file {source} is missing", retryable=True
            ) from None

    def _path(self, request: RenderRequest) -> Path:
        return self.context.state_dir / "renders" / f"{request.key}.mp4"

    async def _ensure(self, request: RenderRequest, path: Path) -> None:
        settings = Settings(preset=self.config.preset, crf=self.config.crf)
        image = self._image(request)
        try:
            await asyncio.to_thread(
                render_if_missing, request, path, settings=settings, image=image
            )
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise ProviderError(f"preview: rendering {request.key[:12]} failed: {exc}") from exc

    def _image(self, request: RenderRequest) -> Path | None:
        """The reference image in the store, if the request has one (it may be missing: the
        card is then drawn without it)."""
        return self.context.asset_path(request.image) if request.image else None


@hookimpl
def register_providers(register: Callable[[type[Provider[Any]]], None]) -> None:
    register(PreviewProvider)
