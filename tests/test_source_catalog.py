"""The ``catalog`` source, on real files: formats, mapping, bad rows, and reading as a stream."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from reelpress import Brief, PluginContext, PluginError, Skipped
from reelpress.plugins import PluginHost
from reelpress_plugins._records import in_thread
from reelpress_plugins.catalog import BRIEF_FIELDS, CatalogSource

PRODUCTS_CSV = """\
sku,name,blurb,section,tags,photo,link,price,stock,colour
P-1,Cast iron pan,Heavy and forever.,Pots & Pans,"iron, pan",img/pan.jpg,https://shop.example/p1,39.90,12,
P-2,Chef knife,Sharp.,knives,,https://cdn.example/knife.png,,89.00,0,steel
"""
MAPPING = {
    "id": "sku",
    "title": "name",
    "summary": "blurb",
    "category": "section",
    "keywords": "tags",
    "image": "photo",
    "url": "link",
}


def context(tmp_path: Path) -> PluginContext:
    return PluginContext(
        pipeline="t",
        instance="x",
        base_dir=tmp_path,
        state_dir=tmp_path / "state",
        store_dir=tmp_path / "store",
    )


def source(tmp_path: Path, path: str, **options: Any) -> CatalogSource:
    config = CatalogSource.Config.model_validate({"path": path, **options})
    return CatalogSource(config, context(tmp_path))


async def collect(tmp_path: Path, path: str, **options: Any) -> list[Brief | Skipped]:
    return [item async for item in source(tmp_path, path, **options).briefs(None)]


def briefs(items: list[Brief | Skipped]) -> list[Brief]:
    return [item for item in items if isinstance(item, Brief)]


def skipped(items: list[Brief | Skipped]) -> list[tuple[str, str]]:
    return [(item.location, item.reason) for item in items if isinstance(item, Skipped)]


def write_jsonl(path: Path, rows: list[Any]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


async def test_csv_with_mapping_category_map_and_leftover_fields(tmp_path: Path) -> None:
    (tmp_path / "products.csv").write_text(PRODUCTS_CSV, encoding="utf-8")

    items = await collect(
        tmp_path, "products.csv", mapping=MAPPING, category_map={"Pots & Pans": "cookware"}
    )

    pan, knife = briefs(items)
    assert skipped(items) == []
    assert pan.id == "catalog:products:P-1"
    assert (pan.title, pan.summary) == ("Cast iron pan", "Heavy and forever.")
    assert (pan.url, knife.url) == ("https://shop.example/p1", None)
    assert pan.category == "cookware"
    assert pan.keywords == ("iron", "pan")
    assert pan.image == str((tmp_path / "img" / "pan.jpg").resolve())
    assert pan.fields == {"price": "39.90", "stock": "12"}  # empty colour dropped, text kept
    assert knife.category == "knives"
    assert knife.image == "https://cdn.example/knife.png"
    assert knife.keywords == ()
    assert knife.fields == {"price": "89.00", "stock": "0", "colour": "steel"}
    assert pan.revision is not None and len(pan.revision) == 16


async def test_csv_url_and_defaults_by_column_name(tmp_path: Path) -> None:
    (tmp_path / "shop.csv").write_text(
        "\ufeffid,title,url,locale,body\n7,Pan,https://shop.example/7,fr,Long text\n",
        encoding="utf-8",
    )

    [brief] = await collect(tmp_path, "shop.csv", id_prefix="kitchen")

    assert isinstance(brief, Brief)
    assert brief.id == "kitchen:7"  # the BOM did not become part of the 'id' column name
    assert (brief.url, brief.locale, brief.body) == ("https://shop.example/7", "fr", "Long text")
    assert brief.fields == {}


async def test_tsv(tmp_path: Path) -> None:
    (tmp_path / "list.tsv").write_text(
        "id\ttitle\tnote\n1\tA, with comma\tx\n2\tB\t\n", encoding="utf-8"
    )

    items = await collect(tmp_path, "list.tsv")

    assert [(b.id, b.title, b.fields) for b in briefs(items)] == [
        ("catalog:list:1", "A, with comma", {"note": "x"}),
        ("catalog:list:2", "B", {}),
    ]


async def test_delimiter_and_explicit_format(tmp_path: Path) -> None:
    (tmp_path / "export.txt").write_text("id;title\n1;Semi\n", encoding="utf-8")

    [brief] = await collect(tmp_path, "export.txt", format="csv", delimiter=";")

    assert isinstance(brief, Brief)
    assert (brief.id, brief.title) == ("catalog:export:1", "Semi")


async def test_json_array_keeps_value_types(tmp_path: Path) -> None:
    rows = [
        {"id": 1, "title": "One", "price": 9.5, "tags": ["a", "b"], "new": True, "n": None},
        {"id": "two", "title": "Two", "keywords": ["x", "y"], "dims": {"w": 2}},
    ]
    (tmp_path / "items.json").write_text(json.dumps(rows), encoding="utf-8")

    one, two = briefs(await collect(tmp_path, "items.json"))

    assert (one.id, one.title) == ("catalog:items:1", "One")
    assert one.fields == {"price": 9.5, "tags": ["a", "b"], "new": True, "n": None}
    assert two.keywords == ("x", "y")
    assert two.fields == {"dims": {"w": 2}}


async def test_json_nested_under_a_key(tmp_path: Path) -> None:
    doc = {
        "meta": {"count": 2},
        "products": [{"sku": "A", "name": "Ay"}, {"sku": "B", "name": "Bee"}],
    }
    (tmp_path / "feed.json").write_text(json.dumps(doc), encoding="utf-8")

    items = await collect(
        tmp_path, "feed.json", items="products.item", mapping={"id": "sku", "title": "name"}
    )

    assert [(b.id, b.title) for b in briefs(items)] == [
        ("catalog:feed:A", "Ay"),
        ("catalog:feed:B", "Bee"),
    ]


async def test_json_items_that_point_nowhere_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "feed.json").write_text(json.dumps({"products": [{"id": 1}]}), encoding="utf-8")

    with pytest.raises(PluginError, match=r"no list at items 'item'.*'products'"):
        await collect(tmp_path, "feed.json")


async def test_json_empty_array_is_fine(tmp_path: Path) -> None:
    (tmp_path / "none.json").write_text("[]", encoding="utf-8")

    assert await collect(tmp_path, "none.json") == []


async def test_json_item_that_is_not_an_object(tmp_path: Path) -> None:
    (tmp_path / "mixed.json").write_text(
        json.dumps([{"id": 1, "title": "A"}, ["not", "an", "object"], {"id": 3, "title": "C"}]),
        encoding="utf-8",
    )

    items = await collect(tmp_path, "mixed.json")

    assert [b.id for b in briefs(items)] == ["catalog:mixed:1", "catalog:mixed:3"]
    assert skipped(items) == [("mixed.json:2", "item 2 is a list, expected an object")]


async def test_json_broken_halfway_yields_what_came_before(tmp_path: Path) -> None:
    (tmp_path / "cut.json").write_text(
        '[{"id": 1, "title": "A"}, {"id": 2, "title": "B"}, {"id": 3, "title": "C', encoding="utf-8"
    )

    items = await collect(tmp_path, "cut.json")

    assert [b.id for b in briefs(items)] == ["catalog:cut:1", "catalog:cut:2"]
    assert isinstance(items[-1], Skipped)
    assert items[-1].location == "cut.json:3"
    assert items[-1].reason.startswith("the JSON is broken after item 2:")
    assert len(items) == 3


async def test_jsonl_bad_lines_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text(
        '{"id": "a", "title": "A"}\n'
        "\n"
        '{"id": "b", "title": "B"\n'
        '["a", "list"]\n'
        '{"id": "c", "title": "C", "stock": 3}\n',
        encoding="utf-8",
    )

    items = await collect(tmp_path, "feed.jsonl")

    assert [b.id for b in briefs(items)] == ["catalog:feed:a", "catalog:feed:c"]
    assert briefs(items)[1].fields == {"stock": 3}
    [(where, reason), (where2, reason2)] = skipped(items)
    assert where == "feed.jsonl:3" and reason.startswith("not valid JSON: Expecting ',' delimiter")
    assert (where2, reason2) == ("feed.jsonl:4", "expected a JSON object, got a list")


async def test_ndjson_suffix(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.ndjson", [{"id": 1, "title": "A"}])

    assert [b.id for b in briefs(await collect(tmp_path, "x.ndjson"))] == ["catalog:x:1"]


async def test_bad_csv_rows_are_reported_with_their_line(tmp_path: Path) -> None:
    long_id = "x" * 600
    (tmp_path / "rows.csv").write_text(
        "sku,name,notes\n"  # 1
        'A,Alpha,"two\n'  # 2: a quoted cell running over
        'lines"\n'  # 3
        "B,Beta,ok,EXTRA\n"  # 4: one cell too many
        "\n"  # 5: blank, ignored
        " ,Gamma,\n"  # 6: blank id
        "D,,\n"  # 7: no title
        f"{long_id},Long,\n"  # 8: id too long for a brief
        "E,Epsilon,fine\n",  # 9
        encoding="utf-8",
    )

    items = await collect(tmp_path, "rows.csv", mapping={"id": "sku", "title": "name"})

    assert [(b.id, b.fields) for b in briefs(items)] == [
        ("catalog:rows:A", {"notes": "two\nlines"}),
        ("catalog:rows:E", {"notes": "fine"}),
    ]
    problems = skipped(items)
    assert problems[:3] == [
        ("rows.csv:4", "row has 4 cells but the header has 3"),
        ("rows.csv:6", "no value in column 'sku' (mapped to id)"),
        ("rows.csv:7", "no value in column 'name' (mapped to title)"),
    ]
    where, reason = problems[3]
    assert where == "rows.csv:8"
    assert reason.startswith("invalid id (from column 'sku'): String should have at most 500")
    assert len(problems) == 4


async def test_badly_encoded_row_is_skipped_alone(tmp_path: Path) -> None:
    (tmp_path / "legacy.csv").write_bytes("id,title\n1,Pan\n2,Caf\u00e9\n3,Pot\n".encode("cp1252"))

    items = await collect(tmp_path, "legacy.csv")
    legacy = await collect(tmp_path, "legacy.csv", encoding="cp1252")

    assert [b.title for b in briefs(items)] == ["Pan", "Pot"]
    assert skipped(items) == [
        ("legacy.csv:3", "not utf-8-sig text; set 'encoding' to the file's encoding (e.g. cp1252)")
    ]
    assert [b.title for b in briefs(legacy)] == ["Pan", "Caf\u00e9", "Pot"]


async def test_duplicate_ids_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "dup.csv").write_text(
        "sku,title\nSKU-0,Zero\n\nSKU-1,First\nSKU-1,Second\n", encoding="utf-8"
    )

    items = await collect(tmp_path, "dup.csv", mapping={"id": "sku"})

    assert [b.title for b in briefs(items)] == ["Zero", "First"]
    assert skipped(items) == [("dup.csv:5", "duplicate id 'SKU-1' (first at row 4)")]


async def test_editing_a_row_changes_only_its_revision(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,title,price\n1,A,10\n2,B,20\n", encoding="utf-8")
    before = {b.id: b.revision for b in briefs(await collect(tmp_path, "p.csv"))}
    path.write_text("id,title,price\n1,A,10\n2,B,25\n", encoding="utf-8")
    after = {b.id: b.revision for b in briefs(await collect(tmp_path, "p.csv"))}

    assert before["catalog:p:1"] == after["catalog:p:1"]
    assert before["catalog:p:2"] != after["catalog:p:2"]


async def test_header_without_the_mapped_column_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,name\n1,A\n", encoding="utf-8")

    with pytest.raises(PluginError, match=r"no column 'title' \(for title\).*'id', 'name'"):
        await collect(tmp_path, "p.csv")


async def test_missing_file_is_a_plugin_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"catalog source: file not found: .*absent\.csv"):
        await collect(tmp_path, "absent.csv")


def test_unknown_brief_field_in_mapping_lists_the_valid_names() -> None:
    with pytest.raises(ValidationError) as caught:
        CatalogSource.Config.model_validate({"path": "p.csv", "mapping": {"headline": "name"}})

    message = str(caught.value)
    assert "unknown brief field(s) 'headline'" in message
    assert "valid names: " + ", ".join(BRIEF_FIELDS) in message


def test_unknown_suffix_names_it_and_the_choices() -> None:
    with pytest.raises(ValidationError) as caught:
        CatalogSource.Config.model_validate({"path": "products.xml"})

    message = str(caught.value)
    assert "suffix .xml" in message
    assert ".csv, .tsv, .json, .jsonl, .ndjson" in message
    assert "csv, tsv, json, jsonl" in message


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        CatalogSource.Config.model_validate({"path": "p.csv", "sheet": 1})


async def test_csv_is_read_as_a_stream(tmp_path: Path) -> None:
    """The first brief arrives while the writer still holds most of the file back.

    A source that read the whole file first would wait for the writer, which waits for the
    test: the timeouts turn that deadlock into a failure.
    """
    pipe = tmp_path / "live.csv"
    os.mkfifo(pipe)
    release = threading.Event()

    def writer() -> None:
        with pipe.open("w", encoding="utf-8") as out:
            out.write("id,title\n")
            out.writelines(f"{i},Item {i}\n" for i in range(5))
            out.flush()
            release.wait(timeout=30)
            out.writelines(f"{i},Item {i}\n" for i in range(5, 2000))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    stream = source(tmp_path, "live.csv").briefs(None)
    try:
        first = await asyncio.wait_for(anext(stream), timeout=10)
        assert release.is_set() is False
        release.set()
        rest = await asyncio.wait_for(drain(stream), timeout=10)
    finally:
        release.set()
        await stream.aclose()
        thread.join(timeout=10)

    assert isinstance(first, Brief) and first.id == "catalog:live:0"
    assert len(rest) == 1999
    assert all(isinstance(item, Brief) for item in rest)


async def drain(stream: AsyncGenerator[Brief | Skipped, None]) -> list[Brief | Skipped]:
    return [item async for item in stream]


async def test_closing_the_stream_stops_a_reader_blocked_on_a_full_buffer() -> None:
    """A consumer that stops early must not leave the reader thread (and its file) behind."""
    blocked, closed = threading.Event(), threading.Event()

    def rows() -> Iterator[int]:
        try:
            for n in itertools.count():
                if n == 3:  # 1 and 2 fill the buffer: handing over 3 blocks
                    blocked.set()
                yield n
        finally:
            closed.set()

    stream = in_thread(rows, buffer=2)
    assert await anext(stream) == 0
    assert await asyncio.to_thread(blocked.wait, 10)
    await stream.aclose()

    assert await asyncio.to_thread(closed.wait, 10)


def test_registered_through_entry_points() -> None:
    host = PluginHost.load(only=["markdown", "catalog"])

    assert {"markdown", "catalog"} <= set(host.sources)
    assert host.source("catalog") is CatalogSource
