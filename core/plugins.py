"""Finding, loading and isolating plugins.

Every plugin, built-in or not, arrives through the ``reelpress`` entry-point group. Each one is
imported and registered on its own: one that fails to import, registers something malformed, or
names a hook that does not exist is reported by name and skipped, and the rest keep working.

``REELPRESS_LOAD_PLUGINS=a,b`` loads only those entry points (empty: none);
``REELPRESS_BLOCK_PLUGINS=a,b`` loads all but those.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, Generic, TypeVar

import pluggy
from pydantic import BaseModel

from . import hookspecs
from .errors import PluginError
from .models import Platform
from .plugin_api import Provider, Sink, Source

log = logging.getLogger("reelpress.plugins")

ENTRY_POINT_GROUP = "reelpress"
LOAD_ENV = "REELPRESS_LOAD_PLUGINS"
BLOCK_ENV = "REELPRESS_BLOCK_PLUGINS"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")

T = TypeVar("T")


@dataclass
class PluginInfo:
    """What ``reelpress plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    registers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    """Why the plugin (or part of it) was skipped; None when it loaded cleanly."""
    problems: list[str] = field(default_factory=list)
    """Things it tried to register that were refused (the rest of the plugin still works)."""

    @property
    def loaded(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Registered(Generic[T]):
    """A registered class or preset and the plugin it came from."""

    value: T
    plugin: str


class PluginHost:
    """The loaded plugins and everything they registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("reelpress")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.sources: dict[str, Registered[type[Source[Any]]]] = {}
        self.providers: dict[str, Registered[type[Provider[Any]]]] = {}
        self.sinks: dict[str, Registered[type[Sink[Any]]]] = {}
        self.platforms: dict[str, Registered[Platform]] = {}

    # --- loading ------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        *,
        only: Iterable[str] | None = None,
        block: Iterable[str] = (),
        extra: Iterable[tuple[str, object]] = (),
        use_entry_points: bool = True,
    ) -> PluginHost:
        """Load plugins from entry points (filtered by ``only``/``block`` or the environment),
        then any ``extra`` (name, module-or-object) pairs, e.g. a test's own plugin."""
        host = cls()
        if only is None:
            env = os.environ.get(LOAD_ENV)
            only = None if env is None else _split(env)
        blocked = set(block) | set(_split(os.environ.get(BLOCK_ENV, "")))
        if use_entry_points:
            for ep in _entry_points():
                if (only is not None and ep.name not in only) or ep.name in blocked:
                    continue
                host._load_entry_point(ep)
        for name, obj in extra:
            if name not in blocked:
                host.add(name, obj)
        return host

    def _load_entry_point(self, ep: EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            name=ep.name,
            module=ep.value,
            distribution=dist.name if dist else None,
            version=dist.version if dist else None,
        )
        if ep.name in self.plugins:
            info.error = (
                f"entry point name {ep.name!r} is already used by "
                f"{self.plugins[ep.name].distribution or self.plugins[ep.name].module}"
            )
            self.plugins[f"{ep.name} ({info.distribution})"] = info
            log.warning("plugin %s skipped: %s", ep.name, info.error)
            return
        try:
            obj = ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not stop the tool
            info.error = f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
            self.plugins[ep.name] = info
            log.warning("plugin %s skipped: %s", ep.name, info.error)
            return
        self._register(info, obj)

    def add(self, name: str, obj: object, *, version: str | None = None) -> PluginInfo:
        """Register a plugin object directly (for tests and embedding)."""
        if isinstance(obj, str):
            obj = importlib.import_module(obj)
        module = obj.__name__ if isinstance(obj, ModuleType) else type(obj).__qualname__
        info = PluginInfo(name=name, module=module, version=version)
        if name in self.plugins:
            raise PluginError(f"a plugin named {name!r} is already loaded")
        self._register(info, obj)
        return info

    def _register(self, info: PluginInfo, obj: object) -> None:
        self.plugins[info.name] = info
        unknown = [n for n in _hookimpl_names(self.pm, obj) if not hasattr(self.pm.hook, n)]
        if unknown:
            info.error = "implements unknown hook(s): " + ", ".join(sorted(unknown))
            log.warning("plugin %s skipped: %s", info.name, info.error)
            return
        try:
            self.pm.register(obj, name=info.name)
        except Exception as exc:  # pluggy validates hook argument names here
            info.error = f"failed to register: {exc}"
            log.warning("plugin %s skipped: %s", info.name, info.error)
            return
        info.hooks = sorted(_hookimpl_names(self.pm, obj))
        try:
            self._collect(info)
        except Exception as exc:
            info.error = f"a registration hook raised {type(exc).__name__}: {exc}"
            log.warning("plugin %s skipped: %s", info.name, info.error)
            self._forget(info.name)
            self.pm.unregister(name=info.name)

    def _collect(self, info: PluginInfo) -> None:
        """Call this plugin's registration hooks, recording what it adds."""
        staged: list[tuple[dict[str, Registered[Any]], str, str, Any]] = []

        def registrar(
            kind: str, table: dict[str, Registered[Any]], check: Callable[[Any], str]
        ) -> Callable[[Any], None]:
            def register(value: Any) -> None:
                try:
                    key = check(value)
                except PluginError as exc:
                    info.problems.append(f"{kind}: {exc}")
                    return
                if key in table or any(s[0] is table and s[2] == key for s in staged):
                    owner = table[key].plugin if key in table else info.name
                    info.problems.append(
                        f"{kind} {key!r} is already registered by plugin {owner!r}; skipped"
                    )
                    return
                staged.append((table, kind, key, value))

            return register

        hooks: list[tuple[str, Callable[[Any], None]]] = [
            ("register_sources", registrar("source", self.sources, _check_class(Source))),
            ("register_providers", registrar("provider", self.providers, _check_class(Provider))),
            ("register_sinks", registrar("sink", self.sinks, _check_class(Sink))),
            ("register_platforms", registrar("platform", self.platforms, _check_platform)),
        ]
        for hook_name, register in hooks:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name == info.name:
                    impl.function(register=register)
        for table, kind, key, value in staged:
            table[key] = Registered(value, info.name)
            info.registers.setdefault(kind, []).append(key)
        for problem in info.problems:
            log.warning("plugin %s: %s", info.name, problem)

    def _forget(self, plugin: str) -> None:
        for table in (self.sources, self.providers, self.sinks, self.platforms):
            for key in [k for k, v in table.items() if v.plugin == plugin]:
                del table[key]

    # --- calling hooks with isolation ---------------------------------------------------------

    def impls(self, hook_name: str) -> Iterator[tuple[str, Callable[..., Any]]]:
        """(plugin name, function) for each implementation of a hook, in call order."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            yield impl.plugin_name, impl.function

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation, attributing results to plugins. Exceptions propagate as
        :class:`PluginError` naming the plugin."""
        results = []
        for plugin, fn in self.impls(hook_name):
            try:
                results.append((plugin, fn(**kwargs)))
            except Exception as exc:
                raise PluginError(
                    f"plugin {plugin!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc
        return results

    # --- lookups ------------------------------------------------------------------------------

    def source(self, name: str) -> type[Source[Any]]:
        return _lookup("source", self.sources, name)

    def provider(self, name: str) -> type[Provider[Any]]:
        return _lookup("provider", self.providers, name)

    def sink(self, name: str) -> type[Sink[Any]]:
        return _lookup("sink", self.sinks, name)

    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.error or p.problems]


def _lookup(kind: str, table: dict[str, Registered[T]], name: str) -> T:
    try:
        return table[name].value
    except KeyError:
        raise PluginError(unknown_name_message(kind, name, table)) from None


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    listing = ", ".join(names) if names else "none are installed"
    return f"unknown {kind} {name!r}; available: {listing}"


def _check_class(base: type) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not (isinstance(value, type) and issubclass(value, base)):
            raise PluginError(f"{value!r} is not a subclass of reelpress.{base.__name__}")
        name = getattr(value, "name", None)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise PluginError(
                f"{value.__qualname__}.name must be a lowercase identifier like 'my_sink', "
                f"got {name!r}"
            )
        config = getattr(value, "Config", None)
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            raise PluginError(f"{value.__qualname__}.Config must be a pydantic model")
        return name

    return check


def _check_platform(value: Any) -> str:
    if not isinstance(value, Platform):
        raise PluginError(f"{value!r} is not a reelpress.Platform")
    return value.name


def _hookimpl_names(pm: pluggy.PluginManager, obj: object) -> list[str]:
    names = []
    for attr in dir(obj):
        if attr.startswith("_"):
            continue
        try:
            opts = pm.parse_hookimpl_opts(obj, attr)
        except Exception:
            opts = None
        if opts is not None:
            names.append(attr)
    return names


def _entry_points() -> list[EntryPoint]:
    """Entry points of the group, reelpress's own first, then by name: a stable load order."""
    eps = list(entry_points(group=ENTRY_POINT_GROUP))

    def order(ep: EntryPoint) -> tuple[int, str]:
        dist = getattr(ep, "dist", None)
        return (0 if dist is not None and dist.name == "reelpress" else 1, ep.name)

    return sorted(eps, key=order)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
