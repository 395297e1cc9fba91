"""What every command shares: the pipeline file, lazily loaded plugins and consoles."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from ..config import PipelineSpec, load_pipeline
from ..ledger import Ledger
from ..pipeline import Pipeline
from ..plugins import PluginHost

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
            self._spec = load_pipeline(self.config_path, self.host())
        return self._spec

    @asynccontextmanager
    async def ledger(self) -> AsyncIterator[Ledger]:
        ledger = await Ledger.open(self.spec().ledger_url)
        try:
            yield ledger
        finally:
            await ledger.close()

    @asynccontextmanager
    async def pipeline(self) -> AsyncIterator[tuple[Pipeline, Ledger]]:
        """The built pipeline and its ledger; plugins are closed (galleries written) on exit."""
        pipeline = Pipeline.build(self.spec(), self.host())
        try:
            async with self.ledger() as ledger:
                yield pipeline, ledger
        finally:
            await pipeline.close()
