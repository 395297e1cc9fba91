"""What observers see: job events, and a read-only view of the pipeline for hooks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .models import JobState

if TYPE_CHECKING:
    from .plugins import PluginHost

log = logging.getLogger("reelpress.events")


@dataclass(frozen=True)
class PipelineInfo:
    """The parts of a pipeline a hook may look at."""

    name: str
    platforms: tuple[str, ...]
    provider: str
    model: str
    sinks: tuple[str, ...]


@dataclass(frozen=True)
class JobEvent:
    """A job changed state (already committed to the ledger when observers see it)."""

    kind: str
    """``planned``, ``cached``, ``submitted``, ``generated``, ``published``, ``retrying``,
    ``failed``, ``filtered``, ``over_budget``, ``cancelled`` or ``needs_reconcile``."""
    job_id: str
    pipeline: str
    brief_id: str
    platform: str
    state: JobState
    at: datetime
    cost_usd: float | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def emit(host: PluginHost, event: JobEvent) -> None:
    """Give an event to every observer; one observer's failure never reaches the others."""
    for plugin, fn in host.impls("job_event"):
        try:
            fn(event=event)
        except Exception:
            log.exception(
                "plugin %s failed while observing %s of job %s", plugin, event.kind, event.job_id
            )
