"""A pipeline ready to run: the validated config turned into live plugin objects and templates."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PipelineSpec, PluginSpec
from .errors import PluginError, ReelpressError
from .events import PipelineInfo
from .limits import RateWindow, parse_rate
from .models import Platform
from .plugin_api import Plugin, PluginContext, Provider, Sink, Source
from .plugins import PluginHost
from .prompts import PromptTemplates
from .store import Store


@dataclass
class Pipeline:
    spec: PipelineSpec
    host: PluginHost
    templates: PromptTemplates
    sources: list[tuple[PluginSpec, Source[Any]]]
    provider: Provider[Any]
    sinks: dict[str, Sink[Any]]
    platforms: dict[str, Platform]
    store: Store
    windows: list[RateWindow] = field(default_factory=list)
    concurrency: int = 1
    closed: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def info(self) -> PipelineInfo:
        return PipelineInfo(
            name=self.spec.name,
            platforms=tuple(self.platforms),
            provider=self.provider.name,
            model=self.provider.model,
            sinks=tuple(self.sinks),
        )

    @classmethod
    def build(cls, spec: PipelineSpec, host: PluginHost) -> Pipeline:
        """Instantiate every plugin and compile every template the pipeline needs.

        Raises :class:`ReelpressError` subclasses naming what failed; nothing runs before this
        succeeds.
        """
        templates = PromptTemplates(
            [p for p in [spec.templates_dir, *_plugin_template_dirs(host)] if p is not None],
            filters=_plugin_filters(host),
        )
        templates.check(spec.platforms)
        provider = _instantiate(spec.provider, spec)
        return cls(
            spec=spec,
            host=host,
            templates=templates,
            sources=[(s, _instantiate(s, spec)) for s in spec.sources],
            provider=provider,
            sinks={s.name: _instantiate(s, spec) for s in spec.sinks},
            platforms={p.name: p for p in spec.platforms},
            store=Store(spec.store_dir),
            windows=parse_rate(spec.limits.rate) if spec.limits.rate else [],
            concurrency=spec.limits.concurrency or provider.default_concurrency,
        )

    async def close(self) -> None:
        """Let every plugin finish (a sink writes its gallery here). One failing does not stop
        the others; the first error is raised at the end. Closing twice does nothing."""
        if self.closed:
            return
        self.closed = True
        first: Exception | None = None
        plugins: list[Plugin[Any]] = [s for _, s in self.sources]
        plugins += [self.provider, *self.sinks.values()]
        for plugin in plugins:
            try:
                await plugin.close()
            except Exception as exc:
                logging.getLogger("reelpress").error(
                    "%s %s failed to close: %s", type(plugin).__name__, plugin.name, exc
                )
                first = first or exc
        if first is not None:
            raise PluginError(f"a plugin failed while finishing: {first}") from first


def _instantiate(spec: PluginSpec, pipeline: PipelineSpec) -> Any:
    context = PluginContext(
        pipeline=pipeline.name,
        instance=spec.name,
        base_dir=pipeline.base_dir,
        state_dir=pipeline.state_dir / spec.kind / spec.name,
        store_dir=pipeline.store_dir,
        log=logging.getLogger(f"reelpress.{spec.kind}.{spec.name}"),
    )
    try:
        return spec.cls(spec.config, context)
    except ReelpressError:
        raise
    except Exception as exc:
        raise PluginError(
            f"{spec.path}: {spec.kind} {spec.name!r} (plugin {spec.use!r}) failed to start: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _plugin_template_dirs(host: PluginHost) -> list[Path]:
    folders: list[Path] = []
    for plugin, result in host.call_each("register_template_paths"):
        for entry in result or ():
            path = Path(entry)
            if not path.is_dir():
                raise PluginError(
                    f"plugin {plugin!r} registered a template folder that does not exist: {path}"
                )
            folders.append(path)
    return folders


def _plugin_filters(host: PluginHost) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for plugin, result in host.call_each("register_template_filters"):
        for name, fn in (result or {}).items():
            if name in filters:
                raise PluginError(
                    f"plugin {plugin!r} registers template filter {name!r}, which "
                    "another plugin registered already"
                )
            filters[name] = fn
    return filters
