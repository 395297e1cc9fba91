"""Prompt templates: one Jinja file per platform, with named blocks, rendered in a sandbox.

Brief text is data and never code: it is only ever passed into templates as values, and the
templates themselves run in Jinja's immutable sandbox with strict undefined names, guarded against
outputs or operations that would explode in size.

A platform template extends ``base.j2`` and fills the blocks ``prompt``, ``negative_prompt``,
``title``, ``caption`` and ``hashtags``. The category style (``categories/<category>.j2``, or
``categories/default.j2``) is available as ``style``: its top-level ``{% set %}`` names.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sized
from importlib.resources import files
from itertools import islice
from pathlib import Path
from string import Formatter
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
    nodes,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from .errors import TemplateError
from .models import Brief, Platform, Texts, category_slug

BLOCKS = ("prompt", "negative_prompt", "title", "caption", "hashtags")
MAX_BLOCK_CHARS = 20_000
"""No block may render more than this: prompts are paragraphs, not novels."""
MAX_REPEAT = 10_000
"""``'a' * n``, ``[x] * n`` and padding or format widths beyond this are refused in templates."""
MAX_VALUE_CHARS = 2_000_000
"""No string or list built inside a template may be longer (brief text included)."""
MAX_INT_BITS = 4096
"""``a ** b`` may not make an integer larger than this: big powers take seconds to compute."""

_SPACE_RE = re.compile(r"\s+")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_TAG_RE = re.compile(r"#?([^\W_][\w]*)", re.UNICODE)
_MD_LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_EMPHASIS_RE = re.compile(r"(\*\*|\*|`|~~)(?=\S)(.+?)(?<=\S)\1")
_MD_LINE_RE = re.compile(r"^[ \t]{0,3}(?:#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+|\d+\.[ \t]+)", re.M)
_HTML_TAG_RE = re.compile(r"</?[A-Za-z][^<>]{0,500}>")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*(?=\S)")
"""Between two sentences: spaces after Latin punctuation; none needed after CJK full stops."""


class _GuardedCodeGenerator(CodeGenerator):
    """Compiles ``a ~ b`` so its result passes the size check: a loop or a recursive macro that
    doubles a string would otherwise reach any size before anything is printed."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_size(")
        super().visit_Concat(node, frame)
        self.write(")")


class GuardedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox plus guards on what it lets grow without bound: ``*`` and ``**``, ``+`` and
    ``~``, ``%`` and ``str.format`` widths, padding and joining methods and filters, namespace
    values. Every string or list a template builds stays under :data:`MAX_VALUE_CHARS`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _GuardedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # placeholder text of any length: no use in a prompt
        self.globals["namespace"] = _GuardedNamespace

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and count * max(len(seq), 1) > MAX_REPEAT
                ):
                    raise SecurityError(f"template tried to repeat a value {count} times")
        elif operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError(f"template tried to raise a number to the power {right}")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left).bit_length() * right > MAX_INT_BITS
            ):
                raise SecurityError(f"template tried to make a number of over {MAX_INT_BITS} bits")
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _check_size(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            _check_printf(left)
        return super().call_binop(context, operator, left, right)

    def call(
        __self,  # the sandbox's own spelling: keeps ``self`` free as a keyword argument
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Every call a template makes (methods, macros, globals): arguments that would make a
        huge string are refused, and so is a huge result."""
        target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_method(owner, getattr(target, "__name__", ""), args, kwargs)
        return __self.checked_size(super().call(__context, __obj, *args, **kwargs))

    def checked_size(self, value: Any) -> Any:
        if isinstance(value, str | list | tuple):
            _check_size(len(value))
        return value

    def guard_filters(self) -> None:
        """Wrap every filter with the same checks as calls (done once the filters are set)."""
        for name, fn in list(self.filters.items()):
            if not getattr(fn, "_reelpress_guarded", False):
                self.filters[name] = _guarded_filter(name, fn, self)


class _GuardedNamespace(Namespace):
    """``namespace()`` whose attributes cannot grow past the size limit (a loop that doubles a
    string held in a namespace would otherwise double it to any size)."""

    def __setitem__(self, name: str, value: Any) -> None:
        if isinstance(value, str | list | tuple):
            _check_size(len(value))
        super().__setitem__(name, value)


def _check_size(size: int) -> None:
    if size > MAX_VALUE_CHARS:
        raise SecurityError(f"template built a value longer than {MAX_VALUE_CHARS:,} characters")


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_REPEAT:
        raise SecurityError(f"template asked for a width of {width}")


_PRINTF_RE = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(fmt: str) -> None:
    for match in _PRINTF_RE.finditer(fmt.replace("%%", "")):
        for number in match.groups():
            if number == "*":
                raise SecurityError("template used a '*' width in a format string")
            if number is not None:
                _check_width(int(number))


def _check_format_spec(fmt: str) -> None:
    for _, _, spec, _ in Formatter().parse(fmt):
        if spec and "{" in spec:
            raise SecurityError("template used a nested width in a format string")
        for number in re.findall(r"\d+", spec or ""):
            _check_width(int(number))


def _check_str_method(
    value: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Refuse a str method call that would build a huge string; returns the arguments to use."""
    first = args[0] if args else None
    if name in ("ljust", "rjust", "center", "zfill"):
        _check_width(kwargs.get("width", first))
    elif name == "expandtabs":
        tabsize = kwargs.get("tabsize", first)
        if isinstance(tabsize, int):
            _check_size(len(value) + tabsize * value.count("\t"))
    elif name in ("format", "format_map"):
        _check_format_spec(value)
    elif name == "replace" and len(args) >= 2:
        _check_replace(value, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name == "join" and args:
        items = _sized(first)
        _check_size(len(value) * len(items))
        return (items, *args[1:])
    return args


def _sized(value: Any) -> Any:
    """``value`` itself if it has a length, else its items in a list (to count them first)."""
    return value if isinstance(value, Sized) else list(value)


def _check_replace(value: Any, old: Any, new: Any, count: Any) -> None:
    if (
        isinstance(value, str)
        and isinstance(old, str)
        and isinstance(new, str)
        and len(new) > len(old)
    ):
        found = value.count(old) if old else len(value) + 1
        if isinstance(count, int) and count >= 0:
            found = min(found, count)
        _check_size(len(value) + found * (len(new) - len(old)))


def _guarded_filter(name: str, fn: Callable[..., Any], env: GuardedEnvironment) -> Any:
    passes_context = getattr(fn, "jinja_pass_arg", None) is not None

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        data = args[1:] if passes_context else args
        value = data[0] if data else None
        param = data[1] if len(data) > 1 else None
        if name == "format" and isinstance(value, str):
            _check_printf(value)
        elif name == "center":
            _check_width(kwargs.get("width", param))
        elif name == "indent" and isinstance(value, str):
            width = kwargs.get("width", param)
            pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 4
            _check_size(len(value) + pad * (value.count("\n") + 1))
        elif name == "join" and data:
            items = _sized(value)
            sep = kwargs.get("d", param)
            _check_size(len(sep if isinstance(sep, str) else "") * len(items))
            args = (*args[: len(args) - len(data)], items, *data[1:])
        elif name == "replace" and len(data) >= 3:
            _check_replace(value, data[1], data[2], data[3] if len(data) > 3 else -1)
        elif name == "wordwrap" and isinstance(value, str):
            wrap = kwargs.get("wrapstring", data[3] if len(data) > 3 else None)
            width = kwargs.get("width", param)
            if isinstance(wrap, str) and isinstance(width, int):
                _check_size(len(value) + len(wrap) * (len(value) // max(width, 1) + 1))
        return env.checked_size(fn(*args, **kwargs))

    guarded._reelpress_guarded = True  # type: ignore[attr-defined]
    return guarded


# --- filters ------------------------------------------------------------------------------------


def hashtag(value: Any) -> str:
    """``"running shoes"`` → ``#RunningShoes`` (letters of any script kept)."""
    words = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", str(value)))
    tag = "".join(w[:1].upper() + w[1:] for w in words)
    return f"#{tag}" if tag else ""


def sentences(value: Any, count: int = 1) -> str:
    """The first ``count`` sentences of a text."""
    text = str(value).strip()
    count = max(0, int(count))
    if count == 0:
        return ""
    for number, gap in enumerate(_SENTENCE_RE.finditer(text), start=1):
        if number == count:
            text = text[: gap.start()]
            break
    return _SENTENCE_RE.sub(lambda gap: " " if gap.group() else "", text)


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
            if name in self.env.filters:
                raise TemplateError(f"a plugin filter may not replace the built-in {name!r}")
            self.env.filters[name] = fn
        self.env.guard_filters()
        self._platform_templates: dict[str, Template] = {}
        self._styles: dict[str, Any] = {}
        self._platform_vars: dict[str, dict[str, Any]] = {}

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
        category = category_slug(category)  # a brief changed by model_copy skipped validation
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
        found = self._platform_vars.get(platform.name)
        if found is None:
            found = self._platform_vars[platform.name] = platform_vars(platform)
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
        if match.group(1).isdigit():
            continue  # platforms do not link number-only tags
        tag = "#" + match.group(1)
        seen.setdefault(tag.casefold(), tag)
    tags = tuple(seen.values())
    return tags if limit is None else tags[:limit]


def _join_capped(chunks: Iterable[str], block: str) -> str:
    """Join a block's output, stopping as soon as it passes the cap (read in slices: checking
    every tiny chunk would cost as much as rendering it)."""
    parts: list[str] = []
    size = 0
    stream = iter(chunks)
    while slice_ := list(islice(stream, 16)):
        part = "".join(slice_)
        size += len(part)
        if size > MAX_BLOCK_CHARS:
            raise SecurityError(f"block {block!r} rendered more than {MAX_BLOCK_CHARS} characters")
        parts.append(part)
    return "".join(parts)


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
