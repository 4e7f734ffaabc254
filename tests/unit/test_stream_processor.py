"""The stream processor: windows, session vector, watched map, trending, idempotency."""

from __future__ import annotations

import time

import numpy as np
import pytest

from recomatrix.events import MemoryEventBus
from recomatrix.features import MemoryOnlineStore
from recomatrix.stream import StreamProcessor
from recomatrix.stream.processor import StreamSettings
from recomatrix.types import Event

VECTORS = {
    "thriller-1": np.array([1.0, 0.0], dtype=np.float32),
    "thriller-2": np.array([0.9, 0.1], dtype=np.float32),
    "drama-1": np.array([0.0, 1.0], dtype=np.float32),
}


def make() -> tuple[StreamProcessor, MemoryOnlineStore, MemoryEventBus]:
    store, bus = MemoryOnlineStore(), MemoryEventBus()
    processor = StreamProcessor(bus=bus, store=store, item_vector=VECTORS.get)
    return processor, store, bus


def test_redelivered_event_is_counted_once() -> None:
    processor, store, _ = make()
    event = Event("e1", "u1", "thriller-1", "click", 100.0)
    assert processor.apply([event]) == 1
    assert processor.apply([event, event]) == 0
    user = store.get_users(["u1"])[0]
    assert user is not None
    assert user.windows.get("5m", now=100.0) == {"click": 1.0}


def test_clicks_pull_the_session_vector_towards_the_genre_and_skips_push_it_away() -> None:
    processor, store, _ = make()
    processor.apply([Event(f"c{i}", "u1", "thriller-1", "click", 100.0 + i) for i in range(3)])
    user = store.get_users(["u1"])[0]
    assert user is not None
    session = user.session.at(110.0, half_life_s=600)
    assert session is not None and session @ VECTORS["thriller-1"] > 0
    processor.apply([Event(f"s{i}", "u1", "thriller-2", "skip", 120.0 + i) for i in range(8)])
    user = store.get_users(["u1"])[0]
    assert user is not None
    session = user.session.at(130.0, half_life_s=600)
    assert session is not None and session @ VECTORS["thriller-1"] < 0
    # Skips never count as recent items: the recent-genre feature must not grow with them.
    assert "thriller-2" not in user.recent_items and "s0" not in user.recent_items
    assert user.skipped["thriller-2"] == 127.0


def test_complete_marks_the_item_watched_at_event_time() -> None:
    processor, store, _ = make()
    processor.apply([Event("e1", "u1", "drama-1", "complete", 5_000.0, watch_seconds=3000)])
    user = store.get_users(["u1"])[0]
    assert user is not None
    assert user.watched == {"drama-1": 5_000.0}
    assert user.recent_items == ["drama-1"]
    assert user.windows.get("24h", now=5_000.0)["watch_seconds"] == 3000


def test_item_with_a_burst_of_engagement_enters_trending() -> None:
    processor, store, _ = make()
    processor.apply([Event(f"e{i}", f"u{i}", "drama-1", "click", 1_000.0 + i) for i in range(20)])
    assert store.top_trending(5)[0][0] == "drama-1"
    processor.refresh_trending(["drama-1"], now=1_000.0 + 4 * 3600)
    assert store.top_trending(5) == []


def test_cooling_drops_items_nobody_engages_with_any_more_and_keeps_hot_ones() -> None:
    processor, store, _ = make()
    processor.apply([Event(f"old{i}", f"u{i}", "drama-1", "click", 1_000.0 + i) for i in range(9)])
    later = 1_000.0 + 2 * 3600
    processor.apply([Event(f"new{i}", f"v{i}", "thriller-1", "click", later + i) for i in range(5)])
    assert {i for i, _ in store.top_trending(5)} == {"drama-1", "thriller-1"}  # never re-scored
    processor.cool_trending(now=later + 10)
    assert [i for i, _ in store.top_trending(5)] == ["thriller-1"]


def test_events_on_the_bus_are_applied_and_acknowledged() -> None:
    processor, store, bus = make()
    bus.publish([Event("e1", "u1", "drama-1", "view", 1.0, watch_seconds=10.0)])
    assert processor.run_once(block_s=0) == 1
    assert bus.lag(processor.group) == 0
    assert store.get_items(["drama-1"])[0] is not None


def test_readers_keep_a_consistent_snapshot_while_the_processor_writes() -> None:
    processor, store, _ = make()
    processor.apply([Event("e1", "u1", "drama-1", "click", 1.0)])
    before = store.get_users(["u1"])[0]
    processor.apply([Event("e2", "u1", "drama-1", "click", 2.0)])
    assert before is not None and before.windows.get("5m", now=2.0) == {"click": 1.0}


def test_skip_is_remembered_with_its_event_time() -> None:
    processor, store, _ = make()
    processor.apply([Event("s1", "u1", "drama-1", "skip", 7_000.0)])
    user = store.get_users(["u1"])[0]
    assert user is not None and user.skipped == {"drama-1": 7_000.0}


def test_a_batch_changes_users_as_its_events_one_at_a_time_would() -> None:
    kinds = ["click", "view", "skip", "like", "complete", "impression"]
    items = list(VECTORS)
    events = [
        Event(f"e{k}", f"u{k % 3}", items[k * 7 % 3], kinds[k * 5 % 6], 1_000.0 + 4.0 * (k // 2),
              watch_seconds=float(k % 4) * 30.0)
        for k in range(90)
    ]  # fmt: skip
    batched, batched_store, _ = make()
    assert batched.apply(events) == 90
    one_by_one, single_store, _ = make()
    for event in events:
        one_by_one.apply([event])
    now = events[-1].ts
    for user_id in ("u0", "u1", "u2"):
        got, want = batched_store.get_users([user_id])[0], single_store.get_users([user_id])[0]
        assert got is not None and want is not None
        assert got.windows.all(now=now) == want.windows.all(now=now)
        assert (got.recent_items, got.history) == (want.recent_items, want.history)
        assert (got.watched, got.skipped, got.last_ts) == (want.watched, want.skipped, want.last_ts)
        got_session, want_session = (s.session.at(now, half_life_s=600) for s in (got, want))
        assert got_session is not None and want_session is not None
        assert np.allclose(got_session, want_session, atol=1e-5)
    assert batched_store.top_trending(3) == single_store.top_trending(3)


def test_the_consuming_loop_rescores_trending_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    store, bus = MemoryOnlineStore(), MemoryEventBus()
    settings = StreamSettings(trending_interval_s=1.0)
    processor = StreamProcessor(bus=bus, store=store, item_vector=VECTORS.get, settings=settings)
    bus.publish([Event(f"a{i}", f"u{i}", "drama-1", "click", 1_000.0 + i) for i in range(20)])
    assert processor.run_once(block_s=0) == 20
    assert [i for i, _ in store.top_trending(5)] == ["drama-1"]  # the first batch re-scores
    clock[0] = 0.5
    bus.publish([Event(f"b{i}", f"u{i}", "thriller-1", "click", 1_010.0 + i) for i in range(40)])
    assert processor.run_once(block_s=0) == 40
    assert [i for i, _ in store.top_trending(5)] == ["drama-1"]  # within the interval
    clock[0] = 1.0
    assert processor.run_once(block_s=0) == 0  # nothing new, but the interval is over
    assert [i for i, _ in store.top_trending(5)] == ["thriller-1", "drama-1"]


def test_a_new_positive_makes_the_trained_long_term_vector_stale() -> None:
    processor, store, _ = make()
    trained = np.array([1.0, 0.0], dtype=np.float32)
    processor.apply([Event("v1", "u1", "thriller-1", "view", 100.0)])
    user = store.get_users(["u1"])[0]
    assert user is not None
    user.long_term = trained  # as training leaves it
    processor.apply([Event("v2", "u1", "drama-1", "view", 101.0)])  # no positive: still valid
    user = store.get_users(["u1"])[0]
    assert user is not None and user.long_term is trained
    processor.apply([Event("c1", "u1", "drama-1", "click", 102.0)])
    user = store.get_users(["u1"])[0]
    # The vector no longer covers the history: the engine recomputes it from the history.
    assert user is not None and user.long_term is None and user.history == ["drama-1"]


def test_a_heavy_users_watched_map_keeps_the_last_week_and_drops_older_entries() -> None:
    processor, store, _ = make()
    hour = 3600.0
    # 400 items, one completed per hour; item 0 watched again in the last hour.
    events = [Event(f"c{k}", "u1", f"item-{k}", "complete", k * hour) for k in range(400)]
    events.append(Event("again", "u1", "item-0", "complete", 400 * hour))
    for event in events:
        processor.apply([event])
    user = store.get_users(["u1"])[0]
    assert user is not None
    week = 7 * 24 * hour
    last_week = {f"item-{k}" for k in range(400) if k * hour >= 400 * hour - week}
    assert last_week <= set(user.watched)  # the 48 h rule needs these
    assert len(user.watched) <= 257  # pruned once it outgrew 256 entries
    assert "item-1" not in user.watched  # ~16 days old
    assert user.watched["item-0"] == 400 * hour  # watched again: kept, at its latest time


def test_an_item_watched_again_outlives_older_entries_when_the_map_is_pruned() -> None:
    processor, store, _ = make()
    hour = 3600.0
    events = [Event(f"c{k}", "u1", f"item-{k}", "complete", k * hour) for k in range(260)]
    events.insert(151, Event("again", "u1", "item-10", "complete", 150 * hour))
    for event in events:
        processor.apply([event])  # the map passed 256 entries at 256 h: pruned to 88 h on
    user = store.get_users(["u1"])[0]
    assert user is not None
    assert user.watched["item-10"] == 150 * hour
    assert "item-11" not in user.watched and "item-87" not in user.watched
    assert "item-88" in user.watched
