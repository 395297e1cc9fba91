"""Planning throughput: N catalog rows × 4 platforms → rendered, validated jobs in the ledger.

Prints jobs/s, peak RSS, and, measured in the same run, the rate of a raw Jinja loop rendering the
same blocks of the same templates for the same briefs (the ratio goal is ≥ 0.5: everything else
planning does, reading, validating, hashing and writing to the ledger, costs no more than the
template rendering itself).

    .venv/bin/python benchmarks/plan.py            # 25,000 rows → 100,000 jobs
    .venv/bin/python benchmarks/plan.py --rows 2000
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from reelpress.config import load_pipeline
from reelpress.ledger import Ledger
from reelpress.models import Brief
from reelpress.pipeline import Pipeline
from reelpress.planner import Planner
from reelpress.plugins import PluginHost
from reelpress.prompts import BLOCKS, platform_vars

PIPELINE = """
name: bench
sources:
  - use: catalog
    path: products.csv
    mapping: {id: sku, title: name, summary: description, keywords: tags}
platforms: [tiktok, instagram_reels, youtube, linkedin]
provider: {use: preview}
sinks: [{use: filesystem}]
"""
CATEGORIES = ["apparel", "cookware", "sports", "electronics", "food", "travel", "garden"]
WORDS = [
    "light", "durable", "organic", "classic", "compact", "premium", "soft", "bold", "everyday",
    "handmade", "recycled", "waterproof", "insulated", "ergonomic", "vintage", "modern",
]  # fmt: skip


def write_catalog(path: Path, rows: int) -> None:
    rng = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["sku", "name", "description", "category", "tags", "price", "color"])
        for i in range(rows):
            words = rng.sample(WORDS, 3)
            out.writerow([
                f"SKU-{i:06d}", f"{words[0].title()} {words[1]} item {i}",
                f"A {words[0]}, {words[1]} and {words[2]} product. Made to last. Ships fast.",
                rng.choice(CATEGORIES), ", ".join(rng.sample(WORDS, 3)),
                f"{rng.uniform(5, 300):.2f}", rng.choice(["red", "blue", "black", "green"]),
            ])  # fmt: skip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def plan(folder: Path) -> tuple[int, float, Pipeline]:
    host = PluginHost.load(only=["platforms", "catalog", "preview", "filesystem"])
    (folder / "pipeline.yaml").write_text(PIPELINE)
    spec = load_pipeline(folder / "pipeline.yaml", host)
    pipeline = Pipeline.build(spec, host)
    ledger = await Ledger.open(spec.ledger_url)
    try:
        started = time.perf_counter()
        report = await Planner(pipeline, ledger).plan()
        elapsed = time.perf_counter() - started
    finally:
        await ledger.close()
    assert report.failed_count == 0, report.failed[:3]
    return report.jobs, elapsed, pipeline


async def collect_briefs(pipeline: Pipeline) -> list[Brief]:
    briefs: list[Brief] = []
    for _, source in pipeline.sources:
        async for item in source.briefs(None):
            if isinstance(item, Brief):
                briefs.append(item)
    return briefs


def raw_jinja(pipeline: Pipeline, briefs: list[Brief]) -> tuple[int, float]:
    """The same blocks of the same templates, rendered with nothing else around them."""
    templates = pipeline.templates
    platforms = list(pipeline.platforms.values())
    compiled = [(templates.platform_template(p), platform_vars(p)) for p in platforms]
    started = time.perf_counter()
    count = 0
    for brief in briefs:
        data: dict[str, Any] = brief.template_data()
        style = templates.style(brief.category)
        for template, pvars in compiled:
            context = template.new_context({"brief": data, "platform": pvars, "style": style})
            for _ in template.root_render_func(context):
                pass
            for block in BLOCKS:
                "".join(context.blocks[block][0](context))
            count += 1
    return count, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_catalog(folder / "products.csv", args.rows)
        rss_before = peak_rss_mb()
        jobs, elapsed, pipeline = asyncio.run(plan(folder))
        rss_plan = peak_rss_mb()
        replan_jobs, replan_elapsed, _ = asyncio.run(plan(folder))
        briefs = asyncio.run(collect_briefs(pipeline))
        raw_count, raw_elapsed = raw_jinja(pipeline, briefs)
        ledger_mb = (folder / "reelpress.db").stat().st_size / 2**20
    plan_rate, raw_rate = jobs / elapsed, raw_count / raw_elapsed
    print(f"rows: {args.rows:,}   jobs: {jobs:,} ({len(pipeline.platforms)} platforms)")
    print(f"plan into the ledger:  {elapsed:7.2f} s  {plan_rate:9,.0f} jobs/s")
    print(f"re-plan (all known):   {replan_elapsed:7.2f} s  {replan_jobs / replan_elapsed:9,.0f} "
          "jobs/s")  # fmt: skip
    print(f"raw Jinja, same blocks:{raw_elapsed:7.2f} s  {raw_rate:9,.0f} renders/s")
    print(f"ratio plan / raw:      {plan_rate / raw_rate:7.2f}   (goal >= 0.5)")
    print(
        f"peak RSS: {rss_plan:.0f} MB after planning (started at {rss_before:.0f} MB; "
        f"goal < 300 MB)   ledger file: {ledger_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
