"""reelpress: turn content into published AI video.

This module is the public API for plugin authors and embedders; everything not listed in
``__all__`` is private and may change without notice.
"""

from __future__ import annotations

from .errors import (
    ConfigError,
    InvalidRequest,
    PluginError,
    ProviderError,
    ReelpressError,
    SinkError,
    SkipBrief,
    TemplateError,
)
from .events import JobEvent, PipelineInfo
from .hookspecs import hookimpl
from .models import Brief, Job, JobState, Platform, Receipt, RenderRequest, Texts, Video
from .plugin_api import (
    Bookmark,
    Done,
    Failed,
    Filtered,
    Operation,
    PluginConfig,
    PluginContext,
    PollResult,
    Provider,
    Running,
    Sink,
    Skipped,
    Source,
    SourceItem,
)

__version__ = "0.1.0"

__all__ = [
    "Bookmark",
    "Brief",
    "ConfigError",
    "Done",
    "Failed",
    "Filtered",
    "InvalidRequest",
    "Job",
    "JobEvent",
    "JobState",
    "Operation",
    "PipelineInfo",
    "Platform",
    "PluginConfig",
    "PluginContext",
    "PluginError",
    "PollResult",
    "Provider",
    "ProviderError",
    "Receipt",
    "ReelpressError",
    "RenderRequest",
    "Running",
    "Sink",
    "SinkError",
    "SkipBrief",
    "Skipped",
    "Source",
    "SourceItem",
    "TemplateError",
    "Texts",
    "Video",
    "__version__",
    "hookimpl",
]
