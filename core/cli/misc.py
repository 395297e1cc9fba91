"""``reelpress init``, ``plugins`` and ``templates``."""

from __future__ import annotations

import json
import sys
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ..errors import PluginError, ReelpressError
from ..models import Brief
from ..plugin_api import Skipped
from . import EXIT_BAD_INPUT, EXIT_OK, cli, run_async
from .app import App

if TYPE_CHECKING:
    from ..pipeline import Pipeline


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path())
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@click.pass_obj
def init(app: App, folder: Path, force: bool) -> None:
    """Start a project: a pipeline, sample content and a templates folder to edit.

    The result runs as it is (`reelpress run` in FOLDER), offline, with the preview provider.
    """
    scaffold = files("reelpress.scaffold")
    planned = list(_walk(scaffold, Path()))
    clashes = [rel for rel, _ in planned if (folder / rel).exists()]
    if clashes and not force:
        shown = ", ".join(str(p) for p in clashes[:5])
        raise ReelpressError(f"{folder} already has {shown}; use --force to overwrite them")
    for rel, source in planned:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    app.out.print(f"Created a reelpress project in [bold]{folder}[/] ({len(planned)} files).")
    where = "" if folder == Path() else f"cd {folder} && "
    app.out.print(f"Next: [bold]{where}reelpress plan[/] to see the jobs and their cost, then "
                  "[bold]reelpress run[/].")  # fmt: skip


def _walk(node: Traversable, rel: Path) -> list[tuple[Path, Traversable]]:
    found: list[tuple[Path, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name in ("__init__.py", "__pycache__"):
            continue
        if child.is_dir():
            found += _walk(child, rel / child.name)
        else:
            found.append((rel / child.name, child))
    return found


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(app: App, as_json: bool) -> None:
    """Installed plugins, their versions, and what each one registers."""
    host = app.host()
    infos = sorted(host.plugins.values(), key=lambda p: (p.distribution != "reelpress", p.name))
    if as_json:
        click.echo(json.dumps([{
            "name": p.name, "module": p.module, "distribution": p.distribution,
            "version": p.version, "hooks": p.hooks, "registers": p.registers,
            "error": p.error, "problems": p.problems} for p in infos], indent=2))  # fmt: skip
        sys.exit(EXIT_OK)
    table = Table(title="Plugins", title_justify="left")
    for column in ("plugin", "package", "registers", "hooks", "status"):
        table.add_column(column, overflow="fold")
    for p in infos:
        registers = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in p.registers.items())
        status = (f"[red]skipped: {p.error}[/]" if p.error
                  else "[yellow]" + "; ".join(p.problems) + "[/]" if p.problems
                  else "[green]ok[/]")  # fmt: skip
        package = f"{p.distribution or p.module} {p.version or ''}".strip()
        table.add_row(p.name, package, registers or "–", ", ".join(p.hooks), status)
    app.out.print(table)
    app.out.print("[dim]Choose plugins with REELPRESS_LOAD_PLUGINS=a,b (empty: none); block some "
                  "with REELPRESS_BLOCK_PLUGINS=a,b.[/]")  # fmt: skip


@cli.group()
def templates() -> None:
    """See the prompt templates and try them on a brief."""


@templates.command("list")
@click.pass_obj
def list_templates(app: App) -> None:
    """Every template on the pipeline's search path, and which file wins."""
    pipeline = app.build()
    table = Table(title="Templates (first folder wins)", title_justify="left")
    table.add_column("template")
    table.add_column("from")
    for name in pipeline.templates.list():
        origin = pipeline.templates.origin(name)
        table.add_row(name, str(origin) if origin else "?")
    app.out.print(table)


@templates.command("render")
@click.option("-p", "--platform", "platform_name", required=True, help="Platform name.")
@click.option(
    "-b",
    "--brief",
    "brief_id",
    default=None,
    help="Brief id (default: the first brief the sources give).",
)
@click.option(
    "--brief-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A YAML or JSON file holding one brief, instead of the sources.",
)
@click.pass_obj  # fmt: skip
def render(app: App, platform_name: str, brief_id: str | None, brief_file: Path | None) -> None:
    """Render a platform's template for one brief and show every block."""
    pipeline = app.build()
    platform = pipeline.platforms.get(platform_name)
    if platform is None:
        raise click.BadParameter(
            f"{platform_name!r} is not in this pipeline; its platforms: "
            + ", ".join(pipeline.platforms),
            param_hint="--platform",
        )

    async def body() -> int:
        brief = _brief_from_file(brief_file) if brief_file else await _find_brief(
            pipeline, brief_id)  # fmt: skip
        if brief is None:
            app.err.print(f"no brief {brief_id!r} in this pipeline's sources"
                          if brief_id else "the sources gave no brief")  # fmt: skip
            return EXIT_BAD_INPUT
        texts = pipeline.templates.render(brief, platform)
        request = pipeline.provider.build_request(texts=texts, platform=platform, brief=brief,
                                                  image=None)  # fmt: skip
        from ..prompts import BLOCKS, platform_vars

        app.out.print(f"[bold]{platform.template}[/] for brief [bold]{brief.id}[/] "
                      f"({platform.aspect_ratio}, {platform.resolution}, "
                      f"{platform.duration_s:g} s)", highlight=False)  # fmt: skip
        values = texts.__dict__ | {"hashtags": " ".join(texts.hashtags)}
        for block in BLOCKS:
            app.out.rule(block, align="left")
            app.out.print(values[block] or "[dim](empty)[/]", highlight=False)
        app.out.rule()
        app.out.print(f"[dim]request key {request.key[:16]}…; platform variables: "
                      f"{', '.join(platform_vars(platform))}[/]")  # fmt: skip
        await pipeline.close()
        return EXIT_OK

    sys.exit(run_async(app, body))


def _brief_from_file(path: Path) -> Brief:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Brief.model_validate(data)
    except Exception as exc:
        raise PluginError(f"{path}: not a valid brief: {exc}") from None


async def _find_brief(pipeline: Pipeline, brief_id: str | None) -> Brief | None:
    for _, source in pipeline.sources:
        async for item in source.briefs(None):
            if isinstance(item, Brief) and (brief_id is None or item.id == brief_id):
                return item
            if isinstance(item, Skipped):
                continue
    return None
