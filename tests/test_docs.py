"""Docs and packaging that must not drift from the code."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import click

import reelpress
from reelpress import hookspecs
from reelpress.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def hook_functions() -> dict[str, object]:
    return {name: fn for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, "reelpress_spec")}  # fmt: skip


def test_every_hook_has_a_docstring_and_a_documented_signature() -> None:
    page = (ROOT / "docs" / "plugins.md").read_text()
    hooks = hook_functions()
    assert len(hooks) == 9
    for name, fn in hooks.items():
        assert inspect.getdoc(fn), f"hook {name} has no docstring"
        args = ", ".join(inspect.signature(fn).parameters)  # type: ignore[arg-type]
        assert f"### {name}({args})" in page, f"docs/plugins.md lacks '### {name}({args})'"


def test_every_command_is_in_the_readme_and_has_help() -> None:
    readme = (ROOT / "README.md").read_text()

    def walk(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
        found = []
        for name, command in group.commands.items():
            found.append((f"{prefix}{name}", command))
            if isinstance(command, click.Group):
                found += walk(command, f"{prefix}{name} ")
        return found

    table = [line for line in readme.splitlines() if line.startswith("| `reelpress ")]
    for path, command in walk(cli, "reelpress "):
        assert command.help, f"`{path}` has no help text"
        if not isinstance(command, click.Group):
            words = path.split()[1:]  # e.g. ["jobs", "show"]: both on one row of the table
            assert any(all(re.search(rf"\b{w}\b", row) for w in words) for row in table), (
                f"`{path}` is not in the README's command table"
            )


def test_public_api_names_exist() -> None:
    for name in reelpress.__all__:
        assert hasattr(reelpress, name), name


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    """A sub-package missing from the list still imports in an editable install but is silently
    dropped from the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = {folder: name for name, folder in config["package-dir"].items()}
    for folder, name in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            package = ".".join([name, *rel.parts]) if rel.parts else name
            assert package in listed, f"{package} ({init.parent}) is not in the package list"


def test_every_entry_point_names_a_module_that_exists() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name, target in project["entry-points"]["reelpress"].items():
        module = target.removeprefix("reelpress_plugins.").replace(".", "/")
        assert (ROOT / "plugins" / f"{module}.py").exists() or (
            ROOT / "plugins" / module / "__init__.py").exists(), name  # fmt: skip
        assert re.fullmatch(r"[a-z_]+", name)
