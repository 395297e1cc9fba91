"""The ``reelpress`` command line.

Exit codes: 0 everything went well; 1 some jobs failed (or wait for an operator); 2 bad input
(configuration, templates, plugins, arguments). User errors print one clear message; ``--debug``
adds the traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import __version__
from ..config import DEFAULT_FILE
from ..errors import ReelpressError
from ..plugins import PluginHost
from .app import App

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
HOST_KEY = "reelpress.plugin_host"
T = TypeVar("T")


class PluginGroup(click.Group):
    """Adds plugin commands lazily: only when the command list is needed (help, or a name that
    is not built in), so ``reelpress run`` never pays for importing other plugins' commands."""

    _plugins_added = False

    def _add_plugin_commands(self, ctx: click.Context) -> None:
        if self._plugins_added:
            return
        self._plugins_added = True
        # Command names are resolved before the group's own callback runs, so the plugins may
        # not be loaded yet: load them here and hand them on to the App (see `cli`).
        host = ctx.meta.get(HOST_KEY)
        if host is None:
            host = ctx.meta[HOST_KEY] = PluginHost.load()
        for plugin, fn in host.impls("register_commands"):
            try:
                fn(cli=self)
            except Exception as exc:
                click.echo(f"warning: plugin {plugin!r} failed to add commands: {exc}", err=True)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._add_plugin_commands(ctx)
            command = super().get_command(ctx, cmd_name)
        return command


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    type=click.Path(path_type=Path),
    envvar="REELPRESS_CONFIG",
    default=Path(DEFAULT_FILE),
    show_default=True,
    help="The pipeline file (or set REELPRESS_CONFIG).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final summary.")
@click.version_option(__version__, prog_name="reelpress")
@click.pass_context
def cli(ctx: click.Context, config: Path, debug: bool, quiet: bool) -> None:
    """Turn content into published AI video.

    Sources give briefs, templates turn each brief into a prompt per platform, a provider renders
    the video, sinks publish it, and a ledger remembers everything, so nothing is paid for or
    posted twice.
    """
    _setup_logging(debug, quiet)
    ctx.obj = App(config_path=config, debug=debug, quiet=quiet, _host=ctx.meta.get(HOST_KEY))


def run_async(app: App, work: Callable[[], Awaitable[T]]) -> T:
    """Run a command's async body. Ctrl-C or SIGTERM (a container stopping) cancel it cleanly:
    the runner releases its jobs and sinks finish their files before the process ends."""
    try:
        return asyncio.run(_guard(work))
    except (KeyboardInterrupt, asyncio.CancelledError):
        app.err.print("[yellow]stopped[/]: the ledger keeps every finished step; run again "
                      "to resume")  # fmt: skip
        raise SystemExit(130) from None


async def _guard(work: Callable[[], Awaitable[T]]) -> T:
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await work()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("REELPRESS_DEBUG"))
    try:
        cli.main(args=args, prog_name="reelpress", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_FAILED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ReelpressError as exc:  # bad input: config, templates, plugins, job ids, the ledger
        _report(exc, "error", debug)
        sys.exit(EXIT_BAD_INPUT)
    except SystemExit:
        raise
    except Exception as exc:  # a bug: say so plainly, with the traceback under --debug
        _report(exc, "internal error", debug)
        sys.exit(EXIT_FAILED)


def _report(exc: BaseException, label: str, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(exc)
    message = str(exc) or type(exc).__name__
    if label == "internal error":
        message = f"{type(exc).__name__}: {message} (run with --debug for the traceback)"
    click.echo(f"{label}: {message}", err=True)


def _setup_logging(debug: bool, quiet: bool) -> None:
    from rich.logging import RichHandler

    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING
    handler = RichHandler(show_time=False, show_path=debug, markup=False,
                          rich_tracebacks=debug, console=_stderr_console())  # fmt: skip
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    for noisy in ("httpx", "httpcore", "aiosqlite", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


from . import jobs, misc, run  # noqa: E402  (commands register on `cli`)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "cli", "jobs", "main", "misc", "run"]
