"""The ``markdown`` source: a folder of Markdown files with optional YAML front matter.

Each file is one brief. The front matter supplies the brief's fields; what it leaves out comes
from the text itself (the first ``# `` heading is the title, the first paragraph the summary).
The folder is rescanned in full every run: the engine deduplicates by id and revision.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from reelpress import Brief, PluginConfig, PluginError, Skipped, Source, hookimpl
from reelpress_plugins._records import (
    describe_validation,
    in_thread,
    json_friendly,
    resolve_image,
    revision_of,
    scalar_text,
    type_name,
)


class MarkdownConfig(PluginConfig):
    """Options of the ``markdown`` source."""

    path: Path
    """Folder holding the Markdown files (relative paths start at the pipeline file's folder)."""
    glob: str = "**/*.md"
    """Which files of the folder to read; ``**`` descends into sub-folders."""
    id_prefix: str = Field(default="markdown", min_length=1)
    """Start of the id of a file whose front matter has no ``id``:
    ``<id_prefix>:<path in the folder without .md>``, stable as long as the file is not moved."""

    @field_validator("glob")
    @classmethod
    def _relative_glob(cls, value: str) -> str:
        if not value.strip() or Path(value).is_absolute():
            raise ValueError("expected a pattern relative to 'path', such as '**/*.md'")
        return value


_KEYS: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "title": ("title",),
    "summary": ("summary", "description", "excerpt"),
    "url": ("url",),
    "keywords": ("keywords", "tags"),
    "category": ("category", "categories"),
    "locale": ("locale", "lang"),
    "image": ("image",),
}
"""Brief field → front-matter keys that may supply it, first present one wins."""
_TEXT = ("id", "title", "summary", "url", "category", "locale", "keywords")
"""Fields that take text: a number or a date written there unquoted is still meant as text."""


class MarkdownSource(Source[MarkdownConfig]):
    """Briefs from Markdown files, one per file, in path order."""

    name = "markdown"
    Config = MarkdownConfig

    async def briefs(self, cursor: str | None) -> AsyncGenerator[Brief | Skipped, None]:
        folder = self.context.resolve(self.config.path)
        if not folder.is_dir():
            raise PluginError(f"markdown source: folder not found: {folder}")
        async with aclosing(in_thread(lambda: self._scan(folder))) as items:
            async for item in items:
                yield item

    def _scan(self, folder: Path) -> Iterator[Brief | Skipped]:
        """Read file by file: only one file is ever held in memory."""
        files = [p for p in folder.glob(self.config.glob) if p.is_file()]
        for file in sorted(files, key=lambda p: p.relative_to(folder).as_posix()):
            yield self._read(folder, file)

    def _read(self, folder: Path, file: Path) -> Brief | Skipped:
        rel = file.relative_to(folder).as_posix()
        try:
            data = file.read_bytes()
        except OSError as exc:
            return Skipped(rel, f"cannot read the file: {exc.strerror or exc}")
        doc = _parse(rel, data)
        if isinstance(doc, Skipped):
            return doc
        return self._brief(file, rel, doc, revision_of(data))

    def _brief(self, file: Path, rel: str, doc: _Document, revision: str) -> Brief | Skipped:
        meta = dict(doc.meta)
        if _is_true(meta.pop("draft", None)):
            return Skipped(doc.where("draft"), "draft: true")
        values: dict[str, Any] = {}
        keys: dict[str, str] = {}  # brief field → the front-matter key it came from
        for name, candidates in _KEYS.items():
            key = next((k for k in candidates if _present(meta.get(k))), None)
            if key is not None:
                values[name], keys[name] = meta.pop(key), key
        origin = {name: f"front matter key '{key}'" for name, key in keys.items()}
        if "title" not in values and doc.heading is not None:
            values["title"] = doc.heading
            origin["title"] = f"the heading on line {doc.heading_line}"
        if "title" not in values:
            return Skipped(
                rel, "no title: expected a 'title' in the front matter or a '# ' heading"
            )
        values.setdefault("summary", doc.paragraph)
        values.setdefault("id", f"{self.config.id_prefix}:{Path(rel).with_suffix('').as_posix()}")
        if "category" in values:
            values["category"] = _first_category(values["category"])
        for name in _TEXT:
            if name in values:
                values[name] = scalar_text(values[name])
        if "image" in values:
            values["image"] = resolve_image(scalar_text(values["image"]), file.parent)
        yes_no = next((n for n in _TEXT if isinstance(values.get(n), bool)), None)
        if yes_no is not None:
            key = keys[yes_no]
            return Skipped(
                doc.where(key),
                f"invalid {yes_no} (from front matter key '{key}'): expected text, got "
                f"{str(values[yes_no]).lower()}; YAML reads yes/no/on/off as true/false, "
                f"so quote the value",
            )
        try:
            return Brief(**values, body=doc.body, revision=revision, fields=_fields(meta))
        except ValidationError as exc:
            loc = exc.errors()[0]["loc"]
            key = keys.get(str(loc[0]), "") if loc else ""
            return Skipped(doc.where(key), describe_validation(exc, origin))


# --- parsing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Document:
    """A Markdown file split into what a brief needs, with line numbers for error messages."""

    rel: str
    meta: dict[str, Any]
    body: str
    heading: str | None = None
    heading_line: int | None = None
    paragraph: str = ""
    key_lines: dict[str, int] = field(default_factory=dict)

    def where(self, key: str) -> str:
        line = self.key_lines.get(key)
        return f"{self.rel}:{line}" if line else self.rel


def _parse(rel: str, data: bytes) -> _Document | Skipped:
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return Skipped(
            f"{rel}:{line}",
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded; "
            "expected the file to be saved as UTF-8",
        )
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    meta: dict[str, Any] = {}
    key_lines: dict[str, int] = {}
    body_start = 0
    if lines[0].rstrip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
        if end is None:
            return Skipped(
                f"{rel}:1",
                "front matter is not closed: expected a line '---' after the one on line 1",
            )
        loaded = _front_matter(rel, "\n".join(lines[1:end]))
        if isinstance(loaded, Skipped):
            return loaded
        meta = loaded
        key_lines = _key_lines(lines[1:end], first_line=2)
        body_start = end + 1
    body_lines = lines[body_start:]
    heading, heading_at, paragraph = _outline(body_lines)
    return _Document(
        rel=rel,
        meta=meta,
        body="\n".join(body_lines).strip("\n").rstrip(),
        heading=heading,
        heading_line=None if heading_at is None else body_start + heading_at + 1,
        paragraph=paragraph,
        key_lines=key_lines,
    )


def _front_matter(rel: str, text: str) -> dict[str, Any] | Skipped:
    """Parse the YAML between the ``---`` lines; it starts on line 2 of the file."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return _yaml_skipped(rel, exc)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        return Skipped(
            f"{rel}:2",
            f"front matter must be a mapping of 'key: value' lines, got {type_name(loaded)}",
        )
    return {str(k): v for k, v in loaded.items()}


def _yaml_skipped(rel: str, exc: yaml.YAMLError) -> Skipped:
    mark = getattr(exc, "problem_mark", None)
    line = 2 + mark.line if mark is not None else 1
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    detail = f"front matter is not valid YAML: {problem}"
    if mark is not None:
        detail += f" (column {mark.column + 1})"
    if context and context_mark is not None:
        detail += f", {context} that starts on line {2 + context_mark.line}"
    return Skipped(f"{rel}:{line}", detail)


_KEY_RE = re.compile(r"""^(?P<q>["']?)(?P<key>[^\s#:"'][^:"']*?)(?P=q)\s*:(?:\s|$)""")


def _key_lines(lines: list[str], *, first_line: int) -> dict[str, int]:
    """Line of each top-level key, to point an error at the key that caused it."""
    found: dict[str, int] = {}
    for offset, line in enumerate(lines):
        match = _KEY_RE.match(line)
        if match:
            found.setdefault(match["key"], first_line + offset)
    return found


# --- the text -----------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_H1_RE = re.compile(r"^ {0,3}=+[ \t]*$")
_SETEXT_H2_RE = re.compile(r"^ {0,3}-+[ \t]*$")
_NOT_PROSE_RE = re.compile(
    r"""^(?:\ {4}|\t              # indented code
    |\ {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)   # list item
    |\ {0,3}[>|<]                # quote, table, HTML
    |\ {0,3}\[[^\]]+\]:          # link reference definition
    |\ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$     # thematic break
    |\ {0,3}!\[[^\]]*\]\([^)]*\)[ \t]*$        # a lone image
    )""",
    re.VERBOSE,
)


def _outline(lines: list[str]) -> tuple[str | None, int | None, str]:
    """The first level-1 heading (text, index) and the first prose paragraph of a Markdown body.

    A deliberately small reading of CommonMark: enough to skip code, lists, quotes and tables so
    neither a ``#`` comment in a code block nor a bullet list ends up as a title or summary.
    """
    heading: str | None = None
    heading_at: int | None = None
    paragraph = ""
    block: list[str] = []
    prose = False
    fence: str | None = None

    def flush() -> None:
        nonlocal paragraph, block, prose
        if prose and not paragraph:
            paragraph = plain_text(" ".join(block))
        block, prose = [], False

    for index, line in enumerate(lines):
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        fenced = _FENCE_RE.match(line)
        atx = _ATX_RE.match(line)
        if fenced:
            flush()
            fence = fenced[1][0] * 3
        elif not line.strip():
            flush()
        elif atx:
            flush()
            text = plain_text(atx[2] or "")
            if heading is None and len(atx[1]) == 1 and text:
                heading, heading_at = text, index
        elif block and prose and _SETEXT_H1_RE.match(line):
            text = plain_text(" ".join(block))
            if heading is None and text:
                heading, heading_at = text, index - len(block)
            block, prose = [], False
        elif block and prose and _SETEXT_H2_RE.match(line):
            block, prose = [], False
        else:
            if not block:
                prose = not _NOT_PROSE_RE.match(line)
            block.append(line)
        if heading is not None and paragraph:
            break
    flush()
    return heading, heading_at, paragraph


_ESCAPABLE = "\\`*_{}[]()#+-.!~|<>"
_INLINE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # image → its alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # [link](url) → link
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # [link][ref] → link
    (re.compile(r"<((?:https?|mailto):[^>\s]+)>"), r"\1"),  # <autolink>
    (re.compile(r"</?[A-Za-z][^>]*>"), ""),  # inline HTML tags
    (re.compile(r"(`+)(.+?)\1"), r"\2"),  # `code`
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # **strong**
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *em*
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),  # _em_ (not snake_case)
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # ~~strike~~
]


def plain_text(markdown: str) -> str:
    """Inline Markdown reduced to the words a reader sees (no HTML escaping: briefs are data)."""
    text = re.sub(r"\\([" + re.escape(_ESCAPABLE) + "])", lambda m: _hide(m[1]), markdown)
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    text = "".join(_unhide(ch) for ch in text)
    return " ".join(text.split())


def _hide(char: str) -> str:
    """Park an escaped character in the private-use area so no pattern treats it as syntax."""
    return chr(0xF0000 + ord(char))


def _unhide(char: str) -> str:
    code = ord(char)
    return chr(code - 0xF0000) if 0xF0000 <= code < 0xF0080 else char


# --- values -------------------------------------------------------------------------------------


def _present(value: Any) -> bool:
    """Whether a front-matter value says something (an empty ``tags:`` says nothing)."""
    if value is None:
        return False
    if isinstance(value, str | list | tuple | dict):
        return bool(value.strip() if isinstance(value, str) else value)
    return True


def _first_category(value: Any) -> Any:
    """``categories`` may be a list or a comma-separated string; the brief takes the first."""
    if isinstance(value, str) and "," in value:
        value = value.split(",")
    if isinstance(value, list | tuple):
        return next((v for v in value if _present(v)), "default")
    return value


def _is_true(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return value is True


def _fields(meta: dict[str, Any]) -> dict[str, Any]:
    """The front matter the brief has no field for, in a form the ledger can store as JSON."""
    return {key: json_friendly(value) for key, value in meta.items()}


@hookimpl
def register_sources(register: Callable[[type[Source[Any]]], None]) -> None:
    register(MarkdownSource)
