"""Loading pipeline.yaml: defaults, interpolation, and errors that name file, path and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reelpress.config import PipelineFile, PipelineSpec, load_pipeline
from reelpress.errors import ConfigError, ConfigIssue
from reelpress.plugins import PluginHost
from reelpress_plugins.filesystem import FilesystemSink
from reelpress_plugins.markdown import MarkdownSource
from reelpress_plugins.preview import PreviewProvider

MINIMAL = """\
sources:
  - use: markdown
    path: posts
platforms: [tiktok]
"""
SOURCE = "sources: [{use: markdown, path: posts}]\n"


@pytest.fixture(scope="module")
def builtins() -> PluginHost:
    return PluginHost.load(only=["platforms", "markdown", "catalog", "preview", "filesystem"])


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    return tmp_path / "project" / "pipeline.yaml"


def load(text: str, host: PluginHost, file: Path) -> PipelineSpec:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_pipeline(file, host)


def issues_of(text: str, host: PluginHost, file: Path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load(text, host, file)
    return caught.value.issues


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    for number, line in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def by_path(issues: list[ConfigIssue]) -> dict[str, ConfigIssue]:
    return {issue.path: issue for issue in issues}


# --- a valid pipeline -------------------------------------------------------------------------


def test_minimal_pipeline_gets_preview_filesystem_and_a_ledger_next_to_the_file(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    spec = load(MINIMAL, builtins, pipeline_file)
    folder = pipeline_file.parent.resolve()
    assert spec.name == "project"
    assert spec.base_dir == folder
    assert spec.provider.cls is PreviewProvider and spec.provider.path == "provider"
    assert [(s.cls, s.name, s.path) for s in spec.sinks] == [
        (FilesystemSink, "filesystem", "sinks[0]")
    ]
    source = spec.sources[0]
    assert (source.cls, source.kind, source.path) == (MarkdownSource, "source", "sources[0]")
    assert source.config.path == Path("posts")  # type: ignore[attr-defined]
    assert spec.ledger_url == f"sqlite+aiosqlite:///{folder / 'reelpress.db'}"
    assert spec.store_dir == folder / ".reelpress" / "store"
    assert spec.state_dir == folder / ".reelpress"
    assert spec.templates_dir is None
    assert [p.name for p in spec.platforms] == ["tiktok"]
    assert (spec.limits.rate, spec.limits.concurrency, spec.limits.max_attempts) == (None, None, 3)
    assert spec.budget == []


def test_a_templates_folder_next_to_the_file_is_used_without_being_named(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    (pipeline_file.parent / "templates").mkdir(parents=True)
    spec = load(MINIMAL, builtins, pipeline_file)
    assert spec.templates_dir == pipeline_file.parent.resolve() / "templates"


def test_a_templates_setting_that_is_no_folder_is_an_error(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = MINIMAL + "templates: my-templates\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == "templates"
    assert issue.line == line_of(text, "templates:")
    assert "folder not found" in issue.message and "my-templates" in issue.message


def test_name_provider_options_and_store_are_taken_from_the_file(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    spec = load(
        MINIMAL
        + "name: shop-videos\nprovider: {use: preview, crf: 30}\nstore: /var/tmp/rp-store\n",
        builtins,
        pipeline_file,
    )
    assert spec.name == "shop-videos"
    assert spec.provider.config.crf == 30  # type: ignore[attr-defined]
    assert spec.store_dir == Path("/var/tmp/rp-store")


# --- files that cannot be read ----------------------------------------------------------------


def test_a_missing_file_is_named(builtins: PluginHost, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_pipeline(missing, builtins)
    assert caught.value.issues == [ConfigIssue("", "file not found", str(missing))]


def test_malformed_yaml_names_file_and_line(builtins: PluginHost, pipeline_file: Path) -> None:
    text = "sources:\n  - use: markdown\n    path: [posts\nplatforms: [tiktok]\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.file == str(pipeline_file)
    assert issue.line == 4  # where the parser found the unclosed bracket's problem
    assert issue.message.startswith("invalid YAML:")
    assert f"{pipeline_file}:4: invalid YAML" in str(ConfigError([issue]))


def test_yaml_tags_that_would_build_python_objects_are_refused(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    (issue,) = issues_of("!!python/object/apply:os.system ['true']\n", builtins, pipeline_file)
    assert "invalid YAML" in issue.message and issue.line == 1


def test_the_top_level_must_be_a_mapping(builtins: PluginHost, pipeline_file: Path) -> None:
    (issue,) = issues_of("- tiktok\n- youtube\n", builtins, pipeline_file)
    assert issue.message == "expected a mapping of settings at the top level"
    assert (issue.path, issue.line) == ("", 1)


def test_an_empty_file_asks_for_sources_and_platforms(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    issues = issues_of("", builtins, pipeline_file)
    assert {(i.path, i.message) for i in issues} == {
        ("sources", "required key is missing"),
        ("platforms", "required key is missing"),
    }


def test_an_alias_that_contains_itself_is_an_error_not_a_crash(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    (issue,) = issues_of("sources: &loop [*loop]\nplatforms: [tiktok]\n", builtins, pipeline_file)
    assert "refers to a value that contains it" in issue.message
    assert issue.path == "sources[0]"


def test_an_alias_bomb_is_refused_quickly(builtins: PluginHost, pipeline_file: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")  # 10**9 values in all
    (issue,) = issues_of("\n".join(lines) + "\n", builtins, pipeline_file)
    assert "more than 100,000 values" in issue.message


def test_yaml_nested_too_deeply_is_an_error_not_a_crash(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    (issue,) = issues_of("sources: " + "[" * 2000 + "]" * 2000 + "\n", builtins, pipeline_file)
    assert "nested too deeply" in issue.message


# --- unknown keys and names -------------------------------------------------------------------


def test_unknown_top_level_key_is_reported_at_its_line_with_a_suggestion_and_the_allowed_keys(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = MINIMAL + "sink:\n  - use: filesystem\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == "sink"
    assert issue.line == line_of(text, "sink:")
    assert "unknown key (did you mean 'sinks'?)" in issue.message
    allowed = ", ".join(sorted(PipelineFile.model_fields))
    assert issue.message.endswith(f"expected one of: {allowed}")


def test_unknown_key_in_a_plugin_section_names_its_dotted_path_and_line(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = MINIMAL + "sinks:\n  - use: filesystem\n    pth: out\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == "sinks[0].pth"
    assert issue.line == line_of(text, "pth:")
    assert "did you mean 'path'?" in issue.message
    assert "expected one of: gallery, link, path" in issue.message


def test_a_bad_option_value_in_a_plugin_section_is_shown_with_its_path(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = MINIMAL + "provider:\n  use: preview\n  crf: 99\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert (issue.path, issue.line) == ("provider.crf", line_of(text, "crf:"))
    assert "less than or equal to 51" in issue.message and "(got 99)" in issue.message


@pytest.mark.parametrize(
    ("section", "path", "kind", "available", "close"),
    [
        (
            "sources:\n  - use: markdwn\n",
            "sources[0].use",
            "source",
            "catalog, markdown",
            "markdown",
        ),
        ("provider:\n  use: previw\n", "provider.use", "provider", "preview", "preview"),
        ("sinks:\n  - use: s3bucket\n", "sinks[0].use", "sink", "filesystem", None),
    ],
)
def test_unknown_plugin_name_lists_the_available_ones_and_suggests_a_close_one(
    builtins: PluginHost,
    pipeline_file: Path,
    section: str,
    path: str,
    kind: str,
    available: str,
    close: str | None,
) -> None:
    text = "platforms: [tiktok]\n" + section
    if not section.startswith("sources"):
        text += "sources:\n  - use: markdown\n    path: posts\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == path
    assert issue.line == line_of(text, "use:")
    assert f"unknown {kind} " in issue.message
    assert f"available: {available}" in issue.message
    if close:
        assert f"did you mean {close!r}?" in issue.message
    else:
        assert "did you mean" not in issue.message


def test_a_plugin_section_without_use_says_what_to_write(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = "sources:\n  - path: posts\nplatforms: [tiktok]\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == "sources[0]"
    assert issue.line == 2
    assert issue.message == "each source needs 'use: <source name>'; available: catalog, markdown"


# --- platforms --------------------------------------------------------------------------------


def test_unknown_platform_preset_lists_the_presets_and_suggests_one(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = "sources: [{use: markdown, path: posts}]\nplatforms:\n  - youtube\n  - tiktk\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert (issue.path, issue.line) == ("platforms[1]", 4)
    assert "unknown platform 'tiktk'" in issue.message
    presets = "hero, instagram_reels, linkedin, tiktok, youtube, youtube_shorts"
    assert f"available: {presets}" in issue.message
    assert "did you mean 'tiktok'?" in issue.message


def test_overriding_a_preset_keeps_its_template_label_and_other_fields(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = "sources: [{use: markdown, path: posts}]\nplatforms: [{name: tiktok, duration_s: 6}]\n"
    (tiktok,) = load(text, builtins, pipeline_file).platforms
    preset = builtins.platforms["tiktok"].value
    assert tiktok.duration_s == 6
    assert tiktok.template == "platforms/tiktok.j2"
    assert tiktok == preset.model_copy(update={"duration_s": 6})


def test_a_new_platform_extending_a_preset_uses_the_preset_template(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = SOURCE + "platforms: [{name: shorts_4s, extends: youtube_shorts, duration_s: 4}]\n"
    (platform,) = load(text, builtins, pipeline_file).platforms
    preset = builtins.platforms["youtube_shorts"].value
    assert platform.name == "shorts_4s"
    assert platform.template == "platforms/youtube_shorts.j2"
    assert platform.label == "Shorts 4S"  # its own, not the preset's "YouTube Shorts"
    assert (platform.aspect_ratio, platform.duration_s) == (preset.aspect_ratio, 4)
    assert platform.caption_max == preset.caption_max


def test_a_new_platform_without_extends_has_a_template_of_its_own_name(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = SOURCE + "platforms: [{name: square, aspect_ratio: '1:1'}]\n"
    (platform,) = load(text, builtins, pipeline_file).platforms
    assert (platform.template, platform.aspect_ratio) == ("platforms/square.j2", "1:1")


def test_invalid_platform_values_name_the_path_and_the_value(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = (
        SOURCE + "platforms:\n"
        "  - name: tiktok\n"
        "    aspect_ratio: 16x9\n"
        "  - name: youtube\n"
        "    resolution: 2k\n"
    )
    issues = by_path(issues_of(text, builtins, pipeline_file))
    assert set(issues) == {"platforms[0].aspect_ratio", "platforms[1].resolution"}
    ratio, resolution = issues["platforms[0].aspect_ratio"], issues["platforms[1].resolution"]
    assert ratio.message == "expected an aspect ratio like '16:9' or '9:16', got '16x9'"
    assert resolution.message == "expected one of 480p, 720p, 1080p, 4k, got '2k'"
    assert (ratio.line, resolution.line) == (4, 6)


@pytest.mark.parametrize(
    ("extends", "expected"),
    [
        ("youtub", "unknown platform 'youtub'"),
        ("[youtube]", "expected the name of a platform to start from"),
    ],
)
def test_extends_must_name_a_known_platform(
    builtins: PluginHost, pipeline_file: Path, extends: str, expected: str
) -> None:
    text = (
        f"sources: [{{use: markdown, path: posts}}]\nplatforms: [{{name: x, extends: {extends}}}]\n"
    )
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == "platforms[0].extends"
    assert expected in issue.message


def test_a_platform_listed_twice_is_an_error(builtins: PluginHost, pipeline_file: Path) -> None:
    text = "sources: [{use: markdown, path: posts}]\nplatforms: [tiktok, {name: tiktok, fps: 30}]\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == "platforms[1]"
    assert issue.message == "platform 'tiktok' is listed twice"


def test_two_sinks_with_the_same_name_are_an_error_until_one_is_renamed(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = MINIMAL + "sinks:\n  - use: filesystem\n  - use: filesystem\n    path: copy\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == "sinks[1].name"
    assert "two sinks are named 'filesystem'" in issue.message
    renamed = text.replace("    path: copy\n", "    path: copy\n    name: backup\n")
    spec = load(renamed, builtins, pipeline_file)
    assert [s.name for s in spec.sinks] == ["filesystem", "backup"]


# --- ${VAR} interpolation ---------------------------------------------------------------------


def test_environment_variables_and_defaults_are_interpolated(
    builtins: PluginHost, pipeline_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RP_POSTS", "content/posts")
    monkeypatch.setenv("RP_CRF", "31")
    monkeypatch.delenv("RP_UNSET", raising=False)
    text = (
        "sources: [{use: markdown, path: '${RP_POSTS}', glob: '${RP_UNSET:-*.md}'}]\n"
        "platforms: [tiktok]\n"
        "provider: {use: preview, crf: '${RP_CRF:-20}', model: 'v-${RP_CRF}-$$5-${RP_UNSET:-}'}\n"
    )
    spec = load(text, builtins, pipeline_file)
    assert spec.sources[0].config.path == Path("content/posts")  # type: ignore[attr-defined]
    assert spec.sources[0].config.glob == "*.md"  # type: ignore[attr-defined]
    assert spec.provider.config.crf == 31  # type: ignore[attr-defined]
    assert spec.provider.config.model == "v-31-$5-"  # type: ignore[attr-defined]


def test_a_doubled_dollar_is_a_literal_dollar_and_never_interpolated(
    builtins: PluginHost, pipeline_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RP_SET", "expanded")
    text = MINIMAL + "provider: {use: preview, model: 'costs $5 or $${RP_SET}'}\n"
    spec = load(text, builtins, pipeline_file)
    assert spec.provider.config.model == "costs $5 or ${RP_SET}"  # type: ignore[attr-defined]


def test_a_missing_variable_is_named_with_its_path_and_line_and_reported_once(
    builtins: PluginHost, pipeline_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RP_MISSING_CONC", raising=False)
    text = MINIMAL + "limits:\n  concurrency: ${RP_MISSING_CONC}\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == "limits.concurrency"
    assert issue.line == line_of(text, "concurrency:")
    assert "environment variable RP_MISSING_CONC is not set" in issue.message
    assert "${RP_MISSING_CONC:-default}" in issue.message


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("limits: {concurrency: '${RP_SECRET}'}", "limits.concurrency"),
        ("limits: {rate: '${RP_SECRET}'}", "limits.rate"),
        ("limits: {rate: '10/minute; ${RP_SECRET}'}", "limits.rate"),
        ("platforms: [{name: tiktok, aspect_ratio: '${RP_SECRET}'}]", "platforms[0].aspect_ratio"),
        ("sinks: [{use: filesystem, link: '${RP_SECRET}'}]", "sinks[0].link"),
    ],
)
def test_a_value_from_the_environment_is_never_echoed_in_an_error(
    builtins: PluginHost,
    pipeline_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    path: str,
) -> None:
    monkeypatch.setenv("RP_SECRET", "s3cr3t-value")
    text = SOURCE + setting + "\n"
    if not setting.startswith("platforms"):
        text += "platforms: [tiktok]\n"
    with pytest.raises(ConfigError) as caught:
        load(text, builtins, pipeline_file)
    assert [i.path for i in caught.value.issues] == [path]
    assert "s3cr3t" not in str(caught.value)
    assert all("s3cr3t" not in repr(issue) for issue in caught.value.issues)


def test_a_literal_bad_value_is_shown(builtins: PluginHost, pipeline_file: Path) -> None:
    text = MINIMAL + "limits: {concurrency: lots-of-them}\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == "limits.concurrency"
    assert "valid integer" in issue.message and "'lots-of-them'" in issue.message


# --- limits, budget, ledger -------------------------------------------------------------------


@pytest.mark.parametrize("rate", ["10/minute; 50/day", "120/10s", "5/hour, 100/day", "1/s"])
def test_rate_strings_are_accepted(builtins: PluginHost, pipeline_file: Path, rate: str) -> None:
    spec = load(MINIMAL + f"limits: {{rate: '{rate}'}}\n", builtins, pipeline_file)
    assert spec.limits.rate == rate


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ("ten per minute", "cannot read rate 'ten per minute'"),
        ("10/fortnight", "cannot read rate '10/fortnight'"),
        ("0/minute", "must allow at least 1 per window"),
        (" ; ", "empty rate"),
    ],
)
def test_bad_rate_strings_say_what_was_expected(
    builtins: PluginHost, pipeline_file: Path, rate: str, expected: str
) -> None:
    (issue,) = issues_of(MINIMAL + f"limits: {{rate: '{rate}'}}\n", builtins, pipeline_file)
    assert issue.path == "limits.rate"
    assert expected in issue.message
    assert not issue.message.startswith("Value error")  # pydantic's prefix is noise to a user


def test_a_budget_may_be_one_cap_or_a_list_of_caps(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    one = load(MINIMAL + "budget: {max_usd: 25, per: day}\n", builtins, pipeline_file)
    assert [(b.max_usd, b.per) for b in one.budget] == [(25, "day")]
    several = load(
        MINIMAL + "budget:\n  - {max_usd: 5}\n  - {max_usd: 100, per: month}\n",
        builtins,
        pipeline_file,
    )
    assert [(b.max_usd, b.per) for b in several.budget] == [(5, "run"), (100, "month")]


def test_a_bad_budget_reports_its_own_problems_not_the_other_union_member(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    issues = issues_of(MINIMAL + "budget: {max_usd: -1, per: week}\n", builtins, pipeline_file)
    assert {i.path for i in issues} == {"budget.max_usd", "budget.per"}
    assert "'run', 'day' or 'month'" in by_path(issues)["budget.per"].message
    (scalar,) = issues_of(MINIMAL + "budget: 5\n", builtins, pipeline_file)
    assert scalar.path == "budget" and "valid list" in scalar.message


def test_an_error_under_a_capitalised_key_names_that_key(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    """Keys are paths even when they look like pydantic's names for union members."""
    text = MINIMAL + textwrap.dedent("""\
        sinks:
          - use: filesystem
            path: out
            Link: copy
    """)
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert issue.path == "sinks[0].Link" and issue.message.startswith("unknown key")
    assert issue.line == line_of(text, "Link: copy")


@pytest.mark.parametrize(
    ("ledger", "relative"),
    [("runs/ledger.db", "runs/ledger.db"), ("sqlite:///data/l.db", "data/l.db")],
)
def test_a_relative_ledger_resolves_next_to_the_pipeline_file(
    builtins: PluginHost, pipeline_file: Path, ledger: str, relative: str
) -> None:
    spec = load(MINIMAL + f"ledger: '{ledger}'\n", builtins, pipeline_file)
    assert spec.ledger_url == f"sqlite+aiosqlite:///{pipeline_file.parent.resolve() / relative}"


def test_an_absolute_sqlite_url_is_kept(
    builtins: PluginHost, pipeline_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere" / "ledger.db"
    spec = load(MINIMAL + f"ledger: 'sqlite:///{target}'\n", builtins, pipeline_file)
    assert spec.ledger_url == f"sqlite+aiosqlite:///{target}"


@pytest.mark.parametrize(
    ("ledger", "expected"),
    [
        ("postgresql://user@db/reelpress", "unsupported ledger 'postgresql'"),
        ("sqlite://", "a SQLite ledger URL needs a file"),
        ("''", "expected a file path"),
    ],
)
def test_an_unusable_ledger_setting_is_an_error(
    builtins: PluginHost, pipeline_file: Path, ledger: str, expected: str
) -> None:
    text = MINIMAL + f"ledger: {ledger}\n"
    (issue,) = issues_of(text, builtins, pipeline_file)
    assert (issue.path, issue.line) == ("ledger", line_of(text, "ledger:"))
    assert expected in issue.message


# --- every problem at once --------------------------------------------------------------------


def test_every_error_is_reported_together_in_file_order(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = """\
        sources:
          - use: markdown
            path: posts
        platforms: [tiktok, tiktk]
        sinks:
          - use: filesystem
            pth: out
        limit: {concurrency: 2}
    """
    with pytest.raises(ConfigError) as caught:
        load(text, builtins, pipeline_file)
    issues = caught.value.issues
    assert [(i.path, i.line) for i in issues] == [
        ("platforms[1]", line_of(text, "platforms:")),
        ("sinks[0].pth", line_of(text, "pth:")),
        ("limit", line_of(text, "limit:")),
    ]
    shown = str(caught.value)
    assert shown.startswith("invalid configuration:\n")
    for issue in issues:
        assert f"{pipeline_file}:{issue.line}: {issue.path}: " in shown


def test_a_broken_list_item_does_not_hide_or_renumber_the_others(
    builtins: PluginHost, pipeline_file: Path
) -> None:
    text = (
        SOURCE + "platforms: [tiktok, 5, {name: square, aspect_ratio: '1x1'}]\n"
        "limits: {concurrency: 0}\n"
    )
    issues = by_path(issues_of(text, builtins, pipeline_file))
    assert set(issues) == {"platforms[1]", "platforms[2].aspect_ratio", "limits.concurrency"}
    assert "valid string, or input should be a valid dictionary" in issues["platforms[1]"].message
