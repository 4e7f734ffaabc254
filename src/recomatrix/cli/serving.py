"""`recomatrix demo`, `serve`, `worker` and `train`: build, deploy and run the engine."""

from __future__ import annotations

import dataclasses
import logging
from typing import Annotated, Any

import typer

from recomatrix.cli.common import (
    Backend,
    ConfigFile,
    Dataset,
    Encoder,
    Home,
    Host,
    Items,
    Port,
    Users,
    app,
    build_world_engine,
    check_backend,
    check_redis,
    console,
    settings_from,
)  # fmt: skip
from recomatrix.config import Settings


def _run_server(settings: Settings, engine: Any) -> None:
    import uvicorn

    from recomatrix.heap import freeze_startup_heap
    from recomatrix.server.app import create_app

    app = create_app(engine)
    freeze_startup_heap()  # the engine is built: no gen-2 pauses over its objects
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level="warning",
        access_log=False,
    )


def _build_and_serve(settings: Settings, *, live_events_per_s: float) -> None:
    """Build the engine, print what was built, serve until Ctrl-C (with a live audience)."""
    from recomatrix.demo import LiveAudience

    world, engine, (report, seconds) = build_world_engine(settings)
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
    check_backend(backend)
    settings = settings_from(config, host=host, port=port, dataset=dataset, items=items,
                             users=users, encoder=encoder, home=home)  # fmt: skip
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
    check_backend(backend, redis_url, tier=True)
    if backend == "memory" and workers != 1:
        raise typer.BadParameter("the embedded tier runs one process: use --backend redis "
                                 "--redis-url URL for more", param_hint="--workers")  # fmt: skip
    settings = settings_from(config, host=host, port=port, dataset=dataset, items=items,
                             users=users, encoder=encoder, home=home)  # fmt: skip
    if backend == "memory":
        _build_and_serve(settings, live_events_per_s=0.0)
        return
    assert redis_url is not None  # check_backend
    _serve_tier(settings, redis_url, workers=workers, bootstrap=bootstrap)


def _absolute_home(settings: Settings) -> Settings:
    data = dataclasses.replace(settings.data, home=settings.data.home.resolve())
    return dataclasses.replace(settings, data=data)


def _serve_tier(settings: Settings, redis_url: str, *, workers: int, bootstrap: bool) -> None:
    """Deploy (once) and run the API processes of the server tier until Ctrl-C."""
    from recomatrix.tier.api import run_api_processes
    from recomatrix.tier.seed import deploy, deployed_version
    from recomatrix.tier.snapshot import latest_snapshot

    settings = _absolute_home(settings)  # every API process and worker finds the same folder
    # API processes memory-map the snapshot's main index, which only usearch can do.
    retrieval = dataclasses.replace(settings.retrieval, main_index="usearch")
    settings = dataclasses.replace(settings, retrieval=retrieval)
    home = settings.data.home
    try:
        snapshot = None if bootstrap else latest_snapshot(home)
    except ValueError as err:
        raise typer.BadParameter(f"{err}", param_hint="--home") from err
    if snapshot is None:
        world, engine, (report, seconds) = build_world_engine(settings)
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
    check_redis(redis_url)
    settings = _absolute_home(settings_from(config, dataset="synthetic", home=home))
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
    settings = settings_from(config, dataset=dataset, items=items, users=users, encoder=encoder,
                         home=home)  # fmt: skip
    _, engine, (report, seconds) = build_world_engine(settings)
    engine.close()
    console.print(
        f"trained version {report.model_version} in {seconds:.0f} s into "
        f"{settings.data.home / 'models' / report.model_version}: "
        + ", ".join(f"{k}={v:.4g}" for k, v in sorted(report.metrics.items()))
    )
