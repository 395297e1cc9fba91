"""Plugin discovery through real entry points: a fake installed distribution on sys.path whose
plugins range from good to broken in every way we know of. Each problem is reported by plugin
name, and neither the built-ins nor the good plugins are affected."""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from reelpress import hookspecs
from reelpress.cli import main
from reelpress.errors import PluginError
from reelpress.plugins import PluginHost
from reelpress_plugins import platforms
from reelpress_plugins.filesystem import FilesystemSink

PACKAGE = "thirdparty_demo_pkg"
BUILTINS = {
    "platforms": {"platform": ["youtube", "youtube_shorts", "instagram_reels", "tiktok",
                               "linkedin", "hero"]},
    "markdown": {"source": ["markdown"]},
    "catalog": {"source": ["catalog"]},
    "preview": {"provider": ["preview"]},
    "filesystem": {"sink": ["filesystem"]},
}  # fmt: skip

MODULES = {
    "good": """
        from reelpress import Platform, PluginConfig, Sink, hookimpl

        class DemoSink(Sink[PluginConfig]):
            name = "demo_sink"

        @hookimpl
        def register_sinks(register):
            register(DemoSink)

        @hookimpl
        def register_platforms(register):
            register(Platform(name="demo_square", aspect_ratio="1:1"))
    """,
    "broken": """
        raise ImportError("needs libfoo, which is not installed")
    """,
    "exits": """
        import sys
        sys.exit("install libfoo first")
    """,
    "typo": """
        from reelpress import hookimpl

        @hookimpl
        def register_sink(register):  # the hook is register_sinks
            pass
    """,
    "raises": """
        from reelpress import Platform, hookimpl

        @hookimpl
        def register_platforms(register):
            register(Platform(name="half_done"))
            raise RuntimeError("boom")
    """,
    "notsink": """
        from reelpress import Platform, hookimpl

        @hookimpl
        def register_sinks(register):
            register(object())

        @hookimpl
        def register_platforms(register):
            register(Platform(name="fine_square", aspect_ratio="1:1"))
    """,
    "dup": """
        from reelpress import PluginConfig, Sink, hookimpl

        class AnotherFilesystem(Sink[PluginConfig]):
            name = "filesystem"

        @hookimpl
        def register_sinks(register):
            register(AnotherFilesystem)
    """,
}
ENTRY_POINTS = {f"thirdparty_{name}": f"{PACKAGE}.{name}" for name in MODULES}


def _forget_package() -> None:
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


@pytest.fixture(autouse=True)
def plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No selection from the environment unless a test sets one."""
    monkeypatch.delenv("REELPRESS_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("REELPRESS_BLOCK_PLUGINS", raising=False)


@pytest.fixture
def thirdparty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution 'thirdparty-demo' 1.2.3, installed the way pip would (a package and its
    dist-info folder with entry_points.txt), on sys.path for this test only."""
    site = tmp_path / "site-packages"
    package = site / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, source in MODULES.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / "thirdparty_demo-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-demo\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(
        "[reelpress]\n" + "".join(f"{k} = {v}\n" for k, v in ENTRY_POINTS.items())
    )
    _forget_package()
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    _forget_package()
    importlib.invalidate_caches()


# --- discovery --------------------------------------------------------------------------------


def test_a_third_party_plugin_is_found_through_its_entry_point(thirdparty: Path) -> None:
    host = PluginHost.load()
    info = host.plugins["thirdparty_good"]
    assert (info.distribution, info.version) == ("thirdparty-demo", "1.2.3")
    assert info.module == f"{PACKAGE}.good"
    assert info.hooks == ["register_platforms", "register_sinks"]
    assert info.registers == {"sink": ["demo_sink"], "platform": ["demo_square"]}
    assert (info.error, info.problems, info.loaded) == (None, [], True)
    sink = host.sinks["demo_sink"]
    assert sink.plugin == "thirdparty_good"
    assert host.sink("demo_sink") is sink.value
    assert sink.value.__module__ == f"{PACKAGE}.good"
    assert host.platforms["demo_square"].plugin == "thirdparty_good"
    assert host.platforms["demo_square"].value.aspect_ratio == "1:1"


def test_builtins_are_entry_points_of_reelpress_itself_and_all_load(thirdparty: Path) -> None:
    host = PluginHost.load()
    for name, registers in BUILTINS.items():
        info = host.plugins[name]
        assert info.distribution == "reelpress"
        assert info.version == version("reelpress")
        assert info.module == f"reelpress_plugins.{name}"
        assert (info.registers, info.error, info.problems) == (registers, None, [])
    assert set(host.sources) == {"markdown", "catalog"}
    assert set(host.providers) == {"preview"}
    assert set(host.sinks) == {"filesystem", "demo_sink"}


def test_each_broken_plugin_is_reported_by_name_with_what_went_wrong(thirdparty: Path) -> None:
    host = PluginHost.load()
    failed = {info.name: info for info in host.failed()}
    assert set(failed) == {
        "thirdparty_broken",
        "thirdparty_exits",
        "thirdparty_typo",
        "thirdparty_raises",
        "thirdparty_notsink",
        "thirdparty_dup",
    }
    assert failed["thirdparty_broken"].error == (
        f"failed to import {PACKAGE}.broken: ImportError: needs libfoo, which is not installed"
    )
    assert failed["thirdparty_exits"].error == (
        f"failed to import {PACKAGE}.exits: SystemExit: install libfoo first"
    )
    assert failed["thirdparty_typo"].error == "implements unknown hook(s): register_sink"
    assert failed["thirdparty_raises"].error == "a registration hook raised RuntimeError: boom"
    assert all(failed[name].distribution == "thirdparty-demo" for name in failed)


def test_a_plugin_whose_registration_raises_registers_nothing(thirdparty: Path) -> None:
    host = PluginHost.load()
    assert "half_done" not in host.platforms
    assert host.plugins["thirdparty_raises"].registers == {}
    assert host.plugins["thirdparty_raises"].hooks == ["register_platforms"]
    assert "thirdparty_raises" not in {name for name, _ in host.impls("register_platforms")}


def test_registering_something_that_is_not_a_sink_is_refused_and_the_rest_of_the_plugin_works(
    thirdparty: Path,
) -> None:
    info = PluginHost.load().plugins["thirdparty_notsink"]
    assert info.error is None
    (problem,) = info.problems
    assert problem.startswith("sink: <object object at ")
    assert problem.endswith("is not a subclass of reelpress.Sink")
    assert info.registers == {"platform": ["fine_square"]}


def test_a_name_a_builtin_already_uses_keeps_the_builtin_and_reports_the_duplicate(
    thirdparty: Path,
) -> None:
    host = PluginHost.load()
    assert host.sinks["filesystem"].value is FilesystemSink
    assert host.sinks["filesystem"].plugin == "filesystem"
    info = host.plugins["thirdparty_dup"]
    assert info.problems == [
        "sink 'filesystem' is already registered by plugin 'filesystem'; skipped"
    ]
    assert info.registers == {}


# --- choosing plugins -------------------------------------------------------------------------


def test_load_plugins_env_var_loads_only_the_named_ones(
    thirdparty: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REELPRESS_LOAD_PLUGINS", "markdown")
    host = PluginHost.load()
    assert set(host.plugins) == {"markdown"}
    assert (set(host.sources), host.sinks, host.platforms) == ({"markdown"}, {}, {})
    monkeypatch.setenv("REELPRESS_LOAD_PLUGINS", " markdown , thirdparty_good ")
    assert set(PluginHost.load().plugins) == {"markdown", "thirdparty_good"}


def test_an_empty_load_plugins_env_var_loads_none(
    thirdparty: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REELPRESS_LOAD_PLUGINS", "")
    host = PluginHost.load()
    assert (host.plugins, host.sources, host.providers, host.sinks) == ({}, {}, {}, {})


def test_an_explicit_selection_wins_over_the_environment(
    thirdparty: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REELPRESS_LOAD_PLUGINS", "markdown")
    assert set(PluginHost.load(only=["preview"]).plugins) == {"preview"}


def test_block_plugins_env_var_blocks_the_named_ones(
    thirdparty: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REELPRESS_BLOCK_PLUGINS", "thirdparty_good,thirdparty_broken")
    host = PluginHost.load(block=["thirdparty_exits"])
    assert not {"thirdparty_good", "thirdparty_broken", "thirdparty_exits"} & set(host.plugins)
    assert "demo_sink" not in host.sinks
    assert set(BUILTINS) <= set(host.plugins)


def test_an_extra_plugin_object_is_registered_like_any_other() -> None:
    host = PluginHost.load(only=[], extra=[("mine", platforms)])
    assert host.plugins["mine"].registers == BUILTINS["platforms"]
    assert host.platforms["tiktok"].plugin == "mine"
    with pytest.raises(PluginError, match="a plugin named 'mine' is already loaded"):
        host.add("mine", platforms)


def test_asking_for_an_unknown_class_lists_the_available_ones() -> None:
    host = PluginHost.load(only=["markdown", "catalog"])
    with pytest.raises(PluginError, match="unknown source 'rss'; available: catalog, markdown"):
        host.source("rss")
    with pytest.raises(PluginError, match="unknown sink 'x'; available: none are installed"):
        host.sink("x")


# --- the hook contract ------------------------------------------------------------------------


def hookspec_functions() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, "reelpress_spec")
    }


def test_every_hook_is_declared_in_hookspecs_and_is_known_to_the_host() -> None:
    names = set(hookspec_functions())
    assert {"register_sources", "register_sinks", "prepare_brief", "job_event"} <= names
    host = PluginHost()
    assert names == {n for n in dir(host.pm.hook) if not n.startswith("_")}


@pytest.mark.parametrize("name", sorted(hookspec_functions()))
def test_every_hook_has_a_docstring_saying_what_it_is_for_and_when_it_is_called(
    name: str,
) -> None:
    doc = inspect.getdoc(hookspec_functions()[name])
    assert doc, f"hook {name} has no docstring"
    assert len(doc.splitlines()[0]) > 10
    assert "Called" in doc, f"hook {name} does not say when it is called"


# --- reelpress plugins --json -----------------------------------------------------------------


def run_plugins_json(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    with pytest.raises(SystemExit) as exited:
        main(["plugins", "--json"])
    assert exited.value.code == 0
    listing: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return listing


def test_the_plugins_command_lists_the_builtins_with_their_registrations(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    listing = {entry["name"]: entry for entry in run_plugins_json(capsys)}
    assert set(BUILTINS) <= set(listing)
    for name, registers in BUILTINS.items():
        entry = listing[name]
        assert entry["registers"] == registers
        assert entry["distribution"] == "reelpress"
        assert (entry["error"], entry["problems"]) == (None, [])
        assert entry["hooks"] == [f"register_{next(iter(registers))}s"]


def test_the_plugins_command_shows_third_party_problems(
    thirdparty: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(thirdparty)
    listing = run_plugins_json(capsys)
    names = [entry["name"] for entry in listing]
    assert names[: len(BUILTINS)] == sorted(BUILTINS)  # reelpress's own come first
    entries = {entry["name"]: entry for entry in listing}
    assert entries["thirdparty_good"]["version"] == "1.2.3"
    assert "ImportError" in str(entries["thirdparty_broken"]["error"])
    assert entries["thirdparty_dup"]["problems"]
