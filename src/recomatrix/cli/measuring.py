"""`recomatrix eval` and `recomatrix bench`: measure quality against peers, and speed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from recomatrix.cli.common import Bars, ConfigFile, Encoder, Home, app, console
from recomatrix.config import load_settings

EVAL_DATASETS = ("synthetic", "ml-latest-small", "movielens")
EVAL_END_TS = 1_767_225_600.0  # the synthetic eval world ends 2026-01-01 UTC: reruns agree


def _eval_world(
    dataset: str | None, interactions: Path | None, loader: dict[str, Any], sizes: dict[str, int],
    seed: int,
) -> tuple[str, Any]:  # fmt: skip
    """(name for the report, World) from --dataset or --interactions, validated."""
    from recomatrix.data import generate_world, load_movielens
    from recomatrix.data.interactions import load_interactions

    if interactions is not None:
        if dataset is not None:
            raise typer.BadParameter("use --dataset or --interactions, not both",
                                     param_hint="--dataset")  # fmt: skip
        try:
            return interactions.stem, load_interactions(interactions, **loader)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--interactions") from err
    dataset = dataset or "synthetic"
    if dataset not in EVAL_DATASETS:
        raise typer.BadParameter(f"unknown dataset {dataset!r}; use one of: "
                                 f"{', '.join(EVAL_DATASETS)}", param_hint="--dataset")  # fmt: skip
    if dataset != "synthetic":
        return "ml-latest-small", load_movielens()
    return "synthetic", generate_world(**sizes, seed=seed, end_ts=EVAL_END_TS)


@app.command(name="eval")
def eval_(
    dataset: Annotated[
        str | None, typer.Option(help="synthetic (default) | ml-latest-small: built-in data.")
    ] = None,
    interactions: Annotated[
        Path | None, typer.Option(help="CSV/TSV/Parquet of user_id,item_id,timestamp[,rating].")
    ] = None,
    items_file: Annotated[
        Path | None, typer.Option("--items", help="Items file (item_id,title,genres,...).")
    ] = None,
    sep: Annotated[str | None, typer.Option(help="Field separator (default by extension).")] = None,
    no_header: Annotated[bool, typer.Option("--no-header", help="The file has no header.")] = False,
    columns: Annotated[
        str | None,
        typer.Option(help="Column names in order, e.g. user_id,item_id,rating,timestamp."),
    ] = None,
    min_rating: Annotated[float | None, typer.Option(help="Drop ratings below this.")] = None,
    items_count: Annotated[int, typer.Option(min=100, help="Synthetic items.")] = 20_000,
    users_count: Annotated[int, typer.Option(min=10, help="Synthetic users.")] = 5_000,
    events_count: Annotated[int, typer.Option(min=1000, help="Synthetic events.")] = 300_000,
    k: Annotated[int, typer.Option(min=1, help="Length of each list scored.")] = 10,
    test_fraction: Annotated[float, typer.Option(min=0.01, max=0.99)] = 0.2,
    sample_users: Annotated[
        int | None, typer.Option(min=1, help="Score only this many users (seeded).")
    ] = None,
    cold_start: Annotated[
        bool, typer.Option("--cold-start", help="Hold 10 % of items out of training.")
    ] = False,
    validation: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            max=0.99,
            help="Replay this last share of the log before the "
            "test split instead of the test log (tuning; the test log is not read).",
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    encoder: Encoder = None,
    home: Home = None,
    config: ConfigFile = None,
) -> None:
    """Replay the last part of a log in time order; score recomatrix and baselines on it."""
    from recomatrix.evaluation import EvalConfig, evaluate
    from recomatrix.evaluation.report import comparisons, render_table, write_json

    logging.basicConfig(level=logging.WARNING)
    if config is not None and not config.exists():
        raise typer.BadParameter(f"no such file: {config}", param_hint="--config")
    data = {key: v for key, v in {"encoder": encoder, "home": home}.items() if v is not None}
    try:
        settings = load_settings(config, overrides={"data": data})
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    loader = {
        "items_path": items_file,
        "sep": sep,
        "header": not no_header,
        "columns": columns.split(",") if columns else None,
        "min_rating": min_rating,
    }
    sizes = {"n_items": items_count, "n_users": users_count, "n_events": events_count}
    with console.status("loading the evaluation data"):
        name, world = _eval_world(dataset, interactions, loader, sizes, settings.data.seed)
    run = EvalConfig(dataset=name, k=k, test_fraction=test_fraction, cold_start=cold_start,
                     sample_users=sample_users, seed=settings.data.seed,
                     validation_fraction=validation)  # fmt: skip
    columns_shown = (TextColumn("{task.description:<22}"), BarColumn(),
                     TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns_shown, console=console) as progress:
        report = evaluate(world, config=run, settings=settings, progress=Bars(progress))
    Console().print(render_table(report))
    console.print(", ".join(f"{name} {ratio:.2f}" for name, ratio in comparisons(report).items()))
    if output is not None:
        write_json(report, output)
        console.print(f"wrote {output}")


def _int_list(value: str, option: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        numbers = ()
    if not numbers or min(numbers) < 1:
        raise typer.BadParameter(f"expected positive integers separated by commas, got {value!r}",
                                 param_hint=option)  # fmt: skip
    return numbers


@app.command()
def bench(
    items: Annotated[int, typer.Option(min=1000, help="Items in the scale world.")] = 1_000_000,
    users: Annotated[int, typer.Option(min=100, help="Users in the scale world.")] = 1_000_000,
    requests: Annotated[int, typer.Option(min=10, help="In-process requests timed.")] = 10_000,
    http_requests: Annotated[int, typer.Option(min=10, help="Requests per HTTP level.")] = 2_000,
    concurrency: Annotated[str, typer.Option(help="HTTP concurrency levels.")] = "1,4,16,64",
    probes: Annotated[int, typer.Option(min=1, help="Freshness probes of each kind.")] = 50,
    scaling: Annotated[str, typer.Option(help="Catalogue sizes of the scaling curve.")] = (
        "10000,100000,1000000"
    ),
    peers: Annotated[
        str,
        typer.Option(
            help="ANN indexes compared (usearch-f32,usearch-i8,hnswlib,faiss-hnsw,"
            "exact), or 'none'."
        ),
    ] = "usearch-f32,usearch-i8,hnswlib,faiss-hnsw,exact",
    output: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the scaling plot (PNG) here.")] = None,
    index_cache: Annotated[
        Path | None, typer.Option(help="Folder to keep the built index in and reuse it from.")
    ] = None,
) -> None:
    """Benchmark the whole engine at scale (1M items x 1M users by default) in one run."""
    from rich.table import Table

    from recomatrix.bench.peers import BUILDERS
    from recomatrix.bench.suite import SuiteOptions, run_suite, summary_rows

    chosen = () if peers == "none" else tuple(p for p in peers.split(",") if p)
    unknown = sorted(set(chosen) - {*BUILDERS, "exact"})
    if unknown:
        raise typer.BadParameter(f"unknown index {unknown[0]!r}; use: "
                                 f"{', '.join([*BUILDERS, 'exact'])} or none",
                                 param_hint="--peers")  # fmt: skip
    options = SuiteOptions(
        items=items, users=users, requests=requests, http_requests=http_requests,
        concurrency=_int_list(concurrency, "--concurrency"), freshness_probes=probes,
        scaling=_int_list(scaling, "--scaling"), peers=chosen, plot=plot, index_cache=index_cache,
    )  # fmt: skip
    report = run_suite(options, log=lambda line: console.print(line, highlight=False))
    table = Table("measure", "value", title="recomatrix bench")
    for name, value in summary_rows(report):
        table.add_row(name, value)
    Console().print(table)
    if output is not None:
        import json

        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {output}")
