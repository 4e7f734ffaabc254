"""The server tier's parts in one process, on a real Redis: snapshot, seeding, item feed,
API engines sharing new items, and a stream worker using the snapshot's vectors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recomatrix.bootstrap import build_engine
from recomatrix.config import Settings, load_settings
from recomatrix.data import World, generate_world
from recomatrix.engine import Engine
from recomatrix.events.redis import RedisStreamsBus
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.features.windows import WINDOWS
from recomatrix.retrieval import HnswIndex
from recomatrix.tier.api import apply_changes, build_api_engine, settings_from_env, settings_json
from recomatrix.tier.broadcast import START, ItemChange, ItemFeed
from recomatrix.tier.mapped import MappedHnswIndex
from recomatrix.tier.seed import deploy, deployed_version
from recomatrix.tier.snapshot import ITEM_SCHEMA, Manifest, Snapshot, latest_snapshot
from recomatrix.tier.worker import ItemVectors, Worker
from recomatrix.types import Event, Item


def eventually(check: Callable[[], bool], *, hang_guard_s: float = 10.0) -> None:
    """Wait for `check()`; the deadline only stops a hung test, it asserts no speed."""
    deadline = time.monotonic() + hang_guard_s
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("tier-home")
    return load_settings(env={}, overrides={
        "data": {"encoder": "hashing", "home": home, "n_items": 300, "n_users": 60},
        "training": {"two_tower_epochs": 1, "ranker_epochs": 1},
    })  # fmt: skip


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(n_items=300, n_users=60, n_events=3000, seed=5)


@pytest.fixture(scope="module")
def built(world: World, tiny_settings: Settings) -> Iterator[Engine]:
    engine, _ = build_engine(world, tiny_settings)
    yield engine
    engine.close()


@pytest.fixture()
def deployed(built: Engine, world: World, redis_url: str) -> Snapshot:
    return deploy(built, users=world.users, events=world.events, redis_url=redis_url)


def nonzero(counts: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in counts.items() if v > 1e-9}


def new_item(item_id: str, title: str = "Rockets over the polar sea") -> Item:
    return Item(item_id, title, "a film about launches", ("space",), ("documentary",), "c9",
                time.time())  # fmt: skip


def test_a_snapshot_restores_catalogue_vectors_index_and_popular_items(
    built: Engine, deployed: Snapshot, tiny_settings: Settings, redis_url: str
) -> None:
    assert latest_snapshot(tiny_settings.data.home) == deployed
    assert deployed_version(redis_url) == deployed.manifest.version
    catalogue = deployed.catalogue()
    assert sorted(catalogue.items(), key=lambda i: i.item_id) == sorted(
        built.catalogue.items(), key=lambda i: i.item_id
    )
    for item in built.catalogue.items()[:50]:
        assert catalogue.key(item.item_id) == built.catalogue.key(item.item_id)
        assert np.array_equal(catalogue.vector(item.item_id), built.catalogue.vector(item.item_id))
    assert deployed.manifest.popular == built.sources.popular
    mapped = deployed.main_index(tiny_settings.retrieval)
    queries = built.catalogue.vectors([i.item_id for i in built.catalogue.items()[:20]])
    assert np.array_equal(
        mapped.search(queries, 10).keys, built.index.main.search(queries, 10).keys
    )


def test_a_mapped_index_never_returns_removed_keys_and_still_fills_k(tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    index = HnswIndex(ndim=16)
    index.add(np.arange(200), vectors)
    index.save(tmp_path / "main.usearch")
    mapped = MappedHnswIndex(path=tmp_path / "main.usearch", ndim=16)
    before = mapped.search(vectors[:5], 10)
    removed = before.keys[:, :3].ravel()
    mapped.remove(removed)
    after = mapped.search(vectors[:5], 10)
    assert (after.counts == 10).all()
    assert not np.isin(after.keys, removed).any()
    assert len(mapped) == 200 - len(set(removed.tolist()))
    with pytest.raises(ValueError, match="read-only"):
        mapped.add(np.array([500]), vectors[:1])


def test_seeded_redis_holds_the_bootstrapped_users_and_item_windows(
    built: Engine, deployed: Snapshot, world: World, redis_url: str
) -> None:
    store = RedisOnlineStore.from_url(redis_url)
    now = world.end_ts
    for mine, theirs in zip(built.store.get_users(world.users), store.get_users(world.users),
                            strict=True):  # fmt: skip
        assert (mine is None) == (theirs is None)
        if mine is not None and theirs is not None:
            for window in WINDOWS:
                assert nonzero(theirs.windows.get(window.name, now=now)) == nonzero(
                    mine.windows.get(window.name, now=now)
                )
            assert theirs.recent_items == mine.recent_items and theirs.watched == mine.watched
            if mine.long_term is None:
                assert theirs.long_term is None
            else:
                assert np.allclose(theirs.long_term, mine.long_term)
    ids = sorted({e.item_id for e in world.events})
    for mine_item, their_item in zip(built.store.get_items(ids), store.get_items(ids), strict=True):
        assert mine_item is not None and their_item is not None
        assert their_item.total_engaged == mine_item.total_engaged
        for window in WINDOWS:
            got = nonzero(their_item.windows.get(window.name, now=now))
            expected = nonzero(mine_item.windows.get(window.name, now=now))
            assert got.keys() == expected.keys()
            assert all(abs(got[k] - expected[k]) < 1e-3 * max(1.0, expected[k]) for k in got)


def test_the_item_feed_carries_changes_to_other_processes_but_not_back(redis_url: str) -> None:
    a, b = ItemFeed.from_url(redis_url, dim=4), ItemFeed.from_url(redis_url, dim=4)
    seen_by: dict[str, list[ItemChange]] = {"a": [], "b": []}
    a.follow(START, seen_by["a"].extend)
    b.follow(START, seen_by["b"].extend)
    try:
        a.client.xadd(a.stream, {"op": "teleport", "origin": "x", "item_id": "bad"})  # skipped
        a.publish_puts([new_item("n1")], np.ones((1, 4), dtype=np.float32))
        a.publish_delete("n0")
        eventually(lambda: len(seen_by["b"]) == 2)
    finally:
        a.close()
        b.close()
    put, delete = seen_by["b"]
    assert put.item is not None and put.item.item_id == "n1" and put.item.tags == ("space",)
    assert put.vector is not None and put.vector.tolist() == [1.0] * 4
    assert (delete.item_id, delete.item) == ("n0", None)
    assert seen_by["a"] == []


def test_api_engines_see_each_others_new_and_deleted_items(
    deployed: Snapshot, tiny_settings: Settings, redis_url: str
) -> None:
    settings = settings_from_env({"RECOMATRIX_TIER_SETTINGS": settings_json(tiny_settings)})
    assert settings == tiny_settings
    (one, feed_one), (two, feed_two) = (
        build_api_engine(settings, redis_url=redis_url, snapshot=deployed) for _ in range(2)
    )
    try:
        assert not one.processor.running  # workers apply the events
        one.put_items([new_item("twin-a"), new_item("twin-b")])
        assert "twin-b" in one.catalogue  # the process that took the POST: at once
        eventually(lambda: "twin-b" in two.catalogue)
        similar = two.similar("twin-a", n=3)
        assert similar is not None and similar[0].item_id == "twin-b"
        two.delete_item("twin-b")
        eventually(lambda: "twin-b" not in one.catalogue)
        assert all(c.item_id != "twin-b" for c in one.similar("twin-a", n=10) or [])
        # A put applied twice changes nothing.
        size, vector = len(one.catalogue), one.catalogue.vector("twin-a")
        replayed = ItemChange("0-1", "elsewhere", "twin-a", new_item("twin-a"), vector)
        apply_changes(one, [replayed, replayed])
        assert len(one.catalogue) == size and len(one.index) == size
        assert np.array_equal(one.catalogue.vector("twin-a"), vector)
    finally:
        for engine, feed in ((one, feed_one), (two, feed_two)):
            feed.close()
            engine.close()


def test_a_worker_applies_events_with_snapshot_and_feed_vectors(
    deployed: Snapshot, tiny_settings: Settings, redis_url: str
) -> None:
    worker = Worker(tiny_settings, redis_url=redis_url, snapshot=deployed, name="w-test")
    worker.start()
    publisher = ItemFeed.from_url(redis_url, dim=deployed.manifest.dim)
    bus = RedisStreamsBus.from_url(redis_url)
    try:
        old = next(iter(deployed.keys()))
        vector = np.zeros(deployed.manifest.dim, dtype=np.float32)
        vector[0] = 1.0
        publisher.publish_puts([new_item("feed-item")], vector[None, :])
        eventually(lambda: worker.vectors.get("feed-item") is not None)
        now = time.time()
        bus.publish([Event("t-e1", "t-user", old, "click", now),
                     Event("t-e2", "t-user", "feed-item", "like", now)])  # fmt: skip
        eventually(lambda: worker.processor.applied == 2)
    finally:
        assert worker.stop()
        publisher.close()
    state = RedisOnlineStore.from_url(redis_url).get_users(["t-user"])[0]
    assert state is not None
    assert state.windows.get("5m", now=now) == {"click": 1.0, "like": 1.0}
    snapshot_vector = np.asarray(deployed.vectors()[deployed.keys()[old]], dtype=np.float32)
    session = state.session.at(now, half_life_s=tiny_settings.stream.session_half_life_s)
    assert session is not None
    assert np.allclose(session, snapshot_vector * 1.0 + vector * 2.0, atol=1e-3)
    assert bus.lag("stream") == 0


def test_worker_vectors_are_float32_rows_and_follow_feed_changes_after_use(
    deployed: Snapshot,
) -> None:
    vectors = ItemVectors(deployed, converted=2)
    keys = deployed.keys()
    first, second, third = list(keys)[:3]
    row = np.asarray(deployed.vectors()[keys[first]], dtype=np.float32)
    got = vectors.get(first)
    assert got is not None and got.dtype == np.float32 and np.array_equal(got, row)
    assert vectors.get(second) is not None and vectors.get(third) is not None  # past the cap
    moved = np.full(deployed.manifest.dim, 0.5, dtype=np.float32)
    vectors.apply([ItemChange("1-0", "api", third, new_item(third), moved),
                   ItemChange("2-0", "api", first, None, None)])  # fmt: skip
    assert np.array_equal(vectors.get(third), moved)  # not the converted snapshot row
    assert vectors.get(first) is None  # deleted
    assert vectors.get("never-seen") is None


def test_a_snapshot_with_deleted_keys_loads_the_rest_under_their_keys(tmp_path: Path) -> None:
    items = [
        Item("a", "A", "about a", ("x",), ("drama",), "c1", 1.0, True),
        Item("c", "C", genres=("comedy", "drama"), creator_id="c2", created_at=3.0),
    ]
    columns = {name: [getattr(it, name) for it in items] for name in ITEM_SCHEMA.names[1:]}
    pq.write_table(pa.table({"key": [0, 2], **columns}, schema=ITEM_SCHEMA),
                   tmp_path / "items.parquet")  # fmt: skip
    vectors = np.eye(3, 4, dtype=np.float16)  # key 1 was deleted before the snapshot
    np.save(tmp_path / "vectors.npy", vectors)
    manifest = Manifest(1, "v1", 0, 2, 4, "hashing", ["comedy", "drama"], ["a"], "0-0")
    catalogue = Snapshot(tmp_path, manifest).catalogue()
    assert len(catalogue) == 2 and catalogue.item_id(1) is None
    assert catalogue.get("a") == items[0] and catalogue.get("c") == items[1]
    assert catalogue.key("a") == 0 and catalogue.key("c") == 2
    assert np.array_equal(catalogue.vector("c"), vectors[2].astype(np.float32))
    new = catalogue.put([Item("d", "D")], np.ones((1, 4), dtype=np.float32))
    assert new.tolist() == [3]  # keys after the snapshot's never collide with its own
