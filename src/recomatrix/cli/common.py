"""What every `recomatrix` command shares: the Typer app, option types, settings, checks."""

from __future__ import annotations

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
Backend = Annotated[
    str,
    typer.Option(
        envvar="RECOMATRIX_BACKEND",
        help="memory (the demo is embedded; `serve --backend redis` runs the Redis tier).",
    ),
]
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


class Bars:
    """Draws one progress bar per build step from `progress(step, done, total)` calls."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.tasks = progress, dict[str, TaskID]()

    def __call__(self, step: str, done: int, total: int) -> None:
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(step, total=total)
        self.progress.update(self.tasks[step], completed=done, total=total)


def settings_from(config: Path | None, **data: Any) -> Settings:
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


def check_backend(backend: str, redis_url: str | None = None, *, tier: bool = False) -> None:
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
    check_redis(redis_url)


def check_redis(redis_url: str) -> None:
    """A reachable Redis at a URL whose options (`?claim_ttl_s=600&...`) a part of the tier
    reads (`tier.urls`: the store, the bus and the item feed share the URL)."""
    if not redis_url.startswith(("redis://", "rediss://", "redis+cluster://")):
        raise typer.BadParameter(
            f"{redis_url!r} is not a Redis URL: use redis://HOST:PORT/DB or "
            "redis+cluster://HOST:PORT",
            param_hint="--redis-url",
        )
    from recomatrix.features.resp import connect
    from recomatrix.tier.urls import bare_url

    try:
        bare = bare_url(redis_url)  # redis-py takes no option of ours
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--redis-url") from err
    client = connect(bare)
    try:
        client.ping()
    except Exception as err:  # any failure to answer: name the URL and the fix
        raise typer.BadParameter(
            f"cannot reach Redis at {redis_url} ({err}): start redis-server or fix the URL",
            param_hint="--redis-url",
        ) from err
    finally:
        client.close()


def build_world_engine(settings: Settings) -> tuple[Any, Any, Any]:
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
        engine, report = build_engine(world, settings, progress=Bars(progress))
    return world, engine, (report, time.perf_counter() - started)
