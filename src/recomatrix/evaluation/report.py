"""The evaluation report: a rich table for the terminal and the JSON file for the record."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from recomatrix.evaluation.run import EvalReport

# Systems whose quality the targets compare recomatrix against (random is a floor).
BASELINES = ("most-popular", "recent-popular", "item-knn", "als")


def render_table(report: EvalReport) -> Table:
    """One row per system: HR, NDCG, MRR, coverage (and cold-start HR), best NDCG in bold.

    The cold column's header holds its number of targets; "ms" is the mean time of one
    recommendation request.
    """
    k, result = report.config.k, report.result
    sampled = (
        f", {result.evaluated_users:,} of {result.candidate_users:,} users sampled"
        if report.config.sample_users is not None
        else ""
    )
    table = Table(
        title=f"{report.config.dataset}: {result.targets:,} targets in {result.test_events:,} "
        f"test events{sampled} ({report.seconds:.0f} s)"
    )
    table.add_column("system", no_wrap=True)
    for column in (f"HR@{k}", f"NDCG@{k}", "MRR", "coverage"):
        table.add_column(column, justify="right")
    if report.config.cold_start:
        cold_targets = next(iter(result.cold_summaries.values())).targets
        table.add_column(f"cold HR@{k} ({cold_targets})", justify="right")
    table.add_column("ms", justify="right")
    best = max(result.summaries.values(), key=lambda s: s.ndcg).ndcg
    for name, summary in result.summaries.items():
        ndcg = f"{summary.ndcg:.4f}"
        row = [
            name,
            f"{summary.hit_rate:.4f}",
            f"[bold]{ndcg}[/]" if summary.ndcg == best else ndcg,
            f"{summary.mrr:.4f}",
            f"{summary.coverage:.4f}",
        ]
        if report.config.cold_start:
            cold = result.cold_summaries[name]
            row.append(f"{cold.hit_rate:.4f}")
        row.append(f"{result.recommend_ms[name]:.2f}")
        table.add_row(*row)
    return table


def comparisons(report: EvalReport) -> dict[str, float]:
    """The ratios the targets are stated in: recomatrix NDCG over the best baseline and
    over frozen, and cold-start HR over random (a ratio is omitted when undefined)."""
    ndcg = {name: s.ndcg for name, s in report.result.summaries.items()}
    out: dict[str, float] = {}
    best = max((ndcg[b] for b in BASELINES if b in ndcg), default=0.0)
    if best > 0:
        out["ndcg_vs_best_baseline"] = ndcg["recomatrix"] / best
    if ndcg.get("recomatrix-frozen", 0.0) > 0:
        out["ndcg_vs_frozen"] = ndcg["recomatrix"] / ndcg["recomatrix-frozen"]
    # Against the exact expectation of random lists: a sampled random run of a few hundred
    # cold targets usually hits nothing at all.
    expected = report.result.random_cold_hit_rate
    if report.config.cold_start and expected > 0:
        out["cold_hr_vs_random"] = report.result.cold_summaries["recomatrix"].hit_rate / expected
    return {name: round(ratio, 3) for name, ratio in out.items()}


def write_json(report: EvalReport, path: Path) -> None:
    """The report as pretty JSON at `path` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**report.as_json(), "comparisons": comparisons(report)}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
