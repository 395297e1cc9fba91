"""The ``catalog`` source: a product list as CSV, TSV, a JSON array or JSON Lines.

One row is one brief. ``mapping`` says which column holds which brief field; every other column
is kept in ``fields`` for templates. The file is read as a stream (a row at a time), so a
catalog of millions of rows costs no more memory than one of ten, and rescanned in full every
run: the engine deduplicates by id and revision.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any, Literal, TypeAlias

import ijson
from pydantic import Field, ValidationError, field_validator, model_validator

from reelpress import Brief, PluginConfig, PluginError, Skipped, Source, hookimpl
from reelpress.models import canonical_json
from reelpress_plugins._records import (
    describe_validation,
    in_thread,
    json_friendly,
    resolve_image,
    revision_of,
    scalar_text,
    type_name,
)

BRIEF_FIELDS = (
    "id",
    "title",
    "summary",
    "body",
    "url",
    "keywords",
    "category",
    "locale",
    "image",
    "revision",
)
"""Brief fields a column can fill (``fields`` is everything left over)."""

Format = Literal["csv", "tsv", "json", "jsonl"]
SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class CatalogConfig(PluginConfig):
    """Options of the ``catalog`` source."""

    path: Path
    """The catalog file (relative paths start at the pipeline file's folder)."""
    format: Literal["auto", "csv", "tsv", "json", "jsonl"] = "auto"
    """How to read the file; ``auto`` goes by its suffix (.csv, .tsv, .json, .jsonl, .ndjson)."""
    items: str = Field(default="item", min_length=1)
    """Where the rows are in a JSON file, as an ijson prefix: ``item`` for a top-level array,
    ``products.item`` for ``{"products": [...]}``."""
    id_prefix: str | None = Field(default=None, min_length=1)
    """Start of every brief id (``<id_prefix>:<id column>``); default ``catalog:<file stem>``, so
    two catalogs with overlapping SKUs never share ids."""
    mapping: dict[str, str] = Field(default_factory=dict)
    """Brief field → column holding it, e.g. ``{id: sku, title: name}``. A field left out is
    read from a column of its own name, if there is one."""
    category_map: dict[str, str] = Field(default_factory=dict)
    """Catalog category → category to use, e.g. ``{"Pots & Pans": cookware}``, so the catalog's
    names can pick the category templates without being edited."""
    encoding: str = "utf-8-sig"
    """Text encoding of a CSV/TSV file; the default also accepts a byte-order mark. JSON and JSON
    Lines are always UTF-8."""
    delimiter: str | None = None
    """Cell separator of a CSV/TSV file when it is neither ``,`` (csv) nor tab (tsv), e.g. ``;``."""

    @field_validator("mapping")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(BRIEF_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown brief field(s) {', '.join(map(repr, unknown))}; "
                f"valid names: {', '.join(BRIEF_FIELDS)}"
            )
        blank = sorted(k for k, v in value.items() if not v.strip())
        if blank:
            raise ValueError(f"expected a column name for {', '.join(map(repr, blank))}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}, e.g. 'utf-8' or 'cp1252'") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"expected a single character, got {value!r}")
        return value

    @model_validator(mode="after")
    def _format_known(self) -> CatalogConfig:
        if self.format == "auto" and self.path.suffix.lower() not in SUFFIXES:
            suffix = self.path.suffix or "(none)"
            raise ValueError(
                f"cannot tell the format of {self.path.name!r} from its suffix {suffix}: "
                f"known suffixes are {', '.join(SUFFIXES)}; "
                "or set format to one of csv, tsv, json, jsonl"
            )
        return self

    @property
    def file_format(self) -> Format:
        return SUFFIXES[self.path.suffix.lower()] if self.format == "auto" else self.format


class CatalogSource(Source[CatalogConfig]):
    """Briefs from the rows of one catalog file, in file order."""

    name = "catalog"
    Config = CatalogConfig

    async def briefs(self, cursor: str | None) -> AsyncGenerator[Brief | Skipped, None]:
        path = self.context.resolve(self.config.path)
        if not path.exists():
            raise PluginError(f"catalog source: file not found: {path}")
        if path.is_dir():
            raise PluginError(f"catalog source: expected a file, found a folder: {path}")
        async with aclosing(in_thread(lambda: self._scan(path))) as items:
            async for item in items:
                yield item

    def _scan(self, path: Path) -> Iterator[Brief | Skipped]:
        rows = _READERS[self.config.file_format](path, self.config)
        briefs = _Rows(path, self.config, text_cells=self.config.file_format in ("csv", "tsv"))
        for row, data in rows:
            if isinstance(data, Skipped):
                yield data
            else:
                yield briefs.make(row, data)


# --- reading ------------------------------------------------------------------------------------

Row: TypeAlias = tuple[int, dict[str, Any] | Skipped]
"""A row number (line for CSV and JSON Lines, item for JSON) and the row, or why there is none."""


def _read_csv(path: Path, config: CatalogConfig) -> Iterator[Row]:
    default = "\t" if config.file_format == "tsv" else ","
    # surrogateescape: a badly encoded row is skipped on its own line instead of ending the file
    with path.open(encoding=config.encoding, errors="surrogateescape", newline="") as file:
        reader = csv.reader(file, delimiter=config.delimiter or default)
        header: list[str] | None = None
        start = 1
        try:
            for cells in reader:
                row, start = start, reader.line_num + 1
                if not any(cell.strip() for cell in cells):
                    continue  # blank line
                if header is None:
                    header = _header(path, cells, config)
                else:
                    yield row, _csv_row(path, row, header, cells, config)
        except csv.Error as exc:
            yield start, _skip(path, start, f"cannot read the file from here on: {exc}")


def _csv_row(
    path: Path, row: int, header: list[str], cells: list[str], config: CatalogConfig
) -> dict[str, str] | Skipped:
    if len(cells) > len(header):
        return _skip(path, row, f"row has {len(cells)} cells but the header has {len(header)}")
    if any(_UNDECODED.search(cell) for cell in cells):
        return _skip(
            path,
            row,
            f"not {config.encoding} text; set 'encoding' to the file's encoding (e.g. cp1252)",
        )
    return dict(zip(header, cells, strict=False))


_UNDECODED = re.compile("[\udc80-\udcff]")
"""What ``surrogateescape`` leaves for bytes the encoding could not decode."""


def _header(path: Path, cells: list[str], config: CatalogConfig) -> list[str]:
    """Check the header once, so a misspelt column fails the run instead of every row."""
    header = [cell.strip() for cell in cells]
    if any(_UNDECODED.search(name) for name in header):
        raise PluginError(
            f"catalog source: {path.name}:1: the header is not {config.encoding} text; "
            "set 'encoding' to the file's encoding"
        )
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise PluginError(
            f"catalog source: {path.name}:1: column(s) {', '.join(map(repr, duplicates))} "
            "appear more than once in the header"
        )
    required = {name: config.mapping.get(name, name) for name in ("id", "title")}
    explicit = {**config.mapping, **required}
    missing = {name: col for name, col in explicit.items() if col not in header}
    if missing:
        wanted = ", ".join(f"{col!r} (for {name})" for name, col in missing.items())
        raise PluginError(
            f"catalog source: {path.name}:1: the header has no column {wanted}; "
            f"columns: {', '.join(repr(n) for n in header if n)}; "
            "map brief fields to columns with 'mapping'"
        )
    return header


def _read_json(path: Path, config: CatalogConfig) -> Iterator[Row]:
    count = 0
    with path.open("rb") as file:
        if file.peek(3)[:3] == codecs.BOM_UTF8:
            file.read(3)
        try:
            for count, item in enumerate(ijson.items(file, config.items, use_float=True), 1):
                yield count, _object(path, count, item, config)
        except ijson.JSONError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unexpected end"
            yield (
                count + 1,
                _skip(
                    path,
                    count + 1,
                    f"the JSON is broken after item {count}: {reason}; the rest was not read",
                ),
            )
            return
    if count == 0:
        _check_array(path, config.items)


def _object(path: Path, index: int, item: Any, config: CatalogConfig) -> dict[str, Any] | Skipped:
    if isinstance(item, dict):
        return item
    hint = ""
    if isinstance(item, list) and not _is_array_prefix(config.items):
        hint = f" (to read the rows of this list, set items to '{config.items}.item')"
    return _skip(path, index, f"item {index} is {type_name(item)}, expected an object{hint}")


def _check_array(path: Path, items: str) -> None:
    """No rows at all: say so if ``items`` points nowhere, rather than quietly yield nothing.

    Only runs when nothing was found, and only on a regular file (a pipe cannot be read twice).
    """
    if not path.is_file():
        return
    parent = items.rpartition(".")[0] if _is_array_prefix(items) else items
    keys: list[str] = []
    top = "nothing"
    with path.open("rb") as file:
        if file.peek(3)[:3] == codecs.BOM_UTF8:
            file.read(3)
        try:
            for prefix, event, value in ijson.parse(file):
                if prefix == parent and event == "start_array":
                    return  # an empty list: fine
                if prefix == "" and event in ("start_map", "start_array"):
                    top = "an object" if event == "start_map" else "a list"
                if prefix == "" and event == "map_key" and len(keys) < 10:
                    keys.append(str(value))
        except ijson.JSONError:
            return  # reported while reading
    listing = f" with keys {', '.join(map(repr, keys))}" if keys else ""
    raise PluginError(
        f"catalog source: {path.name}: found no list at items {items!r}; the file holds "
        f"{top}{listing}. Set items to the list's path plus '.item', e.g. 'products.item'"
    )


def _is_array_prefix(items: str) -> bool:
    return items == "item" or items.endswith(".item")


def _read_jsonl(path: Path, config: CatalogConfig) -> Iterator[Row]:
    with path.open("rb") as file:
        for line_no, raw in enumerate(file, 1):
            line = raw.removeprefix(codecs.BOM_UTF8) if line_no == 1 else raw
            if line.strip():
                yield line_no, _json_line(path, line_no, line)


def _json_line(path: Path, line_no: int, raw: bytes) -> dict[str, Any] | Skipped:
    try:
        item = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return _skip(path, line_no, "not UTF-8 text")
    except json.JSONDecodeError as exc:
        return _skip(path, line_no, f"not valid JSON: {exc.msg} (column {exc.colno})")
    if not isinstance(item, dict):
        return _skip(path, line_no, f"expected a JSON object, got {type_name(item)}")
    return item


_READERS: dict[Format, Callable[[Path, CatalogConfig], Iterator[Row]]] = {
    "csv": _read_csv,
    "tsv": _read_csv,
    "json": _read_json,
    "jsonl": _read_jsonl,
}


def _skip(path: Path, row: int, reason: str) -> Skipped:
    return Skipped(f"{path.name}:{row}", reason)


# --- rows → briefs ------------------------------------------------------------------------------


class _Rows:
    """Turns rows into briefs, remembering ids already seen to report duplicates."""

    def __init__(self, path: Path, config: CatalogConfig, *, text_cells: bool) -> None:
        self.path = path
        self.config = config
        self.text_cells = text_cells
        self.prefix = config.id_prefix or f"catalog:{path.stem}"
        self.columns = {name: config.mapping.get(name, name) for name in BRIEF_FIELDS}
        self.used = set(self.columns.values())
        self.categories = _CategoryMap(config.category_map)
        self.seen: dict[str, int] = {}
        self.noun = "column" if text_cells else "key"

    def make(self, row: int, data: dict[str, Any]) -> Brief | Skipped:
        values: dict[str, Any] = {}
        for name, column in self.columns.items():
            value = data.get(column)
            if _present(value):
                values[name] = value
        for name in ("id", "title"):
            problem = self._required(name, values.get(name))
            if problem:
                return _skip(self.path, row, problem)
        raw_id = str(scalar_text(values["id"])).strip()
        if raw_id in self.seen:
            return _skip(
                self.path, row, f"duplicate id {raw_id!r} (first at row {self.seen[raw_id]})"
            )
        brief = self._brief(row, values, data, raw_id)
        if isinstance(brief, Brief):
            self.seen[raw_id] = row
        return brief

    def _brief(
        self, row: int, values: dict[str, Any], data: dict[str, Any], raw_id: str
    ) -> Brief | Skipped:
        for name in ("title", "summary", "body", "url", "locale", "image", "revision", "keywords"):
            if name in values:
                values[name] = scalar_text(values[name])
        if "category" in values:
            values["category"] = self.categories.get(scalar_text(values["category"]))
        if "image" in values:
            values["image"] = resolve_image(values["image"], self.path.parent)
        values["id"] = f"{self.prefix}:{raw_id}"
        values.setdefault("revision", revision_of(canonical_json(json_friendly(data))))
        try:
            return Brief(**values, fields=self._fields(data))
        except ValidationError as exc:
            origin = {name: f"{self.noun} '{column}'" for name, column in self.columns.items()}
            return _skip(self.path, row, describe_validation(exc, origin))

    def _fields(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Every column no brief field took: CSV cells stay text, JSON values keep their type."""
        return {
            key: json_friendly(value)
            for key, value in data.items()
            if key and key not in self.used and (not self.text_cells or value != "")
        }

    def _required(self, name: str, value: Any) -> str | None:
        """Why a row cannot have this required field, or None if it can."""
        where = f"{self.noun} {self.columns[name]!r} (mapped to {name})"
        if not _present(value):
            return f"no value in {where}"
        if not isinstance(scalar_text(value), str):
            return f"expected text or a number in {where}, got {type_name(value)}"
        return None


def _present(value: Any) -> bool:
    """Whether a cell says something: empty and blank cells count as missing."""
    if value is None:
        return False
    return not (isinstance(value, str) and not value.strip())


class _CategoryMap:
    """Looks up a category exactly, then ignoring case and surrounding spaces."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self.exact = dict(table)
        self.folded = {key.strip().casefold(): value for key, value in table.items()}

    def get(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value in self.exact:
            return self.exact[value]
        return self.folded.get(value.strip().casefold(), value)


@hookimpl
def register_sources(register: Callable[[type[Source[Any]]], None]) -> None:
    register(CatalogSource)
