"""Prompt templates: one Jinja file per platform, with named blocks, rendered in a sandbox.

Brief text is data and never code: it is only ever passed into templates as values, and the
templates themselves run in Jinja's immutable sandbox with strict undefined names, guarded against
outputs or operations that would explode in size.

A platform template extends ``base.j2`` and fills the blocks ``prompt``, ``negative_prompt``,
``title``, ``caption`` and ``hashtags``. The category style (``categories/<category>.j2``, or
``categories/default.j2``) is available as ``style``: its top-level ``{% set %}`` names.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplatesNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import TemplateError
from .models import Brief, Platform, Texts

BLOCKS = ("prompt", "negative_prompt", "title", "caption", "hashtags")
MAX_BLOCK_CHARS = 20_000
"""No block may render more than this: prompts are paragraphs, not novels."""
MAX_REPEAT = 10_000
"""``'a' * n`` and ``[x] * n`` beyond this are refused inside templates."""

_SPACE_RE = re.compile(r"\s+")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_TAG_RE = re.compile(r"#?([^\W_][\w]*)", re.UNICODE)
_MD_LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_EMPHASIS_RE = re.compile(r"(\*\*|\*|`|~~)(?=\S)(.+?)(?<=\S)\1")
_MD_LINE_RE = re.compile(r"^[ \t]{0,3}(?:#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+|\d+\.[ \t]+)", re.M)
_HTML_TAG_RE = re.compile(r"</?[A-Za-z][^<>]{0,500}>")
_SENTENCE_RE = re.compile(r"(?<=[.!?。！？])\s+")


class GuardedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox plus a guard on ``*`` and ``**``, which the sandbox lets grow without bound."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and count * max(len(seq), 1) > MAX_REPEAT
                ):
                    raise SecurityError(f"template tried to repeat a value {count} times")
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError(f"template tried to raise a number to the power {right}")
        return super().call_binop(context, operator, left, right)


# --- filters ------------------------------------------------------------------------------------


def hashtag(value: Any) -> str:
    """``"running shoes"`` → ``#RunningShoes`` (letters of any script kept)."""
    words = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", str(value)))
    tag = "".join(w[:1].upper() + w[1:] for w in words)
    return f"#{tag}" if tag else ""


def sentences(value: Any, count: int = 1) -> str:
    """The first ``count`` sentences of a text."""
    parts = _SENTENCE_RE.split(str(value).strip())
    return " ".join(parts[: max(0, int(count))])


def words(value: Any, count: int = 30) -> str:
    """The first ``count`` words, with an ellipsis when cut."""
    parts = str(value).split()
    return " ".join(parts[:count]) + ("…" if len(parts) > count else "")


def plain(value: Any) -> str:
    """Markdown or HTML reduced to one line of plain text: link text kept; headings, quotes,
    bullets, ``*emphasis*``, code marks and tags dropped. Underscores are left alone (they are far
    more often part of a name than emphasis)."""
    text = _HTML_TAG_RE.sub(" ", str(value))
    text = _MD_LINK_RE.sub(lambda m: m.group(1), text)
    text = _MD_LINE_RE.sub("", text)
    text = _MD_EMPHASIS_RE.sub(lambda m: m.group(2), text)
    return _SPACE_RE.sub(" ", text).strip()


FILTERS: dict[str, Callable[..., Any]] = {
    "hashtag": hashtag,
    "sentences": sentences,
    "words": words,
    "plain": plain,
}


# --- templates ----------------------------------------------------------------------------------


def builtin_templates_dir() -> Path:
    return Path(str(files("reelpress.templates")))


class PromptTemplates:
    """The template search path of one pipeline, compiled once, rendered per brief and platform."""

    def __init__(
        self,
        search_path: Iterable[Path],
        *,
        filters: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.search_path = [*search_path, builtin_templates_dir()]
        loaders: list[BaseLoader] = [FileSystemLoader(str(p)) for p in self.search_path]
        self.env = GuardedEnvironment(
            loader=ChoiceLoader(loaders),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            auto_reload=False,
        )
        self.env.filters.update(FILTERS)
        for name, fn in (filters or {}).items():
            if name in FILTERS:
                raise TemplateError(f"a plugin filter may not replace the built-in {name!r}")
            self.env.filters[name] = fn
        self._platform_templates: dict[str, Template] = {}
        self._styles: dict[str, Any] = {}
        self._platform_vars: dict[Platform, dict[str, Any]] = {}

    def origin(self, name: str) -> Path | None:
        """Which file on the search path provides template ``name``."""
        for folder in self.search_path:
            candidate = folder / name
            if candidate.is_file():
                return candidate
        return None

    def list(self) -> list[str]:
        names = {n for n in self.env.list_templates() if n.endswith(".j2")}
        return sorted(names)

    def check(self, platforms: Iterable[Platform]) -> None:
        """Compile every template the platforms need, so a syntax error or a missing file stops
        the run before any brief is read."""
        for platform in platforms:
            self.platform_template(platform)
        for name in self.list():
            if name.startswith("categories/"):
                self._compile(name)

    def platform_template(self, platform: Platform) -> Template:
        template = self._platform_templates.get(platform.template)
        if template is None:
            template = self._compile(platform.template, platform=platform.name)
            self._platform_templates[platform.template] = template
        return template

    def style(self, category: str) -> Any:
        """The category style module (``categories/<category>.j2`` or the default one)."""
        module = self._styles.get(category)
        if module is None:
            names = [f"categories/{category}.j2", "categories/default.j2"]
            try:
                template = self.env.select_template(names)
            except TemplatesNotFound:
                raise TemplateError(
                    "no category style found; expected categories/default.j2 on the template path"
                ) from None
            try:
                module = template.make_module({})
            except Exception as exc:
                raise self._wrap(exc, template.name or names[0]) from None
            self._styles[category] = module
        return module

    def render(
        self,
        brief: Brief,
        platform: Platform,
        *,
        data: dict[str, Any] | None = None,
        platform_data: dict[str, Any] | None = None,
    ) -> Texts:
        """Render every block of the platform's template for one brief.

        ``data``/``platform_data`` let a caller that renders one brief for many platforms build the
        template context once.
        """
        template = self.platform_template(platform)
        context = template.new_context(
            {
                "brief": data if data is not None else brief.template_data(),
                "platform": platform_data if platform_data is not None else self._vars(platform),
                "style": self.style(brief.category),
            }
        )
        out: dict[str, str] = {}
        try:
            for _ in template.root_render_func(context):
                pass  # resolves {% extends %} and top-level {% set %}; base.j2 prints nothing
            for block in BLOCKS:
                stack = context.blocks.get(block)
                out[block] = _join_capped(stack[0](context), block) if stack else ""
        except TemplateError:
            raise
        except Exception as exc:
            raise self._wrap(exc, template.name or platform.template, brief=brief) from None
        return Texts(
            prompt=_one_line(out["prompt"]),
            negative_prompt=_one_line(out["negative_prompt"]),
            title=_one_line(out["title"]),
            caption=_paragraphs(out["caption"]),
            hashtags=parse_hashtags(out["hashtags"]),
        )

    def _vars(self, platform: Platform) -> dict[str, Any]:
        found = self._platform_vars.get(platform)
        if found is None:
            found = self._platform_vars[platform] = platform_vars(platform)
        return found

    def _compile(self, name: str, *, platform: str | None = None) -> Template:
        try:
            return self.env.get_template(name)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"syntax error: {exc.message}",
                template=_shown(exc.filename or exc.name or name),
                line=exc.lineno,
            ) from None
        except TemplateNotFound as exc:
            what = f"platform {platform!r} needs template" if platform else "template"
            missing = exc.name if exc.name != name else name
            raise TemplateError(
                f"{what} {missing!r}, which is not on the template path: "
                + ", ".join(str(p) for p in self.search_path)
            ) from None

    def _wrap(self, exc: Exception, name: str, *, brief: Brief | None = None) -> TemplateError:
        """Turn any rendering failure into a TemplateError naming the template file and line."""
        try:
            self.env.handle_exception()  # rewrites the traceback to template lines
        except Exception as rewritten:
            exc = rewritten
        path, template, line = _template_frame(exc.__traceback__, name)
        about = ""
        if isinstance(exc, UndefinedError):
            source = _source_line(path, line)
            return TemplateError(
                f"{_undefined_message(str(exc), source)}{about}", template=template, line=line
            )
        if isinstance(exc, SecurityError):
            return TemplateError(
                f"not allowed in a template: {exc}{about}", template=template, line=line
            )
        return TemplateError(f"{type(exc).__name__}: {exc}{about}", template=template, line=line)


def platform_vars(platform: Platform) -> dict[str, Any]:
    width, height = platform.size
    return {**platform.model_dump(), "width": width, "height": height}


def parse_hashtags(text: str, limit: int | None = None) -> tuple[str, ...]:
    """Rendered ``hashtags`` block → unique ``#Tags`` in order (case-insensitive duplicates
    dropped)."""
    seen: dict[str, str] = {}
    for match in _TAG_RE.finditer(unicodedata.normalize("NFKC", text)):
        tag = "#" + match.group(1)
        seen.setdefault(tag.casefold(), tag)
    tags = tuple(seen.values())
    return tags if limit is None else tags[:limit]


def _join_capped(chunks: Iterable[str], block: str) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_BLOCK_CHARS:
            raise SecurityError(f"block {block!r} rendered more than {MAX_BLOCK_CHARS} characters")
        out.append(chunk)
    return "".join(out)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _paragraphs(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.strip().splitlines()]
    return _BLANK_LINES_RE.sub("\n\n", "\n".join(lines)).strip()


def _template_frame(tb: TracebackType | None, fallback: str) -> tuple[str | None, str, int | None]:
    """The innermost traceback frame that is a template file: (file, shown name, line)."""
    found: tuple[str | None, str, int | None] = (None, fallback, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith((".j2", ".jinja", ".jinja2", ".html")):
            found = (filename, _shown(filename), tb.tb_lineno)
        tb = tb.tb_next
    return found


def _source_line(path: str | None, line: int | None) -> str:
    if path is None or line is None:
        return ""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _shown(filename: str) -> str:
    """A template file name as a user recognises it: relative to the built-ins or the CWD."""
    path = Path(filename)
    builtin = builtin_templates_dir()
    try:
        return f"<built-in>/{path.relative_to(builtin)}"
    except ValueError:
        pass
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


_UNDEFINED_ATTR = re.compile(r"'(.+?)' has no attribute '(.+?)'")
_UNDEFINED_NAME = re.compile(r"'(.+?)' is undefined")


def _undefined_message(message: str, source: str) -> str:
    """Say which field is missing, spelled as the template spells it where we can find it."""
    if match := _UNDEFINED_ATTR.search(message):
        field = match.group(2)
        spelled = re.search(rf"([A-Za-z_]\w*(?:\.\w+)*)\.{re.escape(field)}\b", source)
        where = f" ({spelled.group(1)}.{field})" if spelled else ""
        return f"missing field {field!r}{where}"
    if match := _UNDEFINED_NAME.search(message):
        return f"undefined name {match.group(1)!r}"
    return message
