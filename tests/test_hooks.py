"""One test per hook, as a plugin author uses it (and a check that no hook goes untested)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import fakes
import pytest
from conftest import FAKE_PIPELINE, Harness

from reelpress import Brief, JobEvent, Platform, SkipBrief, hookimpl, hookspecs
from reelpress.cli import main
from reelpress.plugins import PluginHost

ONE = FAKE_PIPELINE.replace("[youtube, tiktok]", "[youtube]")


def test_every_hook_has_a_test_here() -> None:
    here = Path(__file__).read_text()
    for name, fn in vars(hookspecs).items():
        if callable(fn) and hasattr(fn, "reelpress_spec"):
            assert f"def test_hook_{name}" in here, f"hook {name} has no test"


def test_hook_register_sources(host: PluginHost) -> None:
    assert host.sources["fake_source"].value is fakes.FakeSource
    assert host.sources["fake_source"].plugin == "fakes"


def test_hook_register_providers(host: PluginHost) -> None:
    assert host.providers["fake"].value is fakes.FakeProvider


def test_hook_register_sinks(host: PluginHost) -> None:
    assert host.sinks["memory"].value is fakes.MemorySink


async def test_hook_register_platforms(harness: Harness, script: fakes.Script, tmp_path: Path
                                       ) -> None:  # fmt: skip
    class Square:
        @hookimpl
        def register_platforms(self, register: Callable[[Platform], None]) -> None:
            register(Platform(name="square_feed", aspect_ratio="1:1", duration_s=6,
                              template="platforms/instagram_reels.j2"))  # fmt: skip

    harness.host.add("square", Square())
    script.briefs = [fakes.brief(1)]
    await harness.open(FAKE_PIPELINE.replace("[youtube, tiktok]", "[square_feed]"))
    report = await harness.plan()
    [(job, _)] = report.sample
    assert (job.platform, job.request.aspect_ratio, job.request.duration_s) == (
        "square_feed", "1:1", 6)  # fmt: skip


async def test_hook_register_template_paths(harness: Harness, script: fakes.Script,
                                            tmp_path: Path) -> None:  # fmt: skip
    folder = tmp_path / "plugin_templates"
    (folder / "platforms").mkdir(parents=True)
    (folder / "platforms" / "youtube.j2").write_text(
        '{% extends "base.j2" %}{% block prompt %}From the plugin: {{ brief.title }}{% endblock %}'
    )

    class Templates:
        @hookimpl
        def register_template_paths(self) -> list[Path]:
            return [folder]

    harness.host.add("templates", Templates())
    script.briefs = [fakes.brief(1)]
    await harness.open(ONE)
    assert (await harness.plan()).sample[0][0].texts.prompt == "From the plugin: Story 1"
    # the pipeline's own folder still wins over any plugin's
    (tmp_path / "templates" / "platforms").mkdir(parents=True)
    (tmp_path / "templates" / "platforms" / "youtube.j2").write_text(
        '{% extends "base.j2" %}{% block prompt %}Mine: {{ brief.title }}{% endblock %}'
    )
    await harness.open(ONE)
    assert (await harness.plan()).sample[0][0].texts.prompt == "Mine: Story 1"


async def test_hook_register_template_filters(harness: Harness, script: fakes.Script,
                                              tmp_path: Path) -> None:  # fmt: skip
    class Shout:
        @hookimpl
        def register_template_filters(self) -> dict[str, Callable[[str], str]]:
            return {"shout": lambda text: text.upper() + "!"}

    (tmp_path / "templates" / "platforms").mkdir(parents=True)
    (tmp_path / "templates" / "platforms" / "youtube.j2").write_text(
        '{% extends "base.j2" %}{% block prompt %}{{ brief.title|shout }}{% endblock %}'
    )
    harness.host.add("shout", Shout())
    script.briefs = [fakes.brief(1)]
    await harness.open(ONE)
    assert (await harness.plan()).sample[0][0].texts.prompt == "STORY 1!"


async def test_hook_prepare_brief(harness: Harness, script: fakes.Script) -> None:
    seen: list[str] = []

    class Editor:
        @hookimpl
        def prepare_brief(self, brief: Brief, pipeline: Any) -> Brief | None:
            seen.append(pipeline.name)
            if brief.id == "fake:2":
                raise SkipBrief("embargoed until Monday")
            return brief.model_copy(update={"title": f"[{pipeline.provider}] {brief.title}"})

    harness.host.add("editor", Editor())
    script.briefs = [fakes.brief(1), fakes.brief(2)]
    await harness.open(ONE)
    report = await harness.plan()
    assert seen == ["t", "t"]
    assert [job.texts.title for job, _ in report.sample] == ["[fake] Story 1"]
    assert report.skipped[0].message == "skipped by plugin 'editor': embargoed until Monday"


async def test_hook_job_event(harness: Harness, script: fakes.Script) -> None:
    events: list[tuple[str, str]] = []

    class Audit:
        @hookimpl
        def job_event(self, event: JobEvent) -> None:
            events.append((event.kind, event.state.value))

    harness.host.add("audit", Audit())
    script.briefs = [fakes.brief(1)]
    await harness.open(ONE)
    await harness.plan_and_run()
    assert events == [("planned", "planned"), ("submitted", "submitted"),
                      ("generated", "generated"), ("sink_published", "generated"),
                      ("published", "published")]  # fmt: skip


@pytest.fixture
def command_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installed distribution whose plugin adds a `reelpress hello` command."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello_plugin.py").write_text(
        textwrap.dedent('''
        import click
        from reelpress import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            @click.argument("name")
            def hello(name):
                """Say hello."""
                click.echo(f"hello {name} from a plugin")
    ''')
    )
    info = site / "hello_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[reelpress]\nhello = hello_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("REELPRESS_LOAD_PLUGINS", raising=False)
    importlib.invalidate_caches()
    yield
    sys.modules.pop("hello_plugin", None)
    importlib.invalidate_caches()


def test_hook_register_commands(command_plugin: None, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from reelpress.cli import cli

    monkeypatch.setattr(cli, "_plugins_added", False)
    main(["hello", "world"])  # returns normally: the command succeeded
    assert "hello world from a plugin" in capsys.readouterr().out
    assert isinstance(cli.commands.get("hello"), click.Command)
    cli.commands.pop("hello")
    monkeypatch.setattr(cli, "_plugins_added", False)
    main(["--help"])
    assert "Say hello." in capsys.readouterr().out  # listed in the help, too
    cli.commands.pop("hello")
