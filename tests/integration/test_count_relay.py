"""Item counts go to the worker holding the item's partition (`events.relay`), on real Redis:
each item rewritten by one worker, every count landing once, through crashes and bad entries."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import pytest
from test_redis_tier import ITEM_VECTORS, recount, synthetic_events

from recomatrix.events.redis import RedisStreamsBus
from recomatrix.events.relay import RedisCountRelay
from recomatrix.features.base import ItemCount
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.features.windows import WINDOWS
from recomatrix.stream import StreamProcessor, StreamSettings
from recomatrix.types import Event

OPTIONS = "?partitions=4&lease_s=5"
MANUAL = StreamSettings(
    item_flush_s=60.0,
    item_flush_merge_below=0.0,
    pace_events_per_user=0.0,
    relay_item_counts=True,
)  # flush when told; forward other partitions' counts


class CountingStore(RedisOnlineStore):
    """Remembers which items it added counts to."""

    counted: set[str]

    def add_item_counts(self, counts: Sequence[ItemCount]) -> None:
        super().add_item_counts(counts)
        self.counted.update(c.item_id for c in counts)


def processor(url: str, name: str, settings: StreamSettings = MANUAL) -> StreamProcessor:
    bus = RedisStreamsBus.from_url(url + OPTIONS)
    store = CountingStore.from_url(url, fence=bus.fence("stream", name))
    assert isinstance(store, CountingStore)
    store.counted = set()
    return StreamProcessor(bus=bus, store=store, item_vector=ITEM_VECTORS.get, settings=settings,
                           consumer=name, relay=RedisCountRelay(bus, "stream"))  # fmt: skip


def share(workers: Sequence[StreamProcessor]) -> None:
    """Until each worker holds half of the partitions (leases are shared out over calls)."""
    deadline = time.monotonic() + 10
    while True:
        for w in workers:
            w.run_once(block_s=0.01)
        held = [w.bus.held_partitions("stream", w.consumer) for w in workers]  # type: ignore[attr-defined]
        if all(len(h) == 2 for h in held) and not held[0] & held[1]:
            return
        assert time.monotonic() < deadline, f"leases never shared: {held}"


def assert_counted_once(url: str, events: Sequence[Event]) -> None:
    store = RedisOnlineStore.from_url(url)
    now = events[-1].ts
    items = sorted({e.item_id for e in events})
    for item_id, item in zip(items, store.get_items(items), strict=True):
        assert item is not None, item_id
        mine = [e for e in events if e.item_id == item_id]
        for window in WINDOWS:
            assert item.windows.get(window.name, now=now) == recount(mine, window, now)


def relayed(url: str) -> int:
    return RedisCountRelay(RedisStreamsBus.from_url(url + OPTIONS), "stream").pending()


@pytest.mark.parametrize("url_fixture", ["redis_url", "redis_cluster_url"])
def test_each_item_is_rewritten_by_the_worker_holding_its_partition_only(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(url_fixture)
    a, b = processor(url, "a"), processor(url, "b")
    share([a, b])
    relay = RedisCountRelay(a.bus, "stream")  # type: ignore[arg-type]
    events = synthetic_events(2000, users=40, items=30)
    a.bus.publish(events)
    deadline = time.monotonic() + 30
    while a.bus.lag("stream") > 0:  # relay entries not yet counted included
        for w in (a, b):
            w.run_once(block_s=0.01)
            w.flush()
        assert time.monotonic() < deadline, f"lag {a.bus.lag('stream')}, relay {relayed(url)}"
    assert a.applied > 0 and b.applied > 0, "one worker applied every user's events"
    counted = [w.store.counted for w in (a, b)]  # type: ignore[attr-defined]
    assert counted[0] and counted[1] and not counted[0] & counted[1]
    for w, mine in zip((a, b), counted, strict=True):
        held = w.bus.held_partitions("stream", w.consumer)  # type: ignore[attr-defined]
        assert {relay.partition_of(item) for item in mine} <= held
    assert_counted_once(url, events)


def test_counts_forwarded_again_after_a_crash_are_counted_once(redis_url: str) -> None:
    """A applies a batch, forwards B's items' counts, and dies before its flush: B counts
    them; A, restarted under its name, gets the batch again and forwards them again; B
    counts nothing twice, and A counts its own items once."""
    a, b = processor(redis_url, "a"), processor(redis_url, "b")
    share([a, b])
    events = [e for e in synthetic_events(600, users=40, items=30, seed=9)
              if a.bus.partition_of(e.user_id) in a.bus.held_partitions("stream", "a")]  # type: ignore[attr-defined]  # fmt: skip
    a.bus.publish(events)
    assert a.run_once(block_s=0.5) == len(events)  # applied and forwarded; a then dies
    assert relayed(redis_url) > 0
    b.flush()  # B counts what A forwarded to it
    assert relayed(redis_url) == 0
    restarted = processor(redis_url, "a")
    assert restarted.run_once(block_s=0.5) == 0  # its users had every event already
    assert relayed(redis_url) > 0  # the same counts, forwarded again
    restarted.flush()
    b.flush()
    assert restarted.bus.lag("stream") == 0 and relayed(redis_url) == 0
    assert_counted_once(redis_url, events)


def test_relay_entries_and_rows_no_store_can_count_are_dropped_and_the_rest_counted(
    redis_url: str,
) -> None:
    a, b = processor(redis_url, "a"), processor(redis_url, "b")
    share([a, b])
    relay = RedisCountRelay(b.bus, "stream")  # type: ignore[arg-type]
    mine = sorted(b.bus.held_partitions("stream", "b"))  # type: ignore[attr-defined]
    item = next(f"i{k}" for k in range(100) if relay.partition_of(f"i{k}") == mine[0])
    relay.client.xadd(relay.keys[mine[0]], {"c": b"\xc1 not msgpack"})
    relay.forward({mine[0]: [ItemCount("e1", item, "click", 1_700_000_000.0),
                             ItemCount("e2", item, "shared", 1_700_000_000.0)]})  # fmt: skip
    b.flush()
    assert relayed(redis_url) == 0
    (state,) = b.store.get_items([item])
    assert state is not None and state.total_engaged == 1.0


def test_a_worker_that_does_not_forward_still_counts_what_was_forwarded_to_it(
    redis_url: str,
) -> None:
    """Workers may differ in `relay_item_counts` (a rolling change of it): one without it
    forwards nothing, but still takes and counts what the others forwarded to the
    partitions it holds, so no count waits in a relay for good."""
    a = processor(redis_url, "a")
    b = processor(redis_url, "b", dataclasses.replace(MANUAL, relay_item_counts=False))
    share([a, b])
    held = a.bus.held_partitions("stream", "a")  # type: ignore[attr-defined]
    world = synthetic_events(1200, users=40, items=30, seed=5)
    events = [e for e in world if a.bus.partition_of(e.user_id) in held]
    a.bus.publish(events)
    assert a.run_once(block_s=0.5) == len(events)
    assert relayed(redis_url) > 0  # a forwarded b's items' counts
    b.flush()
    a.flush()
    assert a.bus.lag("stream") == 0 and relayed(redis_url) == 0
    assert b.store.counted  # type: ignore[attr-defined]
    assert_counted_once(redis_url, events)
    others = [e for e in world if a.bus.partition_of(e.user_id) not in held]
    b.bus.publish(others)
    assert b.run_once(block_s=0.5) == len(others)
    assert relayed(redis_url) == 0  # b counts its batch's items itself
    b.flush()
    assert b.bus.lag("stream") == 0
    assert_counted_once(redis_url, events + others)


class FailingOnceRelay(RedisCountRelay):
    """Its first forward sends half the counts and then fails (Redis gone mid-pipeline)."""

    failed = False

    def forward(self, counts: Mapping[int, Sequence[ItemCount]]) -> None:
        if not self.failed:
            self.failed = True
            super().forward(dict(list(counts.items())[: len(counts) // 2]))
            raise ConnectionError("the relay went away mid-forward")
        super().forward(counts)


def test_a_batch_whose_forward_failed_is_retried_and_counted_once(redis_url: str) -> None:
    """The users were written, then forwarding failed: the batch stays unacknowledged and is
    tried again first; its users skip it, its counts go out (again), each counted once."""
    a, b = processor(redis_url, "a"), processor(redis_url, "b")
    share([a, b])
    a._relay = FailingOnceRelay(a.bus, "stream")  # type: ignore[arg-type]
    events = [e for e in synthetic_events(600, users=40, items=30, seed=11)
              if a.bus.partition_of(e.user_id) in a.bus.held_partitions("stream", "a")]  # type: ignore[attr-defined]  # fmt: skip
    a.bus.publish(events)
    with pytest.raises(ConnectionError):
        a.run_once(block_s=0.5)
    assert a.bus.lag("stream") >= len(events)  # nothing acknowledged
    assert a.run_once(block_s=0.5) == 0  # the retry: its users had every event already
    a.flush()
    b.flush()
    assert a.bus.lag("stream") == 0 and relayed(redis_url) == 0
    assert_counted_once(redis_url, events)
