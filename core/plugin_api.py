"""The classes a plugin subclasses: Source, Provider and Sink, and what they exchange with the
engine.

Each is small: a ``name``, a pydantic ``Config`` (validated from the pipeline's YAML before anything
runs, unknown keys rejected) and a few async methods. The engine constructs them with
``cls(config, context)``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from .errors import ProviderError
from .models import Brief, Job, Platform, Receipt, RenderRequest, Texts, Video


class PluginConfig(BaseModel):
    """Base of every plugin's ``Config``: unknown keys are errors, values are immutable, and a
    docstring under a field becomes its description (shown in docs and ``--json`` output)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


@dataclass(frozen=True)
class PluginContext:
    """What the engine tells a plugin instance about where it runs."""

    pipeline: str
    instance: str
    """This instance's name in the pipeline (``name:``, defaulting to the plugin's name)."""
    base_dir: Path
    """Folder of the pipeline file: relative paths in the config resolve against it."""
    state_dir: Path
    """A private folder for this plugin's working files (created on first use)."""
    store_dir: Path
    """The content-addressed store; use :meth:`asset_path` to read an input by its hash."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("reelpress"))

    def resolve(self, path: str | Path) -> Path:
        """Resolve a config path against the pipeline's folder (``~`` expanded)."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def asset_path(self, sha256: str) -> Path:
        """Where the store keeps the input (e.g. a reference image) with this hash."""
        from .store import asset_path

        return asset_path(self.store_dir, sha256)


C = TypeVar("C", bound=PluginConfig)


class Plugin(Generic[C]):
    """Common shape of sources, providers and sinks."""

    name: ClassVar[str]
    """The name a pipeline uses in ``use:``."""
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    """Options this plugin accepts in its pipeline section."""

    def __init__(self, config: C, context: PluginContext) -> None:
        self.config = config
        self.context = context

    async def close(self) -> None:
        """Release resources at the end of a run (connections, temp files, a gallery to write)."""


# --- sources ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A record a source could not turn into a brief: reported with its location, never fatal."""

    location: str
    reason: str


@dataclass(frozen=True)
class Bookmark:
    """A position the source can resume from; saved once every brief before it is in the ledger."""

    cursor: str


SourceItem = Brief | Skipped | Bookmark


class Source(Plugin[C]):
    """Yields briefs, streaming (never loading everything), resumable from a saved cursor."""

    def briefs(self, cursor: str | None) -> AsyncIterator[SourceItem]:
        """Yield :class:`Brief` objects; :class:`Skipped` for bad records; :class:`Bookmark` to
        save progress. ``cursor`` is the last bookmark saved for this source, or None."""
        raise NotImplementedError


# --- providers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """A render the provider accepted. ``data`` is kept in the ledger as JSON, so a restarted
    engine can poll it again: put everything polling needs in it."""

    id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Running:
    """Not finished. ``poll_after`` (seconds) is when to ask again; None lets the engine choose."""

    progress: float | None = None
    poll_after: float | None = None


@dataclass(frozen=True)
class Done:
    """Finished with a video to download. ``cost_usd`` is the actual charge where the provider
    reports it (otherwise the engine records :meth:`Provider.price`)."""

    result: dict[str, Any]
    cost_usd: float | None = None


@dataclass(frozen=True)
class Filtered:
    """Finished without a video because a safety filter removed it. Not charged, not retried."""

    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failed:
    """Finished with an error. ``error.retryable`` says whether a new submission may help."""

    error: ProviderError


PollResult = Running | Done | Filtered | Failed


class Provider(Plugin[C]):
    """Renders a video: ``submit`` → ``poll`` (until done) → ``download``.

    The engine commits ``submitting`` before :meth:`submit` and the operation id right after, so a
    crash in between never leads to paying twice: such a job waits for the operator unless the
    provider says a repeated submission costs nothing (``resubmit_safe``).
    """

    default_model: ClassVar[str] = ""
    resubmit_safe: ClassVar[bool] = False
    """True only if submitting the same request twice costs nothing and harms nothing."""
    default_concurrency: ClassVar[int] = 4
    """Renders in flight at once when the pipeline sets no ``limits.concurrency``."""
    first_poll_s: ClassVar[float] = 5.0
    """Seconds from submission to the first poll."""
    poll_interval_s: ClassVar[float] = 10.0
    """Seconds between polls when :class:`Running` gives no ``poll_after``."""

    @property
    def model(self) -> str:
        return str(getattr(self.config, "model", "") or self.default_model)

    def build_request(
        self, *, texts: Texts, platform: Platform, brief: Brief, image: str | None
    ) -> RenderRequest:
        """Turn rendered texts into this provider's request (normalising what it must).

        ``image`` is the store hash of the brief's reference image, if any. Everything that
        changes the output must be in the request: it is the cache key. Most providers only
        need :meth:`request_options`; override this to normalise more (durations, prompts).
        """
        return RenderRequest(
            provider=self.name,
            model=self.model,
            prompt=texts.prompt,
            negative_prompt=texts.negative_prompt,
            aspect_ratio=platform.aspect_ratio,
            resolution=platform.resolution,
            duration_s=platform.duration_s,
            image=image,
            options=self.request_options(texts=texts, platform=platform, brief=brief),
        )

    def request_options(self, *, texts: Texts, platform: Platform, brief: Brief) -> dict[str, Any]:
        """Provider-specific parameters for :attr:`RenderRequest.options` (part of the key)."""
        return {}

    def validate(self, request: RenderRequest) -> None:
        """Raise :class:`reelpress.InvalidRequest` for a request this provider would reject.

        Called at plan time, before anything is spent.
        """

    def price(self, request: RenderRequest) -> float:
        """Estimated cost of rendering ``request``, in USD."""
        return 0.0

    async def submit(self, request: RenderRequest) -> Operation:
        """Start rendering. Raise :class:`reelpress.ProviderError` on failure, with
        ``outcome_unknown=True`` if the request may have reached the provider."""
        raise NotImplementedError

    async def poll(self, operation: Operation) -> PollResult:
        """Ask how a submitted render is going. Must be safe to call any number of times."""
        raise NotImplementedError

    async def download(self, done: Done, dest: Path) -> None:
        """Write the finished video to ``dest`` (the engine verifies and stores it)."""
        raise NotImplementedError


# --- sinks ------------------------------------------------------------------------------------


class Sink(Plugin[C]):
    """Publishes a finished video somewhere. Must be idempotent per (job, sink)."""

    async def find(self, job: Job) -> Receipt | None:
        """Look for an earlier upload of this job at the destination, so a crash between a
        remote success and the ledger write never publishes twice. None if not found (or if the
        destination cannot be searched)."""
        return None

    def summary(self) -> str | None:
        """One line for the end of a run (where to look at the results), or None."""
        return None

    async def publish(self, job: Job, video: Video) -> Receipt:
        """Publish ``video`` for ``job`` and say where it went. Raise :class:`reelpress.SinkError`
        on failure (``retryable=True`` when trying again later may work)."""
        raise NotImplementedError
