"""Deploying a bootstrapped engine to the server tier: its live state into Redis, its
catalogue and index into a snapshot that every API process and worker starts from.

Users are put whole (with the long-term vectors from training). Item counters are added
through the store's own atomic counting, from the log the engine replayed in time order,
so the Redis windows are exactly those a stream worker would have built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

from recomatrix.engine import Engine
from recomatrix.features.base import OnlineStore
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.stream.updates import item_counts  # the one definition of an event's counts
from recomatrix.tier.broadcast import ItemFeed
from recomatrix.tier.snapshot import Snapshot, save_snapshot
from recomatrix.tier.urls import part_url
from recomatrix.types import Event, ItemId, UserId

log = logging.getLogger(__name__)

_CHUNK = 2000


def seed_redis(
    *,
    source: OnlineStore,
    target: RedisOnlineStore,
    users: Sequence[UserId],
    items: Sequence[ItemId],
    events: Sequence[Event],
) -> None:
    """Make `target` hold what `source` learnt from `events` (users, item windows, trending).

    Item counters already in `target` for `items` (an earlier deployment) are dropped first:
    counting the same log twice would double them.
    """
    for start in range(0, len(items), _CHUNK):
        target.delete_items(items[start : start + _CHUNK])
    target.forget_counted_events()  # else the log's events count as counted already
    for start in range(0, len(users), _CHUNK):
        states = source.get_users(users[start : start + _CHUNK])
        target.put_users([s for s in states if s is not None])
    for start in range(0, len(events), _CHUNK):
        target.add_item_counts(item_counts(events[start : start + _CHUNK]))
    target.set_trending(dict(source.top_trending(target.max_trending)))


def deploy(engine: Engine, *, users: Sequence[UserId], events: Sequence[Event],
           redis_url: str) -> Snapshot:  # fmt: skip
    """Seed Redis from a freshly built `engine` (before it served anything) and save its
    snapshot into its model version folder; returns the snapshot."""
    # Imported here: the registry loads torch, which only a bootstrapping process has loaded.
    from recomatrix.training.registry import embedder_inputs

    store = RedisOnlineStore.from_url(part_url(redis_url, "store"))
    feed = ItemFeed.from_url(part_url(redis_url, "feed"), dim=engine.catalogue.ndim)
    try:
        items = [item.item_id for item in engine.catalogue.items()]
        seed_redis(source=engine.store, target=store, users=users, items=items, events=events)
        _, genres = embedder_inputs(engine.models)
        snapshot = save_snapshot(
            engine, engine.settings.data.home / "models" / engine.models.version,
            encoder=engine.settings.data.encoder, genres=genres, feed_after=feed.last_id(),
        )  # fmt: skip
        store.client.set(_deployed_key(store), snapshot.manifest.version)
        log.info("deployed %s: %d items, %d users", snapshot.manifest.version,
                 snapshot.manifest.items, len(users))  # fmt: skip
        return snapshot
    finally:
        feed.close()
        store.close()


def deployed_version(redis_url: str) -> str | None:
    """The model version whose state Redis was last seeded with (None: never seeded)."""
    store = RedisOnlineStore.from_url(part_url(redis_url, "store"))
    try:
        version = cast(bytes | None, store.client.get(_deployed_key(store)))
        return None if version is None else version.decode()
    finally:
        store.close()


def _deployed_key(store: RedisOnlineStore) -> str:
    return f"{store.namespace}:deployment"
