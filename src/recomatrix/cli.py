"""The `recomatrix` command line: demo, serve and train on the embedded tier."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from recomatrix.config import Settings, load_settings

app = typer.Typer(
    help="recomatrix: a real-time two-stage recommender engine.", no_args_is_help=True
)
console = Console(stderr=True)

DATASETS = ("synthetic", "movielens")

Host = Annotated[str, typer.Option(envvar="RECOMATRIX_HOST", help="Address to bind.")]
Port = Annotated[int, typer.Option(envvar="RECOMATRIX_PORT", min=1, max=65535)]
Dataset = Annotated[
    str, typer.Option(envvar="RECOMATRIX_DATASET", help="synthetic | movielens (bootstrap data).")
]
Backend = Annotated[str, typer.Option(envvar="RECOMATRIX_BACKEND", help="memory (redis: planned).")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", envvar="RECOMATRIX_CONFIG", help="A TOML settings file.")
]
Items = Annotated[
    int | None, typer.Option(envvar="RECOMATRIX_ITEMS", min=100, help="Synthetic items.")
]
Users = Annotated[
    int | None, typer.Option(envvar="RECOMATRIX_USERS", min=10, help="Synthetic users.")
]
Encoder = Annotated[
    str | None, typer.Option(envvar="RECOMATRIX_ENCODER", help="minilm (default) | hashing (fast).")
]
Home = Annotated[
    Path | None, typer.Option(envvar="RECOMATRIX_HOME", help="Folder for models, caches, logs.")
]


class _Bars:
    """Draws one progress bar per build step from `progress(step, done, total)` calls."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.tasks = progress, dict[str, TaskID]()

    def __call__(self, step: str, done: int, total: int) -> None:
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(step, total=total)
        self.progress.update(self.tasks[step], completed=done, total=total)


def _settings(config: Path | None, **data: Any) -> Settings:
    if data.get("dataset") not in DATASETS:
        raise typer.BadParameter(
            f"unknown dataset {data.get('dataset')!r}; use one of: {', '.join(DATASETS)}",
            param_hint="--dataset",
        )
    server: dict[str, Any] = {k: data.pop(k) for k in ("host", "port") if k in data}
    values = {k: v for k, v in data.items() if v is not None}
    if "items" in values:
        values["n_items"] = values.pop("items")
    if "users" in values:
        values["n_users"] = values.pop("users")
    if config is not None and not config.exists():
        raise typer.BadParameter(f"no such file: {config}", param_hint="--config")
    try:
        return load_settings(config, overrides={"server": server, "data": values})
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err


def _check_backend(backend: str, redis_url: str | None = None, *, tier: bool = False) -> None:
    """`tier`: the command runs the server tier too (`--backend redis`, which needs a URL)."""
    if backend == "memory":
        return
    if backend != "redis":
        choices = "--backend memory" + (" or --backend redis" if tier else "")
        raise typer.BadParameter(f"unknown backend {backend!r}; use {choices}",
                                 param_hint="--backend")  # fmt: skip
    if not tier:
        raise typer.BadParameter("this command runs the embedded tier: use --backend memory "
                                 "(the Redis tier: recomatrix serve --backend redis "
                                 "--redis-url URL)", param_hint="--backend")  # fmt: skip
    if not redis_url:
        raise typer.BadParameter(
            "--backend redis needs --redis-url redis://HOST:PORT/DB (a running Redis), "
            "or use --backend memory",
            param_hint="--redis-url",
        )
    _check_redis(redis_url)


def _check_redis(redis_url: str) -> None:
    """A reachable Redis at a URL without options (the bus and the store share it)."""
    if not redis_url.startswith(("redis://", "rediss://", "redis+cluster://")) or "?" in redis_url:
        raise typer.BadParameter(
            f"{redis_url!r} is not a Redis URL without options: use redis://HOST:PORT/DB "
            "or redis+cluster://HOST:PORT",
            param_hint="--redis-url",
        )
    from recomatrix.features.redis import connect

    client = connect(redis_url)
    try:
        client.ping()
    except Exception as err:  # any failure to answer: name the URL and the fix
        raise typer.BadParameter(
            f"cannot reach Redis at {redis_url} ({err}): start redis-server or fix the URL",
            param_hint="--redis-url",
        ) from err
    finally:
        client.close()


def _build(settings: Settings) -> tuple[Any, Any, Any]:
    from recomatrix.bootstrap import build_engine
    from recomatrix.data import generate_world, load_movielens

    data = settings.data
    started = time.perf_counter()
    with console.status(f"building the {data.dataset} world"):
        if data.dataset == "movielens":
            world = load_movielens()
        else:
            world = generate_world(
                n_items=data.n_items, n_users=data.n_users, n_events=data.n_events, seed=data.seed
            )
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        engine, report = build_engine(world, settings, progress=_Bars(progress))
    return world, engine, (report, time.perf_counter() - started)


def _run_server(settings: Settings, engine: Any) -> None:
    import uvicorn

    from recomatrix.server.app import create_app

    uvicorn.run(
        create_app(engine),
        host=settings.server.host,
        port=settings.server.port,
        log_level="warning",
        access_log=False,
    )


def _build_and_serve(settings: Settings, *, live_events_per_s: float) -> None:
    """Build the engine, print what was built, serve until Ctrl-C (with a live audience)."""
    from recomatrix.demo import LiveAudience

    world, engine, (report, seconds) = _build(settings)
    audience = LiveAudience(engine=engine, world=world, events_per_s=live_events_per_s)
    audience.start()
    console.print(
        f"[bold green]recomatrix[/] {report.items:,} items, {report.users:,} users, "
        f"{report.events:,} events replayed, ranker trained on {report.ranker_rows:,} rows "
        f"(model {report.model_version}, AUC {report.metrics.get('val_auc_click', 0):.3f}) "
        f"in {seconds:.0f} s; live events at {live_events_per_s:g}/s"
    )
    console.print(f"serving on [bold]http://{settings.server.host}:{settings.server.port}/[/] "
                  f"(API docs at /docs); Ctrl-C stops")  # fmt: skip
    try:
        _run_server(settings, engine)
    finally:
        audience.stop()
        engine.close()


@app.command()
def demo(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    dataset: Dataset = "synthetic",
    backend: Backend = "memory",
    items: Items = None,
    users: Users = None,
    encoder: Encoder = None,
    home: Home = None,
    config: ConfigFile = None,
) -> None:
    """Build a world, train first models, index it, serve it, and keep it alive with live events."""
    logging.basicConfig(level=logging.WARNING)
    _check_backend(backend)
    settings = _settings(config, host=host, port=port, dataset=dataset, items=items, users=users,
                         encoder=encoder, home=home)  # fmt: skip
    _build_and_serve(settings, live_events_per_s=settings.data.live_events_per_s)


TierBackend = Annotated[
    str, typer.Option(envvar="RECOMATRIX_BACKEND", help="memory | redis (with --redis-url).")
]
RedisUrl = Annotated[
    str | None,
    typer.Option(envvar="RECOMATRIX_REDIS_URL", help="redis://HOST:PORT/DB of the server tier."),
]


@app.command()
def serve(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    dataset: Dataset = "synthetic",
    backend: TierBackend = "memory",
    redis_url: RedisUrl = None,
    workers: Annotated[
        int, typer.Option(envvar="RECOMATRIX_WORKERS", min=1, help="API processes (redis).")
    ] = 1,
    bootstrap: Annotated[
        bool,
        typer.Option(
            "--bootstrap",
            envvar="RECOMATRIX_BOOTSTRAP",
            help="redis: build from --dataset and re-seed Redis even if a deployment exists.",
        ),
    ] = False,
    items: Items = None,
    users: Users = None,
    encoder: Encoder = None,
    home: Home = None,
    config: ConfigFile = None,
) -> None:
    """Serve the HTTP API (no simulated live traffic).

    memory: bootstrap from a dataset in this process. redis: bootstrap once into Redis and
    a deployment snapshot under --home, then run --workers API processes over it; events
    are applied by `recomatrix worker` processes.
    """
    logging.basicConfig(level=logging.WARNING)
    _check_backend(backend, redis_url, tier=True)
    if backend == "memory" and workers != 1:
        raise typer.BadParameter("the embedded tier runs one process: use --backend redis "
                                 "--redis-url URL for more", param_hint="--workers")  # fmt: skip
    settings = _settings(config, host=host, port=port, dataset=dataset, items=items, users=users,
                         encoder=encoder, home=home)  # fmt: skip
    if backend == "memory":
        _build_and_serve(settings, live_events_per_s=0.0)
        return
    assert redis_url is not None  # _check_backend
    _serve_tier(settings, redis_url, workers=workers, bootstrap=bootstrap)


def _absolute_home(settings: Settings) -> Settings:
    import dataclasses

    data = dataclasses.replace(settings.data, home=settings.data.home.resolve())
    return dataclasses.replace(settings, data=data)


def _serve_tier(settings: Settings, redis_url: str, *, workers: int, bootstrap: bool) -> None:
    """Deploy (once) and run the API processes of the server tier until Ctrl-C."""
    from recomatrix.tier.api import run_api_processes
    from recomatrix.tier.seed import deploy, deployed_version
    from recomatrix.tier.snapshot import latest_snapshot

    settings = _absolute_home(settings)  # every API process and worker finds the same folder
    home = settings.data.home
    try:
        snapshot = None if bootstrap else latest_snapshot(home)
    except ValueError as err:
        raise typer.BadParameter(f"{err}", param_hint="--home") from err
    if snapshot is None:
        world, engine, (report, seconds) = _build(settings)
        with console.status("seeding Redis and saving the deployment snapshot"):
            snapshot = deploy(engine, users=world.users, events=world.events, redis_url=redis_url)
        engine.close()
        del engine, world
        console.print(f"[bold green]recomatrix[/] deployed {snapshot.manifest.version}: "
                      f"{report.items:,} items, {report.users:,} users, {report.events:,} "
                      f"events into {redis_url} in {seconds:.0f} s")  # fmt: skip
    elif deployed_version(redis_url) != snapshot.manifest.version:
        console.print(f"[yellow]warning[/]: {redis_url} holds no state of deployment "
                      f"{snapshot.manifest.version}: users and item counters start empty; "
                      "serve with --bootstrap to seed it")  # fmt: skip
    host, port = settings.server.host, settings.server.port
    console.print(f"serving {snapshot.manifest.version} on [bold]http://{host}:{port}/[/] with "
                  f"{workers} API process(es); apply events with: recomatrix worker "
                  f"--redis-url {redis_url} --home {home}")  # fmt: skip
    run_api_processes(settings, redis_url=redis_url, snapshot=snapshot, workers=workers)


@app.command()
def worker(
    redis_url: RedisUrl = None,
    home: Home = None,
    name: Annotated[
        str | None,
        typer.Option(envvar="RECOMATRIX_NAME", help="Consumer name (default: host-pid)."),
    ] = None,
    config: ConfigFile = None,
) -> None:
    """Apply events from the Redis bus to the Redis online store (run one or more).

    Waits for `recomatrix serve --backend redis` to deploy under --home; SIGTERM or Ctrl-C
    finishes and acknowledges the batch in hand, then exits 0.
    """
    import os
    import signal
    import socket

    from recomatrix.tier.worker import StopFlag, run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not redis_url:
        raise typer.BadParameter("a worker needs the server tier's Redis: --redis-url "
                                 "redis://HOST:PORT/DB", param_hint="--redis-url")  # fmt: skip
    _check_redis(redis_url)
    settings = _absolute_home(_settings(config, dataset="synthetic", home=home))
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer = name or f"{socket.gethostname()}-{os.getpid()}"
    raise typer.Exit(run_worker(settings, redis_url=redis_url, name=consumer, stop=stop))


@app.command()
def train(
    dataset: Dataset = "synthetic",
    items: Items = None,
    users: Users = None,
    encoder: Encoder = None,
    home: Home = None,
    config: ConfigFile = None,
) -> None:
    """Train both models on a dataset and write a new version to the registry folder."""
    settings = _settings(config, dataset=dataset, items=items, users=users, encoder=encoder,
                         home=home)  # fmt: skip
    _, engine, (report, seconds) = _build(settings)
    engine.close()
    console.print(
        f"trained version {report.model_version} in {seconds:.0f} s into "
        f"{settings.data.home / 'models' / report.model_version}: "
        + ", ".join(f"{k}={v:.4g}" for k, v in sorted(report.metrics.items()))
    )


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
                     sample_users=sample_users, seed=settings.data.seed)  # fmt: skip
    columns_shown = (TextColumn("{task.description:<22}"), BarColumn(),
                     TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns_shown, console=console) as progress:
        report = evaluate(world, config=run, settings=settings, progress=_Bars(progress))
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


if __name__ == "__main__":
    app()
