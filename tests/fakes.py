"""A scriptable source, provider and sink for engine tests, registered like any plugin.

The provider renders a real (tiny) MP4 so every step downstream, probing, storing, publishing, runs
for real. Tests steer it through ``SCRIPT`` and read back what it was asked to do.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import av

from reelpress import (
    Brief,
    Done,
    Failed,
    Filtered,
    Job,
    Operation,
    PluginConfig,
    PollResult,
    Provider,
    ProviderError,
    Receipt,
    RenderRequest,
    Running,
    Sink,
    SinkError,
    Source,
    Video,
    hookimpl,
)
from reelpress.plugin_api import SourceItem


@dataclass
class Script:
    briefs: list[SourceItem] = field(default_factory=list)
    submits: list[str] = field(default_factory=list)
    """Request keys, one per provider submission."""
    polls: int = 0
    published: list[tuple[str, str]] = field(default_factory=list)
    """(sink name, job id) per publish call."""
    submit_errors: list[ProviderError] = field(default_factory=list)
    """Raised by the next submissions, in order."""
    outcomes: list[Callable[[], PollResult]] = field(default_factory=list)
    """Returned by polls (one per poll), before the default Done."""
    sink_errors: list[SinkError] = field(default_factory=list)
    on_submit: Callable[[RenderRequest], None] | None = None
    remote: dict[str, Receipt] = field(default_factory=dict)
    """What the sink's destination holds, by job id (``find`` looks here)."""


SCRIPT = Script()


def reset() -> Script:
    global SCRIPT
    SCRIPT = Script()
    return SCRIPT


class FakeSource(Source[PluginConfig]):
    name = "fake_source"

    async def briefs(self, cursor: str | None) -> AsyncIterator[SourceItem]:
        for item in list(SCRIPT.briefs):
            yield item


class FakeProviderConfig(PluginConfig):
    model: str = "fake-1"
    usd_per_second: float = 0.0


class FakeProvider(Provider[FakeProviderConfig]):
    name = "fake"
    Config = FakeProviderConfig
    default_model = "fake-1"
    first_poll_s: ClassVar[float] = 0.0
    poll_interval_s: ClassVar[float] = 0.0

    def price(self, request: RenderRequest) -> float:
        return self.config.usd_per_second * request.duration_s

    async def submit(self, request: RenderRequest) -> Operation:
        SCRIPT.submits.append(request.key)
        if SCRIPT.on_submit is not None:
            SCRIPT.on_submit(request)
        if SCRIPT.submit_errors:
            raise SCRIPT.submit_errors.pop(0)
        return Operation(id=f"op-{len(SCRIPT.submits)}", data={"key": request.key})

    async def poll(self, operation: Operation) -> PollResult:
        SCRIPT.polls += 1
        if SCRIPT.outcomes:
            return SCRIPT.outcomes.pop(0)()
        return Done({"key": operation.data["key"]})

    async def download(self, done: Done, dest: Path) -> None:
        tiny_mp4(dest, seed=done.result["key"])


class MemorySinkConfig(PluginConfig):
    searchable: bool = False


class MemorySink(Sink[MemorySinkConfig]):
    name = "memory"
    Config = MemorySinkConfig

    async def find(self, job: Job) -> Receipt | None:
        return SCRIPT.remote.get(job.id) if self.config.searchable else None

    async def publish(self, job: Job, video: Video) -> Receipt:
        if SCRIPT.sink_errors:
            raise SCRIPT.sink_errors.pop(0)
        assert video.path.exists()
        SCRIPT.published.append((self.context.instance, job.id))
        receipt = Receipt(sink=self.context.instance, remote_id=f"{job.id}@{self.context.instance}")
        SCRIPT.remote[job.id] = receipt
        return receipt


@hookimpl
def register_sources(register: Callable[[type[Source[Any]]], None]) -> None:
    register(FakeSource)


@hookimpl
def register_providers(register: Callable[[type[Provider[Any]]], None]) -> None:
    register(FakeProvider)


@hookimpl
def register_sinks(register: Callable[[type[Sink[Any]]], None]) -> None:
    register(MemorySink)


def running() -> PollResult:
    return Running(progress=0.5)


def filtered() -> PollResult:
    return Filtered(("people",))


def failed(retryable: bool) -> Callable[[], PollResult]:
    return lambda: Failed(ProviderError("backend hiccup", retryable=retryable, retry_after=0))


def brief(n: int, **extra: Any) -> Brief:
    return Brief(id=f"fake:{n}", title=f"Story {n}", summary=f"Summary of story {n}.", **extra)


_TINY: dict[str, bytes] = {}


def tiny_mp4(dest: Path, *, seed: str = "") -> None:
    """A real, tiny, playable H.264 file (cached: encoding is the slow part)."""
    cache = _TINY.get("base")
    if cache is None:
        tmp = dest.with_suffix(".tmp.mp4")
        with av.open(str(tmp), "w") as out:
            stream = out.add_stream("libx264", rate=12)
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            stream.time_base = Fraction(1, 12)
            for i in range(12):
                frame = av.VideoFrame(64, 64, "yuv420p")
                for plane in frame.planes:
                    plane.update(bytes([(i * 20) % 256]) * plane.buffer_size)
                frame.pts = i
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        cache = _TINY["base"] = tmp.read_bytes()
        tmp.unlink()
    # a trailing free box makes each request's file distinct (content-addressed store)
    marker = seed.encode()[:64]
    box = (8 + len(marker)).to_bytes(4, "big") + b"free" + marker
    dest.write_bytes(cache + box)


def copy_tiny(src: Path, dest: Path) -> None:
    shutil.copyfile(src, dest)
