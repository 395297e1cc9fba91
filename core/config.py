"""Loading ``pipeline.yaml``: safe YAML, ``${VAR}`` interpolation, validation, precise errors.

Every problem is collected before anything fails, and each one names the file, the line (when the
YAML has one), the dotted path and what was expected. Values that came from the environment are
never echoed back: they may be secrets.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError as ConfigError
from .errors import ConfigIssue
from .limits import parse_rate
from .models import Platform
from .plugin_api import PluginConfig
from .plugins import PluginHost, Registered, unknown_name_message

Loc = tuple[str | int, ...]
_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEY_RE = re.compile(r"pass|secret|token|key|auth|credential", re.IGNORECASE)

DEFAULT_FILE = "pipeline.yaml"


# --- the shape of the file ------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Strict):
    """How fast and how wide the engine may go against the provider."""

    rate: str | None = None
    """Submissions allowed per window, several at once: ``"10/minute; 50/day"``."""
    concurrency: int | None = Field(default=None, ge=1, le=1000)
    """Renders in flight at once (default: the provider's own)."""
    max_attempts: int = Field(default=3, ge=1, le=20)
    """Tries per job for errors worth retrying (timeouts, 429, 5xx) before it fails."""

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value


class BudgetCap(_Strict):
    """Stop submitting before spend in a period would pass ``max_usd``."""

    max_usd: float = Field(ge=0)
    per: Literal["run", "day", "month"] = "run"


class PipelineFile(_Strict):
    """The top level of ``pipeline.yaml``."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    sources: list[dict[str, Any]] = Field(min_length=1)
    platforms: list[str | dict[str, Any]] = Field(min_length=1)
    provider: dict[str, Any] = Field(default_factory=lambda: {"use": "preview"})
    sinks: list[dict[str, Any]] = Field(default_factory=lambda: [{"use": "filesystem"}])
    ledger: str = "reelpress.db"
    store: str = ".reelpress/store"
    templates: str | None = None
    limits: LimitsConfig = LimitsConfig()
    budget: BudgetCap | list[BudgetCap] | None = None


# --- what loading produces ------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginSpec:
    """One plugin section, resolved to its class and validated config."""

    kind: str
    use: str
    name: str
    cls: type[Any]
    config: PluginConfig
    path: str


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline, ready to build."""

    name: str
    file: Path | None
    base_dir: Path
    sources: list[PluginSpec]
    platforms: list[Platform]
    provider: PluginSpec
    sinks: list[PluginSpec]
    ledger_url: str
    store_dir: Path
    state_dir: Path
    templates_dir: Path | None
    limits: LimitsConfig
    budget: list[BudgetCap] = field(default_factory=list)


def load_pipeline(path: str | Path, host: PluginHost) -> PipelineSpec:
    """Read, interpolate and validate a pipeline file. Raises :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue("", "file not found", file=str(path))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue("", f"cannot read: {exc}", file=str(path))]) from None
    return parse_pipeline(text, host, file=path)


def parse_pipeline(text: str, host: PluginHost, *, file: Path | None = None) -> PipelineSpec:
    """Validate pipeline YAML given as text (``file`` names it in errors and anchors paths)."""
    fname = str(file) if file else "<pipeline>"
    base_dir = (file.parent if file else Path.cwd()).resolve()
    try:
        data = yaml.safe_load(text)
        lines = _LineMap(yaml.compose(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
        line = mark.line + 1 if mark else None
        raise ConfigError([ConfigIssue("", message, file=fname, line=line)]) from None
    except RecursionError:
        message = "invalid YAML: nested too deeply"
        raise ConfigError([ConfigIssue("", message, file=fname)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigIssue("", "expected a mapping of settings at the top level", fname, 1)]
        )

    issues = _Issues(fname, lines)
    try:
        data = _interpolate(data, (), issues, set())
    except _TooLarge as exc:
        issues.add(exc.loc, str(exc))
        raise ConfigError(issues.items) from None

    top = _top_level(data, issues)
    if top is None:
        raise ConfigError(issues.items)
    provider = _plugin_section("provider", top.provider, ("provider",), host, issues)
    sources = [
        _plugin_section("source", s, ("sources", i), host, issues)
        for i, s in enumerate(top.sources)
    ]
    sinks = [
        _plugin_section("sink", s, ("sinks", i), host, issues) for i, s in enumerate(top.sinks)
    ]
    platforms = _platforms(top.platforms, host, issues)
    _unique_names(sinks, "sinks", issues)
    _unique_names(sources, "sources", issues)
    ledger_url = _ledger_url(top.ledger, base_dir, issues)
    templates_dir = _templates_dir(top.templates, base_dir, issues)
    if issues.items:
        raise ConfigError(sorted(issues.items, key=lambda issue: issue.line or 0))
    assert provider is not None
    budget = top.budget if isinstance(top.budget, list) else [top.budget] if top.budget else []
    return PipelineSpec(
        name=top.name or base_dir.name or "pipeline",
        file=file,
        base_dir=base_dir,
        sources=[s for s in sources if s],
        platforms=platforms,
        provider=provider,
        sinks=[s for s in sinks if s],
        ledger_url=ledger_url,
        store_dir=_resolve(base_dir, top.store),
        state_dir=_resolve(base_dir, ".reelpress"),
        templates_dir=templates_dir,
        limits=top.limits,
        budget=budget,
    )


def _top_level(data: dict[str, Any], issues: _Issues) -> PipelineFile | None:
    """Validate the top level. On errors, record them and keep the settings that did validate,
    so the plugin sections are still checked and every problem is reported at once."""
    try:
        return PipelineFile.model_validate(data)
    except ValidationError as exc:
        issues.from_validation(exc, (), PipelineFile, data)
        errors = exc.errors()
    fields = PipelineFile.model_fields
    bad_fields: set[str] = set()
    bad_items: dict[str, set[int]] = {}
    for err in errors:
        loc = err["loc"]
        if not loc or loc[0] not in fields:
            continue  # an unknown key: reported, and nothing else depends on it
        key = str(loc[0])
        if len(loc) > 1 and isinstance(loc[1], int) and isinstance(data.get(key), list):
            bad_items.setdefault(key, set()).add(loc[1])
        else:
            bad_fields.add(key)
    kept = {k: v for k, v in data.items() if k in fields and k not in bad_fields}
    # Items with problems of their own become _SKIP, so the others keep their positions (and
    # their paths in messages). sources and platforms may end up empty: already reported.
    lists: dict[str, list[Any]] = {
        key: [_SKIP if i in bad_items.get(key, ()) else v for i, v in enumerate(kept.pop(key))]
        for key in ("sources", "platforms", "sinks")
        if key in kept
    }
    lists.setdefault("sources", [])
    lists.setdefault("platforms", [])
    try:
        partial = PipelineFile.model_validate({**kept, "sources": [{}], "platforms": ["_"]})
    except ValidationError:  # cannot happen: every value kept has validated once already
        return None
    return partial.model_copy(update=lists)


_SKIP: dict[str, Any] = {}
"""Stands for a list item whose problem is already reported."""


# --- sections -------------------------------------------------------------------------------------


def _plugin_section(
    kind: str, raw: dict[str, Any], loc: Loc, host: PluginHost, issues: _Issues
) -> PluginSpec | None:
    tables: dict[str, dict[str, Registered[Any]]] = {
        "source": host.sources,
        "provider": host.providers,
        "sink": host.sinks,
    }
    table = tables[kind]
    if raw is _SKIP:
        return None
    use = raw.get("use")
    if not isinstance(use, str) or not use:
        issues.add(
            loc,
            f"each {kind} needs 'use: <{kind} name>'; available: "
            + (", ".join(sorted(table)) or "none are installed"),
        )
        return None
    if use not in table:
        issues.add(
            (*loc, "use"), unknown_name_message(kind, use, table) + _did_you_mean(use, table)
        )
        return None
    cls = table[use].value
    name = raw.get("name", use)
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        issues.add((*loc, "name"), "expected a short name made of letters, digits, '_', '-', '.'")
        return None
    options = {k: v for k, v in raw.items() if k not in ("use", "name")}
    try:
        config = cls.Config.model_validate(options)
    except ValidationError as exc:
        issues.from_validation(exc, loc, cls.Config, options)
        return None
    return PluginSpec(kind, use, name, cls, config, _dotted(loc))


def _platforms(
    items: list[str | dict[str, Any]], host: PluginHost, issues: _Issues
) -> list[Platform]:
    result: list[Platform] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item is _SKIP:
            continue
        loc: Loc = ("platforms", i)
        raw: dict[str, Any] = {"name": item} if isinstance(item, str) else dict(item)
        name = raw.get("name")
        if not isinstance(name, str):
            issues.add(loc, "each platform needs a 'name'")
            continue
        base_name = raw.pop("extends", None) or (name if name in host.platforms else None)
        if base_name is not None and not isinstance(base_name, str):
            issues.add((*loc, "extends"), "expected the name of a platform to start from")
            continue
        if base_name is None and isinstance(item, str):
            issues.add(
                loc,
                unknown_name_message("platform", name, host.platforms)
                + _did_you_mean(name, host.platforms),
            )
            continue
        merged: dict[str, Any] = {}
        if base_name is not None:
            if base_name not in host.platforms:
                issues.add(
                    (*loc, "extends"),
                    unknown_name_message("platform", base_name, host.platforms)
                    + _did_you_mean(base_name, host.platforms),
                )
                continue
            merged = host.platforms[base_name].value.model_dump()
            if name != base_name and "template" not in raw:
                merged["template"] = host.platforms[base_name].value.template
            if name != base_name and "label" not in raw:
                merged.pop("label")
        merged.update(raw)
        try:
            platform = Platform.model_validate(merged)
        except ValidationError as exc:
            issues.from_validation(exc, loc, Platform, merged)
            continue
        if platform.name in seen:
            issues.add(loc, f"platform {platform.name!r} is listed twice")
            continue
        seen.add(platform.name)
        result.append(platform)
    return result


def _unique_names(specs: list[PluginSpec | None], key: str, issues: _Issues) -> None:
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if spec is None:
            continue
        if spec.name in seen:
            issues.add(
                (key, i, "name"), f"two {key} are named {spec.name!r}; give one a different 'name:'"
            )
        seen.add(spec.name)


def _ledger_url(value: str, base_dir: Path, issues: _Issues) -> str:
    if not value.strip():
        issues.add(("ledger",), "expected a file path such as 'reelpress.db'")
        return ""
    if "://" not in value:
        return f"sqlite+aiosqlite:///{_resolve(base_dir, value)}"
    scheme, _, rest = value.partition("://")
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        if rest.startswith("/") and len(rest) > 1:
            # sqlite:///relative.db or sqlite:////absolute/path.db, as SQLAlchemy spells them
            return f"sqlite+aiosqlite:///{_resolve(base_dir, rest[1:])}"
        issues.add(
            ("ledger",),
            "a SQLite ledger URL needs a file: 'sqlite:///reelpress.db' (relative to the "
            "pipeline file) or 'sqlite:////absolute/path.db'",
        )
        return ""
    issues.add(
        ("ledger",),
        f"unsupported ledger {scheme!r}; expected a file path such as "
        "'reelpress.db' or a 'sqlite:///path' URL",
    )
    return ""


def _templates_dir(value: str | None, base_dir: Path, issues: _Issues) -> Path | None:
    if value is None:
        default = base_dir / "templates"
        return default if default.is_dir() else None
    path = _resolve(base_dir, value)
    if not path.is_dir():
        issues.add(("templates",), f"folder not found: {path}")
    return path


def _resolve(base_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _did_you_mean(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- interpolation ----------------------------------------------------------------------------


MAX_VALUES = 100_000
"""More values than this after YAML aliases are expanded is a mistake (or an alias bomb)."""


class _TooLarge(Exception):
    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _interpolate(value: Any, loc: Loc, issues: _Issues, parents: set[int]) -> Any:
    """A copy of ``value`` with ``${VAR}`` replaced, recording where the environment was used.

    ``parents`` holds the containers above ``value``: YAML aliases may make a container its own
    descendant, or repeat one so often that the copy would not fit in memory."""
    if isinstance(value, dict | list):
        if id(value) in parents:
            raise _TooLarge(loc, "a YAML alias (*name) refers to a value that contains it")
        issues.values += len(value)
        if issues.values > MAX_VALUES:
            raise _TooLarge(
                loc, f"more than {MAX_VALUES:,} values once YAML aliases (*name) are expanded"
            )
        parents.add(id(value))
        try:
            if isinstance(value, dict):
                return {k: _interpolate(v, (*loc, k), issues, parents) for k, v in value.items()}
            return [_interpolate(v, (*loc, i), issues, parents) for i, v in enumerate(value)]
        finally:
            parents.discard(id(value))
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, default = match[1], match[2]
        issues.secret_paths.add(loc)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        issues.missing_paths.add(loc)
        issues.add(
            loc, f"environment variable {name} is not set (set it, or write ${{{name}:-default}})"
        )
        return ""

    return _VAR_RE.sub(replace, value)


# --- error reporting --------------------------------------------------------------------------


class _LineMap:
    """Find the line of a path in the YAML, using the node tree PyYAML composes."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def line(self, loc: Loc, *, key: bool = False) -> int | None:
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for i, part in enumerate(loc):
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if k.value == part:
                        last = i == len(loc) - 1
                        node = v
                        line = (k if key and last else v).start_mark.line + 1
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return line
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line


class _Issues:
    def __init__(self, file: str, lines: _LineMap) -> None:
        self.file = file
        self.lines = lines
        self.items: list[ConfigIssue] = []
        self.secret_paths: set[Loc] = set()
        """Where a value came (at least in part) from the environment: never shown."""
        self.missing_paths: set[Loc] = set()
        """Where an environment variable was missing (already reported)."""
        self.values = 0

    def add(self, loc: Loc, message: str, *, key: bool = False) -> None:
        self.items.append(
            ConfigIssue(_dotted(loc), message, self.file, self.lines.line(loc, key=key))
        )

    def from_validation(
        self, exc: ValidationError, prefix: Loc, model: type[BaseModel], data: Any
    ) -> None:
        """Record pydantic's errors for ``data`` (found at ``prefix`` in the file)."""
        errors = _without_union_noise(exc.errors(), data)
        for err in errors:
            kind = err["type"]
            loc: Loc = (*prefix, *_data_path(data, err["loc"], missing=kind == "missing")[0])
            if loc in self.missing_paths:
                continue  # the missing variable is the problem, and it is reported
            if kind == "extra_forbidden":
                allowed = _allowed_keys(model, tuple(err["loc"][:-1]))
                hint = _did_you_mean(str(loc[-1]), allowed) if allowed else ""
                listing = f"; expected one of: {', '.join(allowed)}" if allowed else ""
                self.add(loc, f"unknown key{hint}{listing}", key=True)
                continue
            if kind == "missing":
                self.add(loc, "required key is missing")
                continue
            self.add(loc, self._message(loc, err))

    def _message(self, loc: Loc, err: Any) -> str:
        message = str(err["msg"])
        custom = err["type"] in ("value_error", "assertion_error")
        if custom:  # a validator's own words, which may quote the value
            message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if self._is_secret(loc):
            if custom:
                return "invalid value (not shown: it comes from the environment or a secret key)"
            return message
        value = err.get("input")
        if isinstance(value, str | int | float | bool) and repr(value) not in message:
            message += f" (got {value!r})"
        return message

    def _is_secret(self, loc: Loc) -> bool:
        if any(loc[: len(p)] == p or p[: len(loc)] == loc for p in self.secret_paths):
            return True
        return any(isinstance(p, str) and _SECRET_KEY_RE.search(p) for p in loc)


def _without_union_noise(errors: list[Any], data: Any) -> list[Any]:
    """pydantic reports every member of a union that failed. Drop the members the value was not
    even shaped like when another member got further, and merge the rest into one message."""
    out: list[Any] = []
    merged: dict[tuple[Any, ...], Any] = {}
    for err in errors:
        loc = tuple(err["loc"])
        if not loc or not _data_path(data, loc, missing=err["type"] == "missing")[1]:
            out.append(err)
            continue
        parent = loc[:-1]
        deeper = any(
            len(other["loc"]) > len(loc) and tuple(other["loc"][: len(parent)]) == parent
            for other in errors
        )
        if deeper:
            continue
        if parent in merged:
            merged[parent]["msg"] += f", or {err['msg'][:1].lower()}{err['msg'][1:]}"
        else:
            merged[parent] = dict(err)
            out.append(merged[parent])
    return out


def _data_path(data: Any, loc: tuple[Any, ...], *, missing: bool) -> tuple[Loc, bool]:
    """Split pydantic's error location into the path in the data and the names it adds for the
    members of a union (``str``, ``dict[str,any]``, ``BudgetCap``…): a part is a path only if the
    data has it (or, for a missing key, if it is the last). Returns (path, whether the location
    ends with a union member's name)."""
    path: list[str | int] = []
    node = data
    ends_with_member = False
    for i, part in enumerate(loc):
        present = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))  # fmt: skip
        if present or (missing and i == len(loc) - 1):
            path.append(part)
            node = node[part] if present else None
            ends_with_member = False
        else:
            ends_with_member = True
    return tuple(path), ends_with_member


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            continue  # a list index or a union member's name: same model
        current = _model_in(info.annotation)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


__all__ = [
    "DEFAULT_FILE",
    "BudgetCap",
    "ConfigError",
    "LimitsConfig",
    "PipelineSpec",
    "PluginSpec",
    "load_pipeline",
    "parse_pipeline",
]
