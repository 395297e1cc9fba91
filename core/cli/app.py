"""What every command shares: the pipeline file, lazily loaded plugins and consoles."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from ..plugins import PluginHost

if TYPE_CHECKING:  # the engine's modules load when a command needs them: `--help` stays quick
    from ..config import PipelineSpec
    from ..ledger import Ledger
    from ..pipeline import Pipeline

log = logging.getLogger("reelpress.cli")


@dataclass
class App:
    config_path: Path
    debug: bool = False
    quiet: bool = False
    out: Console = field(default_factory=lambda: Console(soft_wrap=False))
    err: Console = field(default_factory=lambda: Console(stderr=True))
    _host: PluginHost | None = None
    _spec: PipelineSpec | None = None
    _warned: bool = False

    def host(self) -> PluginHost:
        """Plugins, loaded on first use; problems are reported once, never fatal."""
        if self._host is None:
            self._host = PluginHost.load()
        if not self._warned:
            self._warned = True
            for info in self._host.failed():
                for line in ([info.error] if info.error else []) + info.problems:
                    self.err.print(f"[yellow]warning[/]: plugin {info.name}: {line}",
                                   markup=True, highlight=False)  # fmt: skip
        return self._host

    def spec(self) -> PipelineSpec:
        if self._spec is None:
            from ..config import load_pipeline

            self._spec = load_pipeline(self.config_path, self.host())
        return self._spec

    def build(self) -> Pipeline:
        """The pipeline's plugins and templates, ready to plan (see :class:`Pipeline`)."""
        from ..pipeline import Pipeline

        return Pipeline.build(self.spec(), self.host())

    @asynccontextmanager
    async def ledger(self) -> AsyncIterator[Ledger]:
        from ..ledger import Ledger

        ledger = await Ledger.open(self.spec().ledger_url)
        try:
            yield ledger
        finally:
            await ledger.close()

    @asynccontextmanager
    async def pipeline(self) -> AsyncIterator[tuple[Pipeline, Ledger]]:
        """The built pipeline and its ledger; plugins are closed (galleries written) on exit."""
        pipeline = self.build()
        try:
            async with self.ledger() as ledger:
                yield pipeline, ledger
        finally:
            await pipeline.close()
