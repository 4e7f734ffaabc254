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


def _check_backend(backend: str) -> None:
    if backend != "memory":
        raise typer.BadParameter(
            f"backend {backend!r} is not available yet; use --backend memory "
            "(the Redis tier is tracked as its own issue)",
            param_hint="--backend",
        )


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


@app.command()
def serve(
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
    """Bootstrap from a dataset and serve the HTTP API (no simulated live traffic)."""
    logging.basicConfig(level=logging.WARNING)
    _check_backend(backend)
    settings = _settings(config, host=host, port=port, dataset=dataset, items=items, users=users,
                         encoder=encoder, home=home)  # fmt: skip
    _build_and_serve(settings, live_events_per_s=0.0)


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


if __name__ == "__main__":
    app()
