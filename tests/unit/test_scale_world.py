"""The scale world and the user-profile table that lets a million users fit in memory."""

from __future__ import annotations

import numpy as np
import pytest

from recomatrix.data.scale import generate_scale_world, live_events
from recomatrix.events import open_bus
from recomatrix.features import MemoryOnlineStore, UserProfiles
from recomatrix.retrieval import Catalogue
from recomatrix.stream.processor import StreamProcessor
from recomatrix.types import Event


@pytest.fixture(scope="module")
def world():  # type: ignore[no-untyped-def]
    return generate_scale_world(n_items=5_000, n_users=2_000, dim=32, seed=3, end_ts=1e9)


def test_same_seed_same_world_and_rows_are_unit_vectors(world) -> None:  # type: ignore[no-untyped-def]
    again = generate_scale_world(n_items=5_000, n_users=2_000, dim=32, seed=3, end_ts=1e9)
    assert np.array_equal(world.item_vectors, again.item_vectors)
    assert np.array_equal(world.history_items, again.history_items)
    assert np.allclose(np.linalg.norm(world.item_vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(
        np.linalg.norm(world.user_vectors.astype(np.float32), axis=1), 1.0, atol=2e-3
    )
    assert abs(world.item_popularity.sum() - 1.0) < 1e-9
    assert (world.item_created_at <= 1e9).all()


def test_popularity_is_skewed_and_histories_follow_taste(world) -> None:  # type: ignore[no-untyped-def]
    counts = np.bincount(world.history_items, minlength=world.n_items)
    top_share = np.sort(counts)[::-1][: world.n_items // 100].sum() / counts.sum()
    assert top_share > 0.1  # the top 1 % of items hold over 10 % of the history
    lengths = np.diff(world.history_indptr)
    assert lengths.min() >= 5 and lengths.max() <= 40
    # A user is closer to their own history than to a random item.
    users = world.user_vectors[:200].astype(np.float32)
    own = [float(world.item_vectors[world.history(u)].mean(0) @ users[u]) for u in range(200)]
    rand = world.item_vectors[np.arange(200)] @ users.T
    assert np.mean(own) > float(rand.mean()) + 0.1


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="n_items"):
        generate_scale_world(n_items=10, n_users=10)


def test_profiles_serve_users_without_live_state_and_events_make_them_live(world) -> None:  # type: ignore[no-untyped-def]
    item_ids = [world.item_id(i) for i in range(world.n_items)]
    profiles = UserProfiles(
        user_ids=[world.user_id(u) for u in range(world.n_users)],
        vectors=world.user_vectors, indptr=world.history_indptr, history=world.history_items,
        item_ids=item_ids,
    )  # fmt: skip
    store = MemoryOnlineStore(profiles=profiles)
    user = world.user_id(7)
    state = store.get_users([user, "stranger"])
    assert state[1] is None
    assert state[0] is not None and state[0].history == [item_ids[i] for i in world.history(7)]
    assert state[0].long_term.dtype == np.float32
    assert np.array_equal(state[0].long_term, world.user_vectors[7].astype(np.float32))

    processor = StreamProcessor(bus=open_bus("memory://"), store=store,
                                item_vector=lambda i: None)  # fmt: skip
    processor.apply([Event("e1", user, item_ids[0], "complete", 1e9, 30.0)])
    live = store.get_users([user])[0]
    assert live is not None and item_ids[0] in live.watched
    # The profile's history carried over into the live state; the trained vector no longer
    # covers that history, so it is dropped and recomputed from the history on read.
    assert live.history == [*state[0].history, item_ids[0]][-200:]
    assert live.long_term is None


def test_profiles_refuse_mismatched_columns(world) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="same number"):
        UserProfiles(user_ids=["a"], vectors=world.user_vectors[:2],
                     indptr=np.array([0, 1, 2]), history=np.array([0, 1], dtype=np.int32),
                     item_ids=["x", "y"])  # fmt: skip


def test_live_events_are_time_ordered_with_unique_ids(world) -> None:  # type: ignore[no-untyped-def]
    events = live_events(world, n_events=3_000, active_users=300)
    assert 2_500 <= len(events) <= 3_000
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert len({e.event_id for e in events}) == len(events)
    assert {e.type for e in events} >= {"impression", "click", "complete", "skip"}
    assert all(e.ts <= world.end_ts + 60 for e in events)


def test_profile_lookup_tells_prefixes_and_unicode_ids_apart() -> None:
    ids = ["u10", "u1", "ü-1", "u100", "a"]
    profiles = UserProfiles(
        user_ids=ids, vectors=np.eye(5, dtype=np.float32),
        indptr=np.zeros(6, dtype=np.int64), history=np.zeros(0, dtype=np.int32), item_ids=[],
    )  # fmt: skip
    for row, user in enumerate(ids):
        state = profiles.get(user)
        assert state is not None and state.user_id == user
        assert np.argmax(state.long_term) == row
    assert profiles.get("u") is None and profiles.get("u1000") is None and "b" not in profiles
    assert len(profiles) == 5
    with pytest.raises(ValueError, match="twice"):
        UserProfiles(user_ids=["x", "x"], vectors=np.eye(2, dtype=np.float32),
                     indptr=np.zeros(3, dtype=np.int64), history=np.zeros(0, dtype=np.int32),
                     item_ids=[])  # fmt: skip


def test_item_columns_hold_the_same_records_as_the_items(world) -> None:  # type: ignore[no-untyped-def]
    columns, items = world.item_columns(), world.items()
    catalogue = Catalogue(ndim=world.dim, capacity=1)
    catalogue.load(columns, world.item_vectors)
    assert catalogue.items() == items
