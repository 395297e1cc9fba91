"""The command line, in-process: exit codes, messages a user can act on, and the operator
commands. (The full quick start runs as a real subprocess in test_e2e.py.)"""

from __future__ import annotations

import filecmp
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from reelpress.cli import main

ROOT = Path(__file__).resolve().parents[1]

FAST = """
name: fast
sources:
  - use: catalog
    path: products.csv
    mapping: {id: sku, title: name, summary: description}
platforms:
  - {name: tiktok, duration_s: 1, resolution: 480p}
  - {name: youtube, duration_s: 1, resolution: 480p}
provider: {use: preview}
sinks: [{use: filesystem, path: out}]
"""

PRODUCTS = """sku,name,description,category
A-1,Linen shirt,Cool in summer.,apparel
A-2,Dutch oven,Slow braises.,cookware
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run `reelpress ARGS` in tmp_path; returns exit code and captured output."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("REELPRESS_LOAD_PLUGINS", "REELPRESS_BLOCK_PLUGINS", "REELPRESS_CONFIG"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.yaml").write_text(FAST)
    (tmp_path / "products.csv").write_text(PRODUCTS)
    return tmp_path


def jobs_in(project: Path) -> dict[str, str]:
    with sqlite3.connect(project / "reelpress.db") as db:
        return dict(db.execute("SELECT id, state FROM jobs").fetchall())


def test_init_scaffolds_exactly_the_quick_start_example(cli, tmp_path: Path) -> None:
    result = cli("init", "proj")
    assert result.code == 0, result.err
    made = sorted(
        p.relative_to(tmp_path / "proj") for p in (tmp_path / "proj").rglob("*") if p.is_file()
    )
    example = ROOT / "examples" / "quickstart"
    expected = sorted(p.relative_to(example) for p in example.rglob("*") if p.is_file()
                      and "out" not in p.parts and not p.name.startswith("reelpress.db")
                      and ".reelpress" not in p.parts)  # fmt: skip
    assert made == expected
    for rel in made:
        assert filecmp.cmp(tmp_path / "proj" / rel, example / rel, shallow=False), rel
    again = cli("init", "proj")
    assert again.code == 2 and "--force" in again.err


def test_plan_lists_jobs_and_cost_and_spends_nothing(cli, project: Path) -> None:
    result = cli("plan")
    assert result.code == 0, result.err
    assert "2 briefs → 4 jobs" in result.out and "4 new" in result.out
    assert "$0.00" in result.out
    assert set(jobs_in(project).values()) == {"planned"}
    assert not (project / "out").exists()


def test_run_dry_run_writes_nothing(cli, project: Path) -> None:
    result = cli("run", "--dry-run")
    assert result.code == 0, result.err
    assert "4 new" in result.out and "dry run" in result.out
    assert jobs_in(project) == {}
    assert not (project / "out").exists()


def test_run_limit_then_full_run_then_costs(cli, project: Path) -> None:
    limited = cli("run", "--limit", "1")
    assert limited.code == 0, limited.err
    assert sorted(jobs_in(project).values()) == ["planned", "planned", "planned", "published"]
    full = cli("run")
    assert full.code == 0, full.err
    assert set(jobs_in(project).values()) == {"published"}
    assert "3 renders submitted" in full.out
    costs = cli("costs")
    assert costs.code == 0
    assert "preview-card-1" in costs.out and "total" in costs.out


def test_jobs_list_show_cancel_and_retry(cli, project: Path) -> None:
    assert cli("plan").code == 0
    listing = cli("jobs", "list", "--json")
    rows = [json.loads(line) for line in listing.out.splitlines()]
    assert len(rows) == 4 and {r["state"] for r in rows} == {"planned"}
    job = rows[0]["id"]
    shown = cli("jobs", "show", job[:8])
    assert shown.code == 0
    assert job in shown.out and "prompt" in shown.out and "history" in shown.out
    assert cli("jobs", "cancel", job[:8]).code == 0
    assert jobs_in(project)[job] == "cancelled"
    again = cli("jobs", "cancel", job[:8])
    assert again.code == 2 and "already cancelled" in again.err
    assert cli("jobs", "retry", job[:8]).code == 0
    assert jobs_in(project)[job] == "planned"
    missing = cli("jobs", "show", "ffffffff")
    assert missing.code == 2 and "no job" in missing.err


def test_a_bad_row_is_reported_with_its_row_and_the_rest_run(cli, project: Path) -> None:
    (project / "products.csv").write_text(PRODUCTS + ",Nameless id,no sku,apparel\n")
    result = cli("run")
    assert result.code == 0, result.err
    assert "products.csv:4" in result.err and "skipped" in result.err
    assert len(jobs_in(project)) == 4


def test_malformed_yaml_names_file_and_line(cli, project: Path) -> None:
    (project / "pipeline.yaml").write_text(
        FAST.replace("provider: {use: preview}", "provider: {use: preview")
    )
    result = cli("plan")
    assert result.code == 2
    assert "pipeline.yaml:" in result.err and "invalid YAML" in result.err


def test_unknown_plugin_name_lists_the_available_ones(cli, project: Path) -> None:
    (project / "pipeline.yaml").write_text(FAST.replace("{use: preview}", "{use: preveiw}"))
    result = cli("plan")
    assert result.code == 2
    assert "pipeline.yaml:10: provider.use: unknown provider 'preveiw'" in result.err
    assert "available: preview" in result.err and "did you mean 'preview'" in result.err


def test_a_template_error_names_template_line_and_field(cli, project: Path) -> None:
    folder = project / "templates" / "platforms"
    folder.mkdir(parents=True)
    (folder / "tiktok.j2").write_text(
        '{% extends "base.j2" %}\n{% block prompt %}\n{{ brief.title }} in\n'
        "{{ brief.fields.colour }}\n{% endblock %}\n"
    )
    result = cli("run")
    assert result.code == 1  # youtube still works; every tiktok job failed to plan
    assert "platforms/tiktok.j2:4: missing field 'colour' (brief.fields.colour)" in result.err
    assert sorted(jobs_in(project).values()) == ["published", "published"]


def test_a_template_syntax_error_stops_before_anything_runs(cli, project: Path) -> None:
    folder = project / "templates" / "platforms"
    folder.mkdir(parents=True)
    (folder / "youtube.j2").write_text('{% extends "base.j2" %}\n{% block prompt %}{{ x }\n')
    result = cli("run")
    assert result.code == 2
    assert "youtube.j2:2: syntax error" in result.err
    assert not (project / "reelpress.db").exists()


def test_templates_render_shows_every_block_and_content_stays_literal(cli, project: Path) -> None:
    (project / "products.csv").write_text(
        "sku,name,description\nX-1,{{ 7*7 }} mug,\"{{ ''.__class__ }} for tea\"\n"
    )
    result = cli("templates", "render", "--platform", "tiktok")
    assert result.code == 0, result.err
    for block in ("prompt", "negative_prompt", "title", "caption", "hashtags"):
        assert block in result.out
    assert "{{ 7*7 }} mug" in result.out and "{{ ''.__class__ }}" in result.out
    assert "49" not in result.out


def test_plugins_lists_builtins_with_what_they_register(cli) -> None:
    result = cli("plugins")
    assert result.code == 0
    for name in ("markdown", "catalog", "preview", "filesystem", "platforms"):
        assert name in result.out
    assert "provider: preview" in result.out


def test_missing_pipeline_file_is_bad_input(cli) -> None:
    result = cli("plan")
    assert result.code == 2 and "pipeline.yaml: file not found" in result.err


def test_debug_shows_the_traceback_of_a_user_error(cli) -> None:
    plain = cli("plan")
    debug = cli("--debug", "plan")
    assert plain.code == debug.code == 2
    assert "Traceback" not in plain.err and "Traceback" in debug.err
    assert "file not found" in debug.err
