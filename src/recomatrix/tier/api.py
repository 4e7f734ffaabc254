"""An API process of the server tier: the snapshot, its models, Redis state, the item feed.

`recomatrix serve --backend redis --workers N` runs N of these under uvicorn, which imports
`create_app_from_env` in each process, so everything it needs comes from env vars:

    RECOMATRIX_REDIS_URL        the Redis holding the bus, the online store, the item feed
    RECOMATRIX_SNAPSHOT         a deployment folder (default: the newest under the home)
    RECOMATRIX_TIER_SETTINGS    the settings as JSON (default: RECOMATRIX_CONFIG and env)

The process does not apply events (`recomatrix worker` does): it publishes them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from fastapi import FastAPI

from recomatrix.config import Settings, load_settings
from recomatrix.engine import Engine
from recomatrix.events.redis import RedisStreamsBus
from recomatrix.features.offline import ParquetLog
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.retrieval import TieredIndex
from recomatrix.tier.broadcast import ItemChange, ItemFeed
from recomatrix.tier.mapped import NEVER_COMPACT
from recomatrix.tier.snapshot import Snapshot, fresh_pool, latest_snapshot, open_snapshot
from recomatrix.tier.urls import part_url
from recomatrix.types import Item, ItemId

log = logging.getLogger(__name__)

ENV_REDIS_URL = "RECOMATRIX_REDIS_URL"
ENV_SNAPSHOT = "RECOMATRIX_SNAPSHOT"
ENV_SETTINGS = "RECOMATRIX_TIER_SETTINGS"


def settings_json(settings: Settings) -> str:
    """`settings` as the JSON `settings_from_env` reads back (paths as strings)."""
    return json.dumps(dataclasses.asdict(settings), default=str)


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    blob = environ.get(ENV_SETTINGS)
    if blob:
        return load_settings(env={}, overrides=json.loads(blob))
    config = environ.get("RECOMATRIX_CONFIG")
    return load_settings(Path(config) if config else None, env=environ)


def snapshot_from_env(environ: Mapping[str, str], home: Path) -> Snapshot:
    folder = environ.get(ENV_SNAPSHOT)
    if folder:
        return open_snapshot(Path(folder))
    snapshot = latest_snapshot(home)
    if snapshot is None:
        raise ValueError(f"no deployment snapshot under {home / 'models'}: run "
                         "`recomatrix serve --backend redis --bootstrap` once")  # fmt: skip
    return snapshot


def build_api_engine(
    settings: Settings, *, redis_url: str, snapshot: Snapshot
) -> tuple[Engine, ItemFeed]:
    """A started engine serving `snapshot` over Redis, following the item feed."""
    # Imported here: the registry loads torch, which nothing else in this module needs.
    from recomatrix.content import open_encoder
    from recomatrix.training.registry import load_models

    manifest, home = snapshot.manifest, settings.data.home
    if manifest.encoder != settings.data.encoder:
        log.info("content encoder %r: the one %s was trained with", manifest.encoder,
                 manifest.version)  # fmt: skip
    encoder = open_encoder(manifest.encoder, cache_dir=home / "cache" / "content")
    models = load_models(snapshot.version_dir, encoder=encoder, genres=manifest.genres)
    catalogue = snapshot.catalogue()
    engine = Engine(
        settings=settings,
        catalogue=catalogue,
        index=TieredIndex(main=snapshot.main_index(settings.retrieval), compact_at=NEVER_COMPACT),
        fresh=fresh_pool(catalogue, settings.retrieval.fresh_pool),
        store=RedisOnlineStore.from_url(part_url(redis_url, "store")),
        bus=RedisStreamsBus.from_url(part_url(redis_url, "bus")),
        models=models,
        popular=manifest.popular,
        offline=ParquetLog(root=home / "offline"),
        process_events=False,
    )
    feed = ItemFeed.from_url(part_url(redis_url, "feed"), dim=manifest.dim)
    engine.on_items_put.append(feed.publish_puts)
    engine.on_item_deleted.append(feed.publish_delete)
    feed.follow(manifest.feed_after, lambda changes: apply_changes(engine, changes))
    engine.start()
    return engine, feed


def apply_changes(engine: Engine, changes: list[ItemChange]) -> None:
    """Apply other processes' item changes in feed order, consecutive puts as one batch
    (the last put of an item in it wins: an index batch must not hold a key twice)."""
    batch: dict[ItemId, tuple[Item, np.ndarray]] = {}

    def put_batch() -> None:
        if batch:
            vectors = np.stack([vector for _, vector in batch.values()])
            engine.put_items([item for item, _ in batch.values()], vectors=vectors, notify=False)
            batch.clear()

    for change in changes:
        if change.item is not None and change.vector is not None:
            batch[change.item_id] = (change.item, change.vector)
        else:
            put_batch()
            engine.delete_item(change.item_id, notify=False)
    put_batch()


def create_app_from_env() -> FastAPI:
    """The uvicorn factory of an API process (`recomatrix.tier.api:create_app_from_env`)."""
    from recomatrix.heap import freeze_startup_heap
    from recomatrix.server.app import create_app

    logging.basicConfig(level=logging.WARNING)
    redis_url = os.environ.get(ENV_REDIS_URL)
    if not redis_url:
        raise ValueError(f"set {ENV_REDIS_URL} to the server tier's Redis, e.g. "
                         "redis://127.0.0.1:6379/0")  # fmt: skip
    settings = settings_from_env(os.environ)
    snapshot = snapshot_from_env(os.environ, settings.data.home)
    engine, feed = build_api_engine(settings, redis_url=redis_url, snapshot=snapshot)
    app = create_app(engine)
    freeze_startup_heap()  # no gen-2 pauses over the engine's objects while serving

    def close() -> None:
        feed.close()
        engine.close()

    app.router.on_shutdown.append(close)
    return app


def run_api_processes(
    settings: Settings, *, redis_url: str, snapshot: Snapshot, workers: int
) -> None:
    """Serve `snapshot` from `workers` uvicorn processes until Ctrl-C or SIGTERM."""
    import uvicorn

    os.environ[ENV_REDIS_URL] = redis_url  # spawned API processes inherit the environment
    os.environ[ENV_SNAPSHOT] = str(snapshot.folder)
    os.environ[ENV_SETTINGS] = settings_json(settings)
    uvicorn.run(
        f"{__name__}:create_app_from_env",
        factory=True,
        workers=workers,
        host=settings.server.host,
        port=settings.server.port,
        log_level="warning",
        access_log=False,
    )
