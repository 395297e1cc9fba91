"""Shared fixtures: a pipeline on the scriptable fake plugins, in a temporary folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import fakes
import pytest

from reelpress.config import parse_pipeline
from reelpress.ledger import Ledger
from reelpress.pipeline import Pipeline
from reelpress.planner import Planner, PlanReport
from reelpress.plugins import PluginHost
from reelpress.runner import Runner, RunResult

FAKE_PIPELINE = """
name: t
sources: [{use: fake_source}]
platforms: [youtube, tiktok]
provider: {use: fake}
sinks: [{use: memory}]
"""


@pytest.fixture
def script() -> fakes.Script:
    return fakes.reset()


@pytest.fixture
def host() -> PluginHost:
    return PluginHost.load(only=["platforms"], extra=[("fakes", fakes)])


class Harness:
    """A pipeline, its ledger, and one-line plan/run helpers."""

    def __init__(self, folder: Path, host: PluginHost) -> None:
        self.folder = folder
        self.host = host
        self.ledger: Ledger | None = None
        self.pipeline: Pipeline | None = None

    async def open(self, yaml_text: str = FAKE_PIPELINE) -> Pipeline:
        file = self.folder / "pipeline.yaml"
        file.write_text(yaml_text)
        spec = parse_pipeline(yaml_text, self.host, file=file)
        self.pipeline = Pipeline.build(spec, self.host)
        if self.ledger is None:
            self.ledger = await Ledger.open(spec.ledger_url)
        return self.pipeline

    async def plan(self) -> PlanReport:
        assert self.pipeline and self.ledger
        return await Planner(self.pipeline, self.ledger).plan()

    async def run(self, **kwargs: Any) -> RunResult:
        assert self.pipeline and self.ledger
        return await Runner(self.pipeline, self.ledger, **kwargs).run()

    async def plan_and_run(self, **kwargs: Any) -> RunResult:
        await self.plan()
        return await self.run(**kwargs)

    async def close(self) -> None:
        if self.pipeline:
            await self.pipeline.close()
        if self.ledger:
            await self.ledger.close()


@pytest.fixture
async def harness(tmp_path: Path, host: PluginHost, script: fakes.Script) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, host)
    yield h
    await h.close()


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return _write
