"""Every hook a reelpress plugin can implement.

One rule for all hooks: hooks are synchronous and cheap. They register things (classes, presets,
folders, filters, commands) or observe the engine. Anything slow or asynchronous happens inside the
source, provider and sink objects a plugin registers, never in a hook.

A plugin is a module (or object) with functions decorated by :data:`reelpress.hookimpl`, exposed
through the ``reelpress`` entry-point group::

    [project.entry-points.reelpress]
    my_sink = "my_package.my_sink"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .events import JobEvent, PipelineInfo
    from .models import Brief, Platform
    from .plugin_api import Provider, Sink, Source

hookspec = pluggy.HookspecMarker("reelpress")
hookimpl = pluggy.HookimplMarker("reelpress")


@hookspec
def register_sources(register: Callable[[type[Source]], None]) -> None:
    """Add source classes (things that yield briefs).

    Called once when plugins load. ``register`` takes one :class:`reelpress.Source` subclass per
    call; ``cls.name`` is what a pipeline names in ``sources: [{use: <name>}]``. Returns nothing.

    Example::

        @hookimpl
        def register_sources(register):
            register(RssSource)
    """


@hookspec
def register_providers(register: Callable[[type[Provider]], None]) -> None:
    """Add provider classes (things that render a video from a request).

    Called once when plugins load. ``register`` takes one :class:`reelpress.Provider` subclass
    per call; its ``name`` is what ``provider: {use: <name>}`` selects. Returns nothing.
    """


@hookspec
def register_sinks(register: Callable[[type[Sink]], None]) -> None:
    """Add sink classes (things that publish a finished video).

    Called once when plugins load. ``register`` takes one :class:`reelpress.Sink` subclass per
    call; its ``name`` is what ``sinks: [{use: <name>}]`` selects. Returns nothing.
    """


@hookspec
def register_platforms(register: Callable[[Platform], None]) -> None:
    """Add platform presets (named output formats such as ``tiktok``).

    Called once when plugins load. Call ``register(Platform(...))`` per preset. A pipeline picks
    presets by name in ``platforms:`` and may override any field. A platform named here needs a
    template ``platforms/<name>.j2`` (or its own ``template``) on the template path.
    """


@hookspec
def register_template_paths() -> list[str | Path] | None:
    """Return folders of Jinja templates this plugin ships.

    Called once per pipeline. Lookup order: the pipeline's own ``templates`` folder, then plugin
    folders (in plugin order), then reelpress's built-in templates. A plugin may thus add platform
    templates (``platforms/<name>.j2``) and category styles (``categories/<name>.j2``).
    """


@hookspec
def register_template_filters() -> Mapping[str, Callable[..., Any]] | None:
    """Return extra Jinja filters as ``{name: function}``.

    Called once per pipeline. Filters run inside the sandbox on brief data; they must be pure
    functions of their arguments. Later plugins cannot replace a built-in filter's name.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``reelpress`` command line.

    Called when the CLI needs its command list (``--help``, or an unknown command name). Use
    ``@cli.command()`` or ``cli.add_command(...)``; keep heavy imports inside the command.
    """


@hookspec
def prepare_brief(brief: Brief, pipeline: PipelineInfo) -> Brief | None:
    """Change a brief before it is planned, or leave it out.

    Called for every brief a source yields, in plugin order, each implementation receiving the
    brief as the previous one returned it. ``brief`` is the :class:`reelpress.Brief`;
    ``pipeline`` is a read-only :class:`reelpress.PipelineInfo` (name, platforms, provider,
    model, sinks). Return a changed brief (``brief.model_copy(update=...)``) or ``None`` to leave
    it as it is; raise :class:`reelpress.SkipBrief` to leave it out of the plan (the reason is
    shown to the user). Other exceptions count as a failed brief, reported with the plugin's name.
    """


@hookspec
def job_event(event: JobEvent) -> None:
    """Observe a job as it moves (planned, submitted, generated, published, failed...).

    Called after the change is committed to the ledger. ``event`` is a :class:`reelpress.JobEvent`
    (kind, job id, pipeline, brief id, platform, state, time, cost, message, details). For
    notifiers, metrics and audit logs. Returns nothing; must return quickly; an exception is
    logged with the plugin's name and never breaks a job.
    """
