"""Prompt templates: built-ins for every platform and category, content that stays data, a
sandbox that stops runaway templates, errors that name file, line and field, and the filters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from reelpress.errors import TemplateError
from reelpress.models import Brief, Platform, Texts
from reelpress.plugins import PluginHost
from reelpress.prompts import (
    PromptTemplates,
    builtin_templates_dir,
    hashtag,
    parse_hashtags,
    plain,
    sentences,
    words,
)
from reelpress.rendering import fit_texts

BUILTIN = builtin_templates_dir()
CATEGORIES = sorted(p.stem for p in (BUILTIN / "categories").glob("*.j2"))
_HOST = PluginHost.load(only=["platforms"])
PLATFORMS: dict[str, Platform] = {name: r.value for name, r in _HOST.platforms.items()}

BRIEF = Brief(
    id="test:1",
    title="Cast-iron skillet",
    summary="A **heavy** pan that lasts for ever. It sears, bakes and fries. Seasoned at home.",
    keywords=["cast iron", "cookware"],
    category="cookware",
    url="https://shop.example.com/skillet",
)


def style_value(category: str, name: str) -> str:
    """A ``{% set name = "..." %}`` value, read from the category file itself."""
    text = (BUILTIN / "categories" / f"{category}.j2").read_text(encoding="utf-8")
    match = re.search(rf'{{% set {name} = "([^"]*)" %}}', text)
    assert match, f"{category}.j2 sets no {name}"
    return match.group(1)


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    (folder / "platforms").mkdir(parents=True)
    (folder / "categories").mkdir()
    return folder


def user_template(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(body, encoding="utf-8")
    return path


def render_block(folder: Path, prompt: str, brief: Brief = BRIEF, **kwargs: Any) -> Texts:
    """Render a user platform template whose prompt block is ``prompt``."""
    user_template(
        folder,
        "platforms/probe.j2",
        '{% extends "base.j2" %}\n{% block prompt %}' + prompt + "{% endblock %}\n",
    )
    return PromptTemplates([folder], **kwargs).render(brief, Platform(name="probe"))


# --- the built-in templates -------------------------------------------------------------------


def test_there_are_builtin_styles_for_the_documented_categories() -> None:
    assert {"default", "food", "news", "travel"} <= set(CATEGORIES)


@pytest.mark.parametrize("category", [*CATEGORIES, "underwater_basketry"])
@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_every_builtin_platform_renders_every_category_style(platform: str, category: str) -> None:
    style = category if category in CATEGORIES else "default"
    brief = BRIEF.model_copy(update={"category": category})
    texts = PromptTemplates([]).render(brief, PLATFORMS[platform])
    assert BRIEF.title in texts.prompt
    assert style_value(style, "setting") in texts.prompt
    assert style_value(style, "negative") in texts.negative_prompt
    assert "\n" not in texts.prompt and "  " not in texts.prompt
    assert texts.title.startswith(BRIEF.title)


def test_check_compiles_every_builtin_template() -> None:
    templates = PromptTemplates([])
    templates.check(PLATFORMS.values())
    assert {f"platforms/{name}.j2" for name in PLATFORMS} <= set(templates.list())


def test_builtin_hashtags_come_from_the_keywords() -> None:
    texts = PromptTemplates([]).render(BRIEF, PLATFORMS["youtube"])
    assert texts.hashtags == ("#CastIron", "#Cookware")


# --- content is data, never code --------------------------------------------------------------

INJECTIONS = {
    "title": "{{ 7*7 }} pans",
    "summary": "{{ ''.__class__ }} and {% for x in range(3) %}X{% endfor %}.",
    "body": "{{ self.__init__.__globals__ }}",
    "colour": "{{ 7*7 }}{{ cycler.__init__.__globals__.os }}",
    "keyword": "{{7*7}}",
}


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_template_syntax_in_content_is_rendered_literally_on_every_platform(
    platform: str,
) -> None:
    brief = Brief(
        id="x:1",
        title=INJECTIONS["title"],
        summary=INJECTIONS["summary"],
        body=INJECTIONS["body"],
        keywords=[INJECTIONS["keyword"]],
    )
    texts = PromptTemplates([]).render(brief, PLATFORMS[platform])
    everything = repr(texts)
    assert "49" not in everything
    assert "XXX" not in everything and "<class" not in everything
    assert texts.title.startswith("{{ 7*7 }} pans")
    assert "{{ 7*7 }} pans" in texts.prompt
    if platform != "hero":  # the hero caption is the summary's first sentence
        assert "{{ 7*7 }} pans" in texts.caption or "{{ ''.__class__ }}" in texts.caption


def test_fields_with_template_syntax_stay_literal_in_a_user_template(user_dir: Path) -> None:
    brief = BRIEF.model_copy(update={"fields": {"colour": INJECTIONS["colour"]}})
    texts = render_block(user_dir, "Colour: {{ brief.fields.colour }}", brief)
    assert texts.prompt == "Colour: " + INJECTIONS["colour"]


# --- the sandbox ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ brief.title.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{% set items = [] %}{{ items.append(1) }}",
        "{{ 'a' * 10**7 }}",
        "{{ 10**7 * 'a' }}",
        "{{ [1] * 5000 * 5000 }}",
        "{{ 2 ** 1000 }}",
        "{{ ((10 ** 60) ** 60) ** 60 }}",
        "{% for i in range(100000) %}abcdefgh{% endfor %}",
        "{{ range(100000)|join(',') }}",
        "{{ '%999999999s'|format('a') }}",
        "{{ '%999999999s' % 'a' }}",
        "{{ 'a'.ljust(10 ** 8) }}",
        "{{ '{:>99999999}'.format('a') }}",
        "{{ 'a'|center(100000000) }}",
        "{{ ('a\n' * 5000)|indent(100000) }}",
        "{{ range(100000)|map('string')|join('x' * 9000) }}",
        "{{ ('x' * 9000).join(range(100000)|map('string')) }}",
        "{{ ('ab'|replace('', 'x' * 9000))|replace('', 'y' * 9000) }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "{% macro grow(s, n) %}{{ grow(s ~ s, n - 1) if n else s|length }}{% endmacro %}"
        "{{ grow('ab', 40) }}",
    ],
)
def test_the_sandbox_stops_a_template_and_names_its_file(user_dir: Path, expression: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_block(user_dir, expression)
    message = str(caught.value)
    assert "platforms/probe.j2" in message
    assert "not allowed in a template" in message or "Range too big" in message


def test_range_beyond_the_sandbox_limit_is_refused(user_dir: Path) -> None:
    with pytest.raises(TemplateError, match="Range too big"):
        render_block(user_dir, "{% for i in range(10**9) %}{% endfor %}")


def test_placeholder_text_generator_is_not_available(user_dir: Path) -> None:
    with pytest.raises(TemplateError, match="undefined name 'lipsum'"):
        render_block(user_dir, "{{ lipsum(100000) }}")


def test_ordinary_arithmetic_formatting_and_joining_still_work(user_dir: Path) -> None:
    texts = render_block(
        user_dir,
        "{{ '%05d|'|format(42) }} {{ '%-3s|' % 'ab' }} {{ '{:*>4}'.format('x') }} {{ 2 ** 10 }}"
        " {{ '-' * 3 }} {{ 'ab'.center(6, '*') }} {{ brief.keywords|join(', ') }}"
        " {{ 'a.b'.replace('.', '. ') }} {{ (10 ** 10) ** 2 }}"
        "{% set ns = namespace(n='') %}{% for k in brief.keywords %}{% set ns.n = ns.n ~ k[:2] %}"
        "{% endfor %} {{ ns.n }}",
    )
    assert texts.prompt == (
        "00042| ab | ***x 1024 --- **ab** cast iron, cookware a. b 100000000000000000000 caco"
    )


# --- errors that say where --------------------------------------------------------------------


def test_a_missing_field_names_template_file_line_and_field(user_dir: Path) -> None:
    user_template(
        user_dir,
        "platforms/shop.j2",
        '{% extends "base.j2" %}\n'
        "{% block prompt %}\n"
        "A video about {{ brief.title }}.\n"
        "In {{ brief.fields.colour }}.\n"
        "{% endblock %}\n",
    )
    with pytest.raises(TemplateError) as caught:
        PromptTemplates([user_dir]).render(BRIEF, Platform(name="shop"))
    error = caught.value
    assert error.template is not None and error.template.endswith("platforms/shop.j2")
    assert error.line == 4
    assert "brief.fields.colour" in str(error)
    assert str(error).startswith(f"{error.template}:4: missing field 'colour'")


def test_an_undefined_name_is_named(user_dir: Path) -> None:
    with pytest.raises(TemplateError, match="undefined name 'product'"):
        render_block(user_dir, "{{ product.name }}")


def test_a_syntax_error_fails_check_before_any_render_and_names_file_and_line(
    user_dir: Path,
) -> None:
    user_template(
        user_dir,
        "platforms/tiktok.j2",
        '{% extends "base.j2" %}\n{% block prompt %}\n{% if %}yes{% endif %}\n{% endblock %}\n',
    )
    templates = PromptTemplates([user_dir])
    with pytest.raises(TemplateError) as caught:
        templates.check([PLATFORMS["youtube"], PLATFORMS["tiktok"]])
    assert caught.value.template is not None
    assert caught.value.template.endswith("platforms/tiktok.j2")
    assert caught.value.line == 3
    assert "syntax error" in str(caught.value)


def test_a_syntax_error_in_a_category_style_fails_check(user_dir: Path) -> None:
    user_template(user_dir, "categories/pottery.j2", '{% set setting = "wheel" %}\n{% set %}\n')
    with pytest.raises(TemplateError) as caught:
        PromptTemplates([user_dir]).check([PLATFORMS["youtube"]])
    assert caught.value.template is not None
    assert caught.value.template.endswith("categories/pottery.j2")
    assert caught.value.line == 2


def test_a_missing_platform_template_names_the_platform_and_the_search_path(
    user_dir: Path,
) -> None:
    with pytest.raises(TemplateError) as caught:
        PromptTemplates([user_dir]).check([Platform(name="vimeo")])
    message = str(caught.value)
    assert "platform 'vimeo' needs template 'platforms/vimeo.j2'" in message
    assert str(user_dir) in message and str(BUILTIN) in message


# --- the search path --------------------------------------------------------------------------


def test_a_user_platform_template_overrides_the_builtin_one(user_dir: Path) -> None:
    mine = user_template(
        user_dir,
        "platforms/tiktok.j2",
        '{% extends "base.j2" %}{% block prompt %}My own take on {{ brief.title }}{% endblock %}',
    )
    templates = PromptTemplates([user_dir])
    assert templates.render(BRIEF, PLATFORMS["tiktok"]).prompt == f"My own take on {BRIEF.title}"
    assert templates.origin("platforms/tiktok.j2") == mine
    assert templates.origin("platforms/youtube.j2") == BUILTIN / "platforms" / "youtube.j2"
    assert "My own take" not in templates.render(BRIEF, PLATFORMS["youtube"]).prompt


def test_a_user_category_style_is_used_for_its_category_and_may_replace_a_builtin(
    user_dir: Path,
) -> None:
    user_template(
        user_dir,
        "categories/pottery.j2",
        '{% set setting = "a potter\'s wheel in a sunlit studio" %}{% set lighting = "warm" %}'
        '{% set camera = "close" %}{% set mood = "calm" %}{% set negative = "cracks" %}',
    )
    user_template(
        user_dir,
        "categories/cookware.j2",
        '{% set setting = "my own kitchen" %}{% set lighting = "warm" %}'
        '{% set camera = "close" %}{% set mood = "calm" %}{% set negative = "smoke" %}',
    )
    templates = PromptTemplates([user_dir])
    brief = Brief(id="x:2", title="A vase", category="Pottery")  # slugged to "pottery"
    pottery = templates.render(brief, PLATFORMS["youtube"])
    assert "a potter's wheel in a sunlit studio" in pottery.prompt
    assert pottery.negative_prompt.startswith("cracks,")
    # a prepare_brief hook changes briefs with model_copy, which skips the slugging
    copied = templates.render(BRIEF.model_copy(update={"category": "Pottery"}), PLATFORMS["hero"])
    assert "a potter's wheel in a sunlit studio" in copied.prompt
    cookware = templates.render(BRIEF, PLATFORMS["youtube"])
    assert "my own kitchen" in cookware.prompt
    assert style_value("cookware", "setting") not in cookware.prompt


def test_a_plugin_filter_can_be_used(user_dir: Path) -> None:
    texts = render_block(
        user_dir, "{{ brief.title|shout }}", filters={"shout": lambda v: str(v).upper() + "!"}
    )
    assert texts.prompt == "CAST-IRON SKILLET!"


@pytest.mark.parametrize("name", ["hashtag", "plain", "words", "upper", "format"])
def test_a_plugin_filter_may_not_replace_a_builtin_filter(name: str) -> None:
    with pytest.raises(TemplateError, match=f"may not replace the built-in '{name}'"):
        PromptTemplates([], filters={name: lambda v: v})


# --- whitespace -------------------------------------------------------------------------------


def test_prompt_and_title_are_one_line_and_the_caption_keeps_its_paragraphs(
    user_dir: Path,
) -> None:
    user_template(
        user_dir,
        "platforms/spaced.j2",
        '{% extends "base.j2" %}'
        "{% block prompt %}\n  A   wide\n\n\tshot  \n{% endblock %}"
        "{% block title %}  Big\n   title {% endblock %}"
        "{% block caption %}\n\nFirst   line\nsecond line\n\n\n\n  Last   paragraph  \n"
        "{% endblock %}",
    )
    texts = PromptTemplates([user_dir]).render(BRIEF, Platform(name="spaced"))
    assert texts.prompt == "A wide shot"
    assert texts.title == "Big title"
    assert texts.caption == "First line\nsecond line\n\nLast paragraph"


# --- filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("running shoes", "#RunningShoes"),
        ("cast-iron & co.", "#CastIronCo"),
        ("çà va", "#ÇàVa"),
        ("日本 旅行", "#日本旅行"),
        ("snake_case", "#SnakeCase"),
        ("!!!", ""),
    ],
)
def test_hashtag_filter(value: str, expected: str) -> None:
    assert hashtag(value) == expected


def test_sentences_filter_keeps_the_first_n_sentences() -> None:
    text = "One thing. Another! A third? A fourth."
    assert sentences(text) == "One thing."
    assert sentences(text, 3) == "One thing. Another! A third?"
    assert sentences(text, 0) == ""
    assert sentences("日本です。東京です。", 1) == "日本です。"


def test_words_filter_cuts_with_an_ellipsis_only_when_it_cuts() -> None:
    assert words("a b c d e", 3) == "a b c…"
    assert words("a b c", 3) == "a b c"
    assert words("  spaced   out  words ", 2) == "spaced out…"


def test_plain_strips_markdown_and_html_but_keeps_names_and_braces() -> None:
    text = (
        "# Heading\n> a quote\n- **bold** and *em* and `code` and ~~gone~~\n"
        "1. see [the docs](https://x.example/a_b) and <a href='x'>link</a><br/>\n"
        "keep snake_case_name, __dunder__ and {{ ''.__class__ }}"
    )
    assert plain(text) == (
        "Heading a quote bold and em and code and gone see the docs and link "
        "keep snake_case_name, __dunder__ and {{ ''.__class__ }}"
    )


def test_parse_hashtags_adds_hash_and_drops_case_insensitive_duplicates() -> None:
    assert parse_hashtags("#Running running #RUNNING shoes, #Über über #日本") == (
        "#Running",
        "#shoes",
        "#Über",
        "#日本",
    )
    assert parse_hashtags("#a #b #c #d", limit=2) == ("#a", "#b")
    assert parse_hashtags("#2026 #100 deals #5G") == ("#deals", "#5G")  # no number-only tags
    assert parse_hashtags("  \n ") == ()


# --- fitting texts to a platform (planner.fit_texts) ------------------------------------------


def test_texts_within_the_limits_are_left_alone() -> None:
    texts = Texts("prompt", "", "Short title", "Short caption", ("#a", "#b"))
    assert fit_texts(texts, PLATFORMS["tiktok"]) == (texts, False)


def test_the_title_is_cut_at_a_word_boundary_with_an_ellipsis() -> None:
    platform = Platform(name="p", title_max=22)
    texts = Texts("prompt", title="The quick brown fox jumps over the lazy dog")
    fitted, changed = fit_texts(texts, platform)
    assert changed
    assert fitted.title == "The quick brown fox…"
    assert len(fitted.title) <= 22


def test_a_cut_that_falls_at_a_word_end_keeps_the_whole_word() -> None:
    platform = Platform(name="p", title_max=20)
    fitted, _ = fit_texts(Texts("prompt", title="The quick brown fox jumps over"), platform)
    assert fitted.title == "The quick brown fox…"


def test_hashtags_never_crowd_out_the_caption() -> None:
    platform = Platform(name="p", caption_max=60, hashtags_max=30)
    tags = tuple(f"#Tag{n}" for n in range(12))
    fitted, _ = fit_texts(Texts("prompt", caption="A caption worth keeping", hashtags=tags),
                          platform)  # fmt: skip
    assert fitted.caption == "A caption worth keeping"
    assert fitted.hashtags == tags[: len(fitted.hashtags)] and len(fitted.hashtags) < 12
    assert len(fitted.caption) + 2 + len(" ".join(fitted.hashtags)) <= 60
    assert len(" ".join(fitted.hashtags)) + 2 <= 30  # at most half the room


def test_the_caption_leaves_room_for_the_hashtags_it_is_published_with() -> None:
    platform = Platform(name="p", caption_max=60, hashtags_max=5)
    tags = ("#One", "#Two")
    caption = "Every word in this caption is a whole word and nothing is split midway"
    fitted, changed = fit_texts(Texts("prompt", caption=caption, hashtags=tags), platform)
    assert changed and fitted.hashtags == tags
    published = fitted.caption + "\n\n" + " ".join(fitted.hashtags)
    assert len(published) <= 60
    assert fitted.caption.endswith("…")
    kept = fitted.caption[:-1]
    assert caption.startswith(kept) and caption[len(kept)] == " "  # a whole word was kept


def test_hashtags_beyond_the_platform_count_are_dropped_in_order() -> None:
    platform = Platform(name="p", hashtags_max=2)
    fitted, changed = fit_texts(Texts("prompt", hashtags=("#a", "#b", "#c")), platform)
    assert changed and fitted.hashtags == ("#a", "#b")
    none, _ = fit_texts(Texts("prompt", hashtags=("#a",)), Platform(name="q", hashtags_max=0))
    assert none.hashtags == ()
