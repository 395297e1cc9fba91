"""The ``markdown`` source, on real files: what maps where, and how bad files are reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reelpress import Brief, PluginContext, PluginError, Skipped
from reelpress.plugins import PluginHost
from reelpress_plugins.markdown import MarkdownSource, plain_text

ARTICLE = """\
---
title: Cast iron care
summary: How to keep a pan for life.
description: A longer description that is not the summary.
url: https://example.com/cast-iron
tags: [cookware, iron, cookware]
categories: ["Pots & Pans", Kitchen]
lang: de
image: img/pan.jpg
published: 2024-05-01
author: Ada
---
# A heading that is not the title

Body text.
"""


def context(tmp_path: Path) -> PluginContext:
    return PluginContext(
        pipeline="t",
        instance="x",
        base_dir=tmp_path,
        state_dir=tmp_path / "state",
        store_dir=tmp_path / "store",
    )


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


async def collect(tmp_path: Path, **options: Any) -> list[Brief | Skipped]:
    config = MarkdownSource.Config.model_validate({"path": "content", **options})
    source = MarkdownSource(config, context(tmp_path))
    return [item async for item in source.briefs(None)]


def by_id(items: list[Brief | Skipped]) -> dict[str, Brief]:
    return {item.id: item for item in items if isinstance(item, Brief)}


def skipped(items: list[Brief | Skipped]) -> dict[str, str]:
    return {item.location: item.reason for item in items if isinstance(item, Skipped)}


async def test_front_matter_maps_to_brief_fields(tmp_path: Path) -> None:
    write(tmp_path / "content", "guides/cast-iron.md", ARTICLE)

    [brief] = await collect(tmp_path)

    assert isinstance(brief, Brief)
    assert brief.id == "markdown:guides/cast-iron"
    assert brief.title == "Cast iron care"
    assert brief.summary == "How to keep a pan for life."
    assert brief.url == "https://example.com/cast-iron"
    assert brief.keywords == ("cookware", "iron")
    assert brief.category == "pots_pans"
    assert brief.locale == "de"
    assert brief.body.startswith("# A heading that is not the title")
    assert brief.body.endswith("Body text.")


async def test_relative_image_is_resolved_and_urls_are_kept(tmp_path: Path) -> None:
    write(tmp_path / "content", "guides/cast-iron.md", ARTICLE)
    write(
        tmp_path / "content", "remote.md", "---\ntitle: R\nimage: https://cdn.example/a.png\n---\n"
    )

    briefs = by_id(await collect(tmp_path))

    expected = (tmp_path / "content" / "guides" / "img" / "pan.jpg").resolve()
    assert briefs["markdown:guides/cast-iron"].image == str(expected)
    assert briefs["markdown:remote"].image == "https://cdn.example/a.png"


async def test_other_keys_land_in_fields_as_json_values(tmp_path: Path) -> None:
    write(tmp_path / "content", "guides/cast-iron.md", ARTICLE)

    [brief] = await collect(tmp_path)

    assert isinstance(brief, Brief)
    assert brief.fields == {
        "author": "Ada",
        "published": "2024-05-01",
        "description": "A longer description that is not the summary.",
    }


async def test_front_matter_id_and_comma_keywords(tmp_path: Path) -> None:
    write(
        tmp_path / "content",
        "a.md",
        "---\nid: post-7\ntitle: 1984\nkeywords: a, b;c\ncategory: News\n---\ntext\n",
    )

    [brief] = await collect(tmp_path, id_prefix="blog")

    assert isinstance(brief, Brief)
    assert (brief.id, brief.title) == ("post-7", "1984")
    assert brief.keywords == ("a", "b", "c")
    assert brief.category == "news"


async def test_title_and_summary_fall_back_to_the_text(tmp_path: Path) -> None:
    text = """\
---
tags: x
---

```python
# a comment, not a heading
```

# The *real* title

- a list is not a paragraph

First paragraph with **bold**, a [link](https://x.example)
and a second line.

Second paragraph.
"""
    write(tmp_path / "content", "post.md", text)

    [brief] = await collect(tmp_path)

    assert isinstance(brief, Brief)
    assert brief.title == "The real title"
    assert brief.summary == "First paragraph with bold, a link and a second line."


async def test_file_without_front_matter(tmp_path: Path) -> None:
    write(tmp_path / "content", "plain.md", "# Plain\n\nJust *text* & more.\n")

    [brief] = await collect(tmp_path)

    assert isinstance(brief, Brief)
    assert (brief.title, brief.summary) == ("Plain", "Just text & more.")
    assert brief.body == "# Plain\n\nJust *text* & more."
    assert brief.fields == {}


def test_plain_text_strips_markup_but_not_words() -> None:
    assert plain_text("a `code` ![alt](x.png) <em>b</em> snake_case_name \\*star\\*") == (
        "a code alt b snake_case_name *star*"
    )


async def test_drafts_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "content", "draft.md", "---\ntitle: Soon\ndraft: true\n---\ntext\n")
    write(tmp_path / "content", "live.md", "---\ntitle: Now\ndraft: false\n---\ntext\n")

    items = await collect(tmp_path)

    assert skipped(items) == {"draft.md:3": "draft: true"}
    assert list(by_id(items)) == ["markdown:live"]
    assert by_id(items)["markdown:live"].fields == {}


async def test_invalid_yaml_points_at_the_file_line(tmp_path: Path) -> None:
    write(tmp_path / "content", "bad.md", "---\ntitle: Fine\ntags: [a, b\nurl: x\n---\n")

    [item] = await collect(tmp_path)

    assert isinstance(item, Skipped)
    assert item.location == "bad.md:4"
    assert item.reason.startswith("front matter is not valid YAML: expected ',' or ']'")
    assert "line 3" in item.reason


async def test_front_matter_must_be_a_mapping(tmp_path: Path) -> None:
    write(tmp_path / "content", "list.md", "---\n- a\n- b\n---\n# T\n")

    assert skipped(await collect(tmp_path)) == {
        "list.md:2": "front matter must be a mapping of 'key: value' lines, got a list"
    }


async def test_unterminated_front_matter(tmp_path: Path) -> None:
    write(tmp_path / "content", "open.md", "---\ntitle: Never closed\n\n# Body\n")

    [item] = await collect(tmp_path)

    assert isinstance(item, Skipped)
    assert item.location == "open.md:1"
    assert "not closed" in item.reason


async def test_non_utf8_file_is_skipped_with_its_line(tmp_path: Path) -> None:
    write(tmp_path / "content", "latin1.md", "---\ntitle: Caf\u00e9\n---\n".encode("latin-1"))

    [item] = await collect(tmp_path)

    assert isinstance(item, Skipped)
    assert item.location == "latin1.md:2"
    assert item.reason.startswith("not UTF-8 text: byte 0xe9")


async def test_missing_title_is_skipped(tmp_path: Path) -> None:
    write(tmp_path / "content", "untitled.md", "---\nsummary: s\n---\n## Only a subheading\n")

    assert skipped(await collect(tmp_path)) == {
        "untitled.md": "no title: expected a 'title' in the front matter or a '# ' heading"
    }


async def test_validation_error_names_the_field_and_key_line(tmp_path: Path) -> None:
    write(tmp_path / "content", "badurl.md", "---\ntitle: T\nurl: [not, a, url]\n---\n")

    [item] = await collect(tmp_path)

    assert isinstance(item, Skipped)
    assert item.location == "badurl.md:3"
    assert item.reason.startswith("invalid url (from front matter key 'url'):")


async def test_yaml_yes_no_in_a_text_field_gets_a_hint(tmp_path: Path) -> None:
    write(tmp_path / "content", "norway.md", "---\ntitle: Fjords\nlang: no\n---\n")

    [item] = await collect(tmp_path)

    assert isinstance(item, Skipped)
    assert item.location == "norway.md:3"
    assert item.reason.startswith("invalid locale (from front matter key 'lang'): expected text")
    assert "quote the value" in item.reason


async def test_bad_files_do_not_stop_the_others_and_order_is_sorted(tmp_path: Path) -> None:
    folder = tmp_path / "content"
    write(folder, "b/two.md", "# Two\n")
    write(folder, "c.md", "---\ntitle: [unclosed\n---\n")
    write(folder, "a.md", "# One\n")
    write(folder, "b/one.md", b"# \xff\n")
    write(folder, "notes.txt", "# Not markdown\n")

    items = await collect(tmp_path)

    where = [item.id if isinstance(item, Brief) else item.location for item in items]
    # written out of order, read in path order; notes.txt is not matched by the glob
    assert where == ["markdown:a", "b/one.md:1", "markdown:b/two", "c.md:2"]
    assert [type(i) for i in items] == [Brief, Skipped, Brief, Skipped]


async def test_glob_option_selects_files(tmp_path: Path) -> None:
    write(tmp_path / "content", "top.md", "# Top\n")
    write(tmp_path / "content", "sub/deep.md", "# Deep\n")

    items = await collect(tmp_path, glob="*.md")

    assert list(by_id(items)) == ["markdown:top"]


async def test_changing_the_file_changes_the_revision(tmp_path: Path) -> None:
    path = write(tmp_path / "content", "post.md", "# Title\n\nOne.\n")
    [first] = await collect(tmp_path)
    [again] = await collect(tmp_path)
    path.write_text("# Title\n\nTwo.\n", encoding="utf-8")
    [changed] = await collect(tmp_path)

    assert isinstance(first, Brief) and isinstance(again, Brief) and isinstance(changed, Brief)
    assert first.revision == again.revision
    assert first.revision is not None and len(first.revision) == 16
    assert changed.revision != first.revision
    assert changed.id == first.id


async def test_missing_folder_is_a_plugin_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"markdown source: folder not found: .*nowhere"):
        await collect(tmp_path, path="nowhere")


def test_absolute_glob_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="relative to 'path'"):
        MarkdownSource.Config.model_validate({"path": "x", "glob": "/etc/*.md"})


def test_registered_through_entry_points() -> None:
    host = PluginHost.load(only=["markdown", "catalog"])

    assert {"markdown", "catalog"} <= set(host.sources)
    assert host.source("markdown") is MarkdownSource
    assert not host.failed()
