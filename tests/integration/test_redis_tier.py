"""The server tier on real Redis: stream workers sharing one group, crash retries, dead letters."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, cast

import numpy as np
import pytest
import redis

from recomatrix.events.memory import MemoryEventBus
from recomatrix.events.redis import RedisStreamsBus
from recomatrix.events.relay import RedisCountRelay
from recomatrix.features import codec
from recomatrix.features.base import ItemCount, LeaseLost
from recomatrix.features.memory import MemoryOnlineStore
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.features.state import ENGAGED, UserState
from recomatrix.features.windows import WINDOWS, Window
from recomatrix.stream import StreamProcessor, StreamSettings
from recomatrix.tier.seed import seed_redis
from recomatrix.types import EVENT_TYPES, Event, UserId

T0 = 1_700_000_000.0


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=8).astype(np.float32)


ITEM_VECTORS = {f"i{n}": vector(n) for n in range(50)}


def synthetic_events(n: int, *, users: int, items: int, seed: int = 3) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for k in range(n):
        kind = rng.choice(EVENT_TYPES)
        watch = float(rng.randint(1, 600)) if kind in ("view", "complete") else 0.0
        events.append(Event(f"e{k}", f"u{rng.randrange(users)}", f"i{rng.randrange(items)}",
                            kind, T0 + k * 2.0, watch_seconds=watch))  # fmt: skip
    return events


def recount(events: Sequence[Event], window: Window, now: float) -> dict[str, float]:
    counts: dict[str, float] = {}
    for e in events:
        if window.contains(e.ts, now):
            counts[e.type] = counts.get(e.type, 0.0) + 1.0
            if e.watch_seconds:
                counts["watch_seconds"] = counts.get("watch_seconds", 0.0) + e.watch_seconds
    return counts


def nonzero(counts: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in counts.items() if v > 1e-9}


def worker(url: str, name: str) -> StreamProcessor:
    """One stream worker with its own connections, as a separate process would have, and
    as `recomatrix worker` has: a relay it takes forwarded counts from, not forwarding
    itself (the default; tests/integration/test_count_relay.py forwards)."""
    bus = RedisStreamsBus.from_url(url + "?lease_s=5")
    return StreamProcessor(
        bus=bus,
        store=RedisOnlineStore.from_url(url),
        item_vector=ITEM_VECTORS.get,
        consumer=name,
        relay=RedisCountRelay(bus, "stream"),
    )


@pytest.mark.parametrize("url_fixture", ["redis_url", "redis_cluster_url"])
def test_two_workers_count_every_event_exactly_once(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue(url_fixture)
    events = synthetic_events(5000, users=200, items=50)
    workers = [worker(redis_url, "w1"), worker(redis_url, "w2")]
    for w in workers:
        w.start()
    publisher = RedisStreamsBus.from_url(redis_url)
    try:
        for start in range(0, len(events), 250):
            publisher.publish(events[start : start + 250])
        publisher.publish(random.Random(1).sample(events, 300))  # redelivered duplicates
        deadline = time.monotonic() + 60
        while publisher.lag("stream") > 0 or sum(w.applied for w in workers) < len(events):
            assert time.monotonic() < deadline, f"workers stalled at lag {publisher.lag('stream')}"
            time.sleep(0.05)
    finally:
        for w in workers:
            w.stop()
    assert sum(w.applied for w in workers) == len(events)
    assert all(w.applied > 0 for w in workers), "one worker did all the work"

    store = RedisOnlineStore.from_url(redis_url)
    now = events[-1].ts
    users = sorted({e.user_id for e in events})
    for user_id, state in zip(users, store.get_users(users), strict=True):
        assert state is not None
        mine = [e for e in events if e.user_id == user_id]
        for window in WINDOWS:
            assert nonzero(state.windows.get(window.name, now=now)) == recount(mine, window, now)
        assert state.last_ts == mine[-1].ts
    items = sorted({e.item_id for e in events})
    for item_id, item in zip(items, store.get_items(items), strict=True):
        assert item is not None
        mine = [e for e in events if e.item_id == item_id]
        for window in WINDOWS:
            assert item.windows.get(window.name, now=now) == recount(mine, window, now)
        assert item.total_engaged == sum(1 for e in mine if e.type in ENGAGED)


class HookedStore(RedisOnlineStore):
    """Runs `before_write` once, as it is about to write users: a worker dying there (the
    hook raises) or stalling there (GC, swap, a slow disk) past its lease."""

    before_write: Callable[[], None] | None = None

    def put_users(
        self,
        states: Sequence[UserState],
        *,
        applied_events: Sequence[str] = (),
        changed: Mapping[UserId, Collection[str]] | None = None,
        applied_times: Sequence[float | None] | None = None,
    ) -> None:
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()
        super().put_users(states, applied_events=applied_events, changed=changed,
                          applied_times=applied_times)  # fmt: skip


def die() -> None:
    """On a partitioned bus the processor writes users first, then items (see the next test
    for that window)."""
    raise ConnectionError("worker died between the item and the user write")


def test_a_batch_retried_after_a_crash_between_writes_is_counted_once(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    bus, store = RedisStreamsBus(client=client), HookedStore(client=client)
    processor = StreamProcessor(bus=bus, store=store, item_vector=ITEM_VECTORS.get)
    events = synthetic_events(80, users=3, items=2)
    bus.publish(events[:40])
    assert processor.run_once(block_s=0) == 40  # the worker now holds the users' states
    processor.flush()
    bus.publish(events[40:])
    store.before_write = die
    with pytest.raises(ConnectionError):
        processor.run_once(block_s=0)
    assert bus.lag(processor.group) == 40  # nothing acknowledged
    assert processor.run_once(block_s=0) == 40
    processor.flush()
    assert bus.lag(processor.group) == 0
    now = events[-1].ts
    for item_id in ("i0", "i1"):
        item = store.get_items([item_id])[0]
        assert item is not None
        mine = [e for e in events if e.item_id == item_id]
        assert item.windows.get("1h", now=now) == recount(mine, WINDOWS[1], now)
    for user_id in ("u0", "u1", "u2"):
        user = store.get_users([user_id])[0]
        assert user is not None
        mine = [e for e in events if e.user_id == user_id]
        assert nonzero(user.windows.get("1h", now=now)) == recount(mine, WINDOWS[1], now)


def test_a_worker_dying_between_its_user_writes_and_its_item_flush_loses_no_count(
    redis_url: str,
) -> None:
    """Users are written with each batch, item counts and the acknowledgement only at the
    next flush: a worker killed in between leaves the batch pending, and whoever gets it
    (here the worker restarted under its old name) counts the items once, the users not
    again."""
    late = StreamSettings(
        item_flush_s=60.0, item_flush_merge_below=0.0, pace_events_per_user=0.0
    )  # never on its own
    events = synthetic_events(60, users=3, items=2)

    def incarnation() -> StreamProcessor:
        return StreamProcessor(
            bus=RedisStreamsBus.from_url(redis_url),
            store=RedisOnlineStore.from_url(redis_url),
            item_vector=ITEM_VECTORS.get,
            settings=late,
            consumer="w1",
        )

    first = incarnation()
    first.bus.publish(events)
    assert first.run_once(block_s=0) == 60
    store = first.store
    assert store.get_items(["i0", "i1"]) == [None, None]  # killed before its flush
    restarted = incarnation()
    assert restarted.run_once(block_s=0) == 0  # the users had every event already
    restarted.flush()
    assert restarted.bus.lag(restarted.group) == 0
    now = events[-1].ts
    for item_id in ("i0", "i1"):
        (item,) = store.get_items([item_id])
        assert item is not None
        mine = [e for e in events if e.item_id == item_id]
        assert item.windows.get("1h", now=now) == recount(mine, WINDOWS[1], now)
    for user_id in ("u0", "u1", "u2"):
        (user,) = store.get_users([user_id])
        assert user is not None
        mine = [e for e in events if e.user_id == user_id]
        assert nonzero(user.windows.get("1h", now=now)) == recount(mine, WINDOWS[1], now)


def test_an_undecodable_entry_goes_to_the_dead_letter_stream(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    bus = RedisStreamsBus(client=client, partitions=1)
    client.xadd(bus.streams[0], {"e": b'{"event_id": "x", "type": "teleport"}'})
    no_user = {"event_id": "y", "user_id": "", "item_id": "i1", "type": "click", "ts": T0}
    client.xadd(bus.streams[0], {"e": json.dumps(no_user)})
    bus.publish([Event("good", "u1", "i1", "click", T0)])
    got = bus.consume("stream", "c", max_events=10, block_s=0)
    assert [d.event.event_id for d in got] == ["good"]
    bus.ack("stream", [d.message_id for d in got])
    assert bus.lag("stream") == 0
    letters = [letter for _, letter in client.xrange(bus.dead_letters)]
    assert [letter[b"stream"] for letter in letters] == [bus.streams[0].encode()] * 2
    assert b"Invalid enum value 'teleport' - at `$.type`" in letters[0][b"reason"]
    assert b"user_id must be a non-empty string" in letters[1][b"reason"]


def test_a_consumer_taking_over_a_dead_ones_partitions_gets_its_unacked_events_first(
    redis_url: str,
) -> None:
    dying = RedisStreamsBus.from_url(redis_url + "?partitions=2&lease_s=0.3")
    events = synthetic_events(12, users=4, items=2)
    dying.publish(events[:8])
    held = dying.consume("stream", "dies", max_events=100, block_s=0)
    assert len(held) == 8  # applied, perhaps, but never acknowledged
    dying.publish(events[8:])
    survivor = RedisStreamsBus.from_url(redis_url + "?partitions=2&lease_s=0.3")
    assert survivor.consume("stream", "survivor", max_events=100, block_s=0) == []  # leased
    time.sleep(0.4)
    first = survivor.consume("stream", "survivor", max_events=100, block_s=0)
    assert sorted(d.event.event_id for d in first) == sorted(d.event.event_id for d in held)
    survivor.ack("stream", [d.message_id for d in first])
    rest = survivor.consume("stream", "survivor", max_events=100, block_s=0)
    assert sorted(d.event.event_id for d in rest) == sorted(e.event_id for e in events[8:])
    survivor.ack("stream", [d.message_id for d in rest])
    assert survivor.lag("stream") == 0


def test_a_worker_that_gets_a_partition_back_does_not_reuse_the_states_it_cached(
    redis_url: str,
) -> None:
    """Worker A keeps the states it wrote; while its lease lapsed, B wrote the same user. When
    A holds the partition again, it must read the user back, not count on its old copy."""

    def consumer(name: str) -> StreamProcessor:
        return StreamProcessor(
            bus=RedisStreamsBus.from_url(redis_url + "?partitions=1&lease_s=0.3"),
            store=RedisOnlineStore.from_url(redis_url),
            item_vector=ITEM_VECTORS.get,
            consumer=name,
        )

    a, b = consumer("a"), consumer("b")
    publisher = RedisStreamsBus.from_url(redis_url + "?partitions=1")
    clicks = [Event(f"c{k}", "u1", "i1", "click", T0 + k) for k in range(3)]
    for event, processor in zip(clicks, (a, b, a), strict=True):
        publisher.publish([event])
        time.sleep(0.4)  # the other consumer's lease lapses
        assert processor.run_once(block_s=0.5) == 1
    (user,) = RedisOnlineStore.from_url(redis_url).get_users(["u1"])
    assert user is not None and user.windows.get("1h", now=T0 + 3)["click"] == 3.0
    assert user.history == ["i1", "i1", "i1"]
    assert a.users is not None and a.users.hits == 0  # its copy of u1 was dropped, not used


def test_a_worker_reuses_the_states_it_wrote_while_it_holds_the_partition(redis_url: str) -> None:
    processor = worker(redis_url, "w1")
    publisher = RedisStreamsBus.from_url(redis_url)
    for k in range(3):
        publisher.publish([Event(f"k{k}", "u1", "i1", "click", T0 + k)])
        assert processor.run_once(block_s=0.5) == 1
    assert processor.users is not None and processor.users.hits == 2
    (user,) = RedisOnlineStore.from_url(redis_url).get_users(["u1"])
    assert user is not None and user.windows.get("1h", now=T0 + 3)["click"] == 3.0


@pytest.mark.parametrize("url_fixture", ["redis_url", "redis_cluster_url"])
def test_an_aged_cached_user_is_kept_only_while_nothing_else_wrote_it(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    """Past `cached_user_age_s` a worker asks the store whether a user is still as it wrote
    it: kept if so (no read, no decode), read again after another writer, and after a
    restore of an older copy (whose stamp is one of this worker's own, but an old one)."""
    url = request.getfixturevalue(url_fixture)
    processor = worker(url, "w1")
    assert processor.users is not None
    processor.users.max_age_s = 0.0  # every entry is past the age limit at its next batch
    publisher = RedisStreamsBus.from_url(url)
    other = RedisOnlineStore.from_url(url)
    key = other._user_key("u1")

    def click(k: int) -> UserState:
        publisher.publish([Event(f"c{k}", "u1", "i1", "click", T0 + k)])
        assert processor.run_once(block_s=0.5) == 1
        (state,) = other.get_users(["u1"])
        assert state is not None
        return state

    click(0)  # read (nothing there), written
    assert click(1).history == ["i1", "i1"] and processor.users.checked == 1
    other.put_users([UserState("u1", history=["edited"])])  # another writer
    assert click(2).history == ["edited", "i1"]  # read again, not overwritten from the copy
    assert processor.users.checked == 1
    older = other.client.dump(key)
    assert click(3).history == ["edited", "i1", "i1"] and processor.users.checked == 2
    other.client.restore(key, 0, older, replace=True)  # back to the state after click 2
    assert click(4).history == ["edited", "i1", "i1"]
    assert processor.users.checked == 2


@pytest.mark.parametrize("url_fixture", ["redis_url", "redis_cluster_url"])
def test_a_write_over_someone_elses_leaves_the_cached_user_to_be_read_at_its_check(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    """Another writer changes a user while the worker's copy is young (not checked): the
    worker's next batch writes its changed fields over it, stamped, but the user is no
    longer the worker's own (the hash holds the other's watched map, the copy does not):
    at its check it is read again, not kept."""
    url = request.getfixturevalue(url_fixture)
    processor = worker(url, "w1")
    assert processor.users is not None
    publisher = RedisStreamsBus.from_url(url)
    other = RedisOnlineStore.from_url(url)

    def send(k: int, kind: str = "click") -> None:
        publisher.publish([Event(f"c{k}", "u1", f"i{k}", kind, T0 + k)])
        assert processor.run_once(block_s=0.5) == 1

    send(0)
    other.put_users([UserState("u1", watched={"w9": T0})])  # another writer, whole
    send(1)  # within the age limit: the copy is used, its changed fields written
    processor.users.max_age_s = 0.0
    send(2, "complete")  # checked: read again (the watched map is the other writer's)
    assert processor.users.checked == 0
    (user,) = other.get_users(["u1"])
    assert user is not None and user.watched == {"w9": T0, "i2": T0 + 2}
    send(3)  # now the worker's own again
    assert processor.users.checked == 1


@pytest.mark.parametrize("cached_users", [0, 20_000])
def test_user_states_written_field_by_field_equal_the_embedded_tiers(
    redis_url: str, cached_users: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Redis tier writes only the fields a batch changed, and of the watched and skipped
    maps only the entries it changed (written whole again after a few changes here); after
    the same events, every user reads back as the in-memory store's copy of it, field for
    field and maps in order (with the worker's cache of its users, and without it: every
    batch reads back what was written)."""
    monkeypatch.setattr(codec, "SEEN_DELTA_MIN", 4)
    events = synthetic_events(3000, users=20, items=50, seed=11)
    settings = StreamSettings(cached_users=cached_users)
    embedded = StreamProcessor(bus=MemoryEventBus(), store=MemoryOnlineStore(),
                               item_vector=ITEM_VECTORS.get)  # fmt: skip
    tier = StreamProcessor(bus=RedisStreamsBus.from_url(redis_url),
                           store=RedisOnlineStore.from_url(redis_url),
                           item_vector=ITEM_VECTORS.get, settings=settings)  # fmt: skip
    for processor in (embedded, tier):
        for start in range(0, len(events), 37):  # small batches: a user changes a little
            processor.bus.publish(events[start : start + 37])
            while processor.run_once(block_s=0.2):
                pass
        assert processor.applied == len(events)
    users = sorted({e.user_id for e in events})
    now = events[-1].ts
    for want, have in zip(embedded.store.get_users(users), tier.store.get_users(users),
                          strict=True):  # fmt: skip
        assert want is not None and have is not None
        assert have.windows.all(now=now) == want.windows.all(now=now)
        assert np.array_equal(have.session.at(now, half_life_s=600.0),
                              want.session.at(now, half_life_s=600.0))  # fmt: skip
        assert (have.recent_items, have.watched, have.skipped, have.history, have.last_ts) == (
            want.recent_items, want.watched, want.skipped, want.history, want.last_ts,
        )  # fmt: skip
        assert list(have.watched.items()) == list(want.watched.items())
        assert list(have.skipped.items()) == list(want.skipped.items())


@pytest.mark.parametrize("url_fixture", ["redis_url", "redis_cluster_url"])
def test_a_user_whose_hash_is_gone_is_written_whole_not_in_part(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    """A worker holds a user's state, the key is evicted or deleted meanwhile: writing only
    the changed fields would leave a hash without the history, watched map and the rest."""
    url = request.getfixturevalue(url_fixture)
    store = RedisOnlineStore.from_url(url)
    processor = StreamProcessor(bus=RedisStreamsBus.from_url(url), store=store,
                                item_vector=ITEM_VECTORS.get)  # fmt: skip
    processor.bus.publish([Event("w1", "u1", "i1", "complete", T0)])
    assert processor.run_once(block_s=0.5) == 1
    store.client.delete(store._user_key("u1"))  # evicted under maxmemory, say
    processor.bus.publish([Event("w2", "u1", "i2", "impression", T0 + 1)])
    assert processor.run_once(block_s=0.5) == 1  # an impression changes 2 fields only
    (user,) = store.get_users(["u1"])
    assert user is not None and user.watched == {"i1": T0} and user.history == ["i1"]
    assert user.windows.get("1h", now=T0 + 1) == {"complete": 1.0, "impression": 1.0}


@pytest.mark.parametrize("url_fixture", ["redis_url", "redis_cluster_url"])
def test_a_fenced_user_write_lands_only_while_its_writer_holds_the_lease(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(url_fixture)
    fence = RedisStreamsBus.from_url(url).fence("stream", "me")
    store = RedisOnlineStore.from_url(url, fence=fence)
    lease = fence.lease_key("u1")
    store.client.set(lease, "me", px=60_000)
    store.put_users([UserState("u1", last_ts=T0)], applied_events=["e1"])
    for holder in ("other", None):  # taken over, or lapsed and not yet taken
        if holder is None:
            store.client.delete(lease)
        else:
            store.client.set(lease, holder, px=60_000)
        with pytest.raises(LeaseLost, match="not held by me"):
            store.put_users([UserState("u1", last_ts=T0 + 1)], applied_events=["e2"])
        (user,) = store.get_users(["u1"])
        assert user is not None and user.last_ts == T0  # nothing written, no marker either
        assert store.seen_events(["e1", "e2"]) == [True, False]


def test_a_worker_paused_past_its_lease_does_not_overwrite_the_new_owners_users(
    redis_url: str,
) -> None:
    """A stalls holding u1's batch; B takes the partition over and applies more of u1's
    events. A's late write (its cached u1 plus the batch) would undo B's: the fence refuses
    it, and every event is counted once."""
    options = "?partitions=1&lease_s=0.3"
    a_bus, b_bus = (RedisStreamsBus.from_url(redis_url + options) for _ in range(2))
    a_store = HookedStore.from_url(redis_url, fence=a_bus.fence("stream", "a"))
    b_store = RedisOnlineStore.from_url(redis_url, fence=b_bus.fence("stream", "b"))
    a, b = (StreamProcessor(bus=bus, store=store, item_vector=ITEM_VECTORS.get, consumer=name)
            for bus, store, name in ((a_bus, a_store, "a"), (b_bus, b_store, "b")))  # fmt: skip
    publisher = RedisStreamsBus.from_url(redis_url + options)
    clicks = [Event(f"c{k}", "u1", "i1", "click", T0 + k) for k in range(3)]
    publisher.publish(clicks[:1])
    assert a.run_once(block_s=0.5) == 1
    a.flush()
    publisher.publish(clicks[1:2])

    def stall() -> None:
        time.sleep(0.4)  # A's lease lapses
        publisher.publish(clicks[2:])
        assert b.run_once(block_s=0.5) == 1  # takes over c1, pending on A
        assert b.run_once(block_s=0.5) == 1  # then reads c2
        b.flush()

    assert isinstance(a_store, HookedStore)
    a_store.before_write = stall
    epoch = a_bus.ownership_epoch("stream", "a")
    assert a.run_once(block_s=0.5) == 0  # its write of c1 was refused
    assert a_bus.ownership_epoch("stream", "a") > epoch  # it re-reads what it holds
    store = RedisOnlineStore.from_url(redis_url)
    (user,) = store.get_users(["u1"])
    assert user is not None and user.windows.get("1h", now=T0 + 3)["click"] == 3.0
    assert user.history == ["i1", "i1", "i1"]
    (item,) = store.get_items(["i1"])
    assert item is not None and item.windows.get("1h", now=T0 + 3)["click"] == 3.0
    assert publisher.lag("stream") == 0


class StallingBus(RedisStreamsBus):
    """Runs `stall` once between renewing its leases and reading the streams: a consumer
    frozen there past its lease reads entries of a partition that is no longer its own."""

    stall: Callable[[], None] | None = None

    def _rebalance(self, group: str, consumer: str) -> list[int]:
        owned = super()._rebalance(group, consumer)
        if self.stall is not None:
            stall, self.stall = self.stall, None
            stall()
        return owned


def test_events_read_by_a_worker_that_lost_the_partition_are_taken_over_once_stuck(
    redis_url: str,
) -> None:
    """B took the partition over (nothing pending then) before A, frozen, read e1: A's write
    is refused and e1 waits in A's pending list, where no take-over looks. B's look for
    stuck deliveries applies it, once."""
    options = "?partitions=1&lease_s=0.3"
    a_bus, b_bus = (
        StallingBus.from_url(redis_url + options),
        RedisStreamsBus.from_url(redis_url + options),
    )
    settings = StreamSettings(stuck_after_s=1.0)
    a, b = (StreamProcessor(bus=bus, store=RedisOnlineStore.from_url(
                redis_url, fence=bus.fence("stream", name)),
            item_vector=ITEM_VECTORS.get, settings=settings, consumer=name)
            for bus, name in ((a_bus, "a"), (b_bus, "b")))  # fmt: skip
    publisher = RedisStreamsBus.from_url(redis_url + options)
    publisher.publish([Event("e0", "u1", "i1", "click", T0)])
    assert a.run_once(block_s=0.5) == 1
    a.flush()

    def stall() -> None:
        time.sleep(0.4)  # A's lease lapses
        assert b.run_once(block_s=0.1) == 0  # B holds the partition; nothing is pending
        publisher.publish([Event("e1", "u1", "i1", "click", T0 + 1)])

    assert isinstance(a_bus, StallingBus)
    a_bus.stall = stall
    assert a.run_once(block_s=0.5) == 0  # read e1 after all; its write was refused
    assert publisher.lag("stream") == 1
    applied, deadline = 0, time.monotonic() + 10
    while applied == 0 and time.monotonic() < deadline:
        applied += b.run_once(block_s=0.1)
    b.flush()
    assert applied == 1
    store = RedisOnlineStore.from_url(redis_url)
    (user,) = store.get_users(["u1"])
    assert user is not None and user.windows.get("1h", now=T0 + 1)["click"] == 2.0
    (item,) = store.get_items(["i1"])
    assert item is not None and item.windows.get("1h", now=T0 + 1)["click"] == 2.0
    assert publisher.lag("stream") == 0


def test_a_worker_losing_one_partition_keeps_the_counts_it_owed_on_the_other(
    redis_url: str,
) -> None:
    """A holds partitions P and Q. Its batch on Q is applied to the users and waits for the
    item flush when its write on P is refused (B took P). A drops both, unacknowledged: Q's
    batch comes back to A itself, P's went to B, and every count lands exactly once."""
    options = "?partitions=2&lease_s=5"
    a_bus, b_bus = (RedisStreamsBus.from_url(redis_url + options) for _ in range(2))
    settings = StreamSettings(
        item_flush_s=60.0, item_flush_merge_below=0.0, pace_events_per_user=0.0
    )  # only when told
    a_store = HookedStore.from_url(redis_url, fence=a_bus.fence("stream", "a"))
    b_store = RedisOnlineStore.from_url(redis_url, fence=b_bus.fence("stream", "b"))
    a, b = (StreamProcessor(bus=bus, store=store, item_vector=ITEM_VECTORS.get,
                            settings=settings, consumer=name)
            for bus, store, name in ((a_bus, a_store, "a"), (b_bus, b_store, "b")))  # fmt: skip
    users = [f"u{k}" for k in range(20)]
    uq = next(u for u in users if a_bus.partition_of(u) == 0)
    up = next(u for u in users if a_bus.partition_of(u) == 1)
    publisher = RedisStreamsBus.from_url(redis_url + options)
    publisher.publish([Event("eq", uq, "i1", "click", T0)])
    assert a.run_once(block_s=0.5) == 1  # Q's users written, its item count deferred
    publisher.publish([Event("ep", up, "i2", "click", T0 + 1)])

    def take_p() -> None:
        a_bus.client.delete(a_bus.fence("stream", "a").lease_key(up))
        assert b.run_once(block_s=0.1) == 1  # B acquires P and takes over ep, pending on A
        b.flush()

    assert isinstance(a_store, HookedStore)
    a_store.before_write = take_p
    assert a.run_once(block_s=0.5) == 0  # ep's write refused: A drops ep and eq's flush
    assert publisher.lag("stream") == 1  # eq: applied to its user, not yet to its item
    assert a.run_once(block_s=0.5) == 0  # takes eq back over: its user has it already
    a.flush()
    store = RedisOnlineStore.from_url(redis_url)
    for user_id, item_id in ((uq, "i1"), (up, "i2")):
        (user,) = store.get_users([user_id])
        assert user is not None and user.windows.get("1h", now=T0 + 1) == {"click": 1.0}
        (item,) = store.get_items([item_id])
        assert item is not None and item.windows.get("1h", now=T0 + 1) == {"click": 1.0}
    assert publisher.lag("stream") == 0


def test_item_counts_wait_for_the_interval_only_when_waiting_merges_them(redis_url: str) -> None:
    """While an interval's events hit as many items as there are events (a light load, a
    long tail), each batch's counts are added with it; once an interval shows events
    piling on few items, a batch's counts wait for the interval (or an idle bus)."""
    bus = RedisStreamsBus.from_url(redis_url)
    store = RedisOnlineStore.from_url(redis_url, fence=bus.fence("stream", "w1"))
    settings = StreamSettings(item_flush_s=0.3, pace_events_per_user=0.0)  # the rule alone
    processor = StreamProcessor(bus=bus, store=store, item_vector=ITEM_VECTORS.get,
                                settings=settings, consumer="w1")  # fmt: skip
    clicks = iter(Event(f"c{k}", f"u{k % 7}", "i1", "click", T0 + k) for k in range(300))

    def clicked() -> float:
        (item,) = store.get_items(["i1"])
        return 0.0 if item is None else item.windows.get("1h", now=T0 + 300)["click"]

    bus.publish([next(clicks) for _ in range(100)])
    assert processor.run_once(block_s=0.5) == 100  # no interval seen yet: added at once
    assert clicked() == 100
    time.sleep(0.35)
    bus.publish([next(clicks) for _ in range(100)])
    assert processor.run_once(block_s=0.5) == 100  # the interval ends: 200 events, 1 item
    assert clicked() == 200  # (its flush is due anyway: 0.35 s since the last)
    bus.publish([next(clicks) for _ in range(100)])
    assert processor.run_once(block_s=0.5) == 100
    assert clicked() == 200  # waits now: the next events on i1 would share its script
    assert processor.run_once(block_s=0.05) == 0  # an idle bus flushes
    assert clicked() == 300 and bus.lag(processor.group) == 0


@pytest.mark.parametrize("backend", ["redis_url", "redis_cluster_url"])
def test_seeding_the_same_log_twice_counts_it_once(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """A deploy re-seeds every item from the log into a Redis that counted it before (on a
    cluster the counted ids sit in each item's own sets)."""
    events = synthetic_events(600, users=10, items=20, seed=5)
    source = StreamProcessor(bus=MemoryEventBus(), store=MemoryOnlineStore(),
                             item_vector=ITEM_VECTORS.get)  # fmt: skip
    source.apply(events)
    target = RedisOnlineStore.from_url(request.getfixturevalue(backend))
    users, items = sorted({e.user_id for e in events}), sorted({e.item_id for e in events})
    for _ in range(2):
        seed_redis(source=source.store, target=target, users=users, items=items, events=events)
    now = events[-1].ts
    for want, have in zip(source.store.get_items(items), target.get_items(items), strict=True):
        assert want is not None and have is not None
        assert have.windows.all(now=now) == want.windows.all(now=now)
        assert have.total_engaged == want.total_engaged


def test_a_counting_call_failing_on_one_item_counts_the_others_once(redis_url: str) -> None:
    """Redis keeps a script's writes made before it failed: the items counted before (and
    after) the broken one record their ids, so the retry adds only the broken item's."""
    client = redis.Redis.from_url(redis_url)
    store = RedisOnlineStore(client=client, namespace="fail")
    counts = [ItemCount(f"e{k}", f"i{k}", "click", T0) for k in range(3)]
    client.sadd("fail:i:{i1}", "not a blob")  # a key of another type
    with pytest.raises(redis.exceptions.ResponseError, match="ITEM COUNT FAILED"):
        store.add_item_counts(counts)
    client.delete("fail:i:{i1}")
    store.add_item_counts(counts)
    for state in store.get_items(["i0", "i1", "i2"]):
        assert state is not None and state.windows.get("5m", now=T0) == {"click": 1.0}


def test_events_near_and_far_from_the_clock_are_found_again_within_the_claim_ttl(
    redis_url: str,
) -> None:
    """Markers go to sets by event time (`features/markers.py`): an event applied, then
    delivered again up to the claim TTL later, is seen on the user side and not counted
    again on the item side, however old or new its time, while the clock moves on."""
    client = redis.Redis.from_url(redis_url)
    start = time.time()
    now = [start]
    store = RedisOnlineStore(client=client, namespace="markers", clock=lambda: now[0])
    offsets = (-2 * 86400.0, -3000.0, -1200.0, -5.0, 0.0, 30.0, 7200.0)
    times = [start + offset for offset in offsets]
    ids = [f"m{k}" for k in range(len(times))]
    counts = [ItemCount(i, "x", "click", t) for i, t in zip(ids, times, strict=True)]
    store.put_users([], applied_events=ids, applied_times=times)
    store.add_item_counts(counts)
    for later in (0.0, 11.0, 905.0, 1800.0, 3590.0):
        now[0] = start + later
        assert store.seen_events(ids, times) == [True] * len(ids), later
        assert store.seen_events(["new"], [now[0]]) == [False]
        store.add_item_counts(counts)  # a redelivery: nothing counted twice
    (state,) = store.get_items(["x"])
    assert state is not None and state.total_engaged == len(ids)
    # Without times, ids are placed by the time of applying, and found the same way.
    store.put_users([], applied_events=["plain"])
    assert store.seen_events(["plain", "other"]) == [True, False]


def test_a_retry_of_an_event_the_server_timed_is_applied_once(redis_url: str) -> None:
    """An event the HTTP API stamped with its own clock (`ts_given` False) comes back from a
    client's retry with a later time: its records are placed by the time of applying, so
    the retry is still found, on the user side and the item side."""
    client = redis.Redis.from_url(redis_url)
    store = RedisOnlineStore(client=client, namespace="stamped")
    processor = StreamProcessor(bus=MemoryEventBus(), store=store,
                                item_vector=ITEM_VECTORS.get)  # fmt: skip
    first = time.time()
    for ts in (first, first + 25.0, first + 250.0):  # the client sent it again, twice
        processor.apply([Event("s-e1", "s-u", "s-i", "click", ts, ts_given=False)])
    (user,) = store.get_users(["s-u"])
    (item,) = store.get_items(["s-i"])
    assert user is not None and user.windows.get("5m", now=first + 250.0) == {"click": 1.0}
    assert user.history == ["s-i"]
    assert item is not None and item.total_engaged == 1.0
    assert store.seen_events(["s-e1"], [None]) == [True]


def test_an_item_counted_in_place_keeps_its_expiry_fresh_and_its_counts_right(
    redis_url: str,
) -> None:
    """The usual update touches an item's header and newest rows in place (SETRANGE), not
    a SET of the blob: it must add what a recount adds, and push the item's expiry back
    when its newest event time enters a new tenth of the TTL or does not move forward (a
    live item also gets a SET with the TTL at each new 10 s row)."""
    client = redis.Redis.from_url(redis_url)
    store = RedisOnlineStore(client=client, namespace="inplace", item_ttl_s=100.0)
    key = "inplace:i:{a}"
    t0 = 1_000_000.0  # a 10 s bucket and a tenth of the TTL (10 s) both start here
    store.add_item_counts([ItemCount("e0", "a", "click", t0)])  # a new blob
    before = client.get(key)

    def expiry_after(counts: list[ItemCount]) -> int:
        client.pexpire(key, 5_000)
        store.add_item_counts(counts)
        after = client.get(key)
        assert before is not None and after is not None
        assert len(after) == len(before)  # counted in place: no row added
        return cast(int, client.pttl(key))

    assert expiry_after([ItemCount("e1", "a", "click", t0 + 1),
                         ItemCount("e2", "a", "like", t0 + 2, 1.0)]) <= 5_000  # fmt: skip
    assert expiry_after([ItemCount("e3", "a", "click", t0 + 1)]) > 90_000  # not forward
    (state,) = store.get_items(["a"])
    assert state is not None and state.total_engaged == 4.0 and state.last_ts == t0 + 2
    for window in WINDOWS:
        assert state.windows.get(window.name, now=t0 + 2) == {"click": 3.0, "like": 1.0}
    # A new tenth of the TTL, the same 10 s row: in place, and the expiry pushed back.
    store = RedisOnlineStore(client=client, namespace="inplace", item_ttl_s=50.0)
    assert expiry_after([ItemCount("e4", "a", "click", t0 + 6)]) > 40_000
    (state,) = store.get_items(["a"])
    assert state is not None and state.windows.get("5m", now=t0 + 6)["click"] == 4.0


def test_a_reader_never_gets_an_item_decoded_before_it_changed(redis_url: str) -> None:
    """The store keeps decoded items (by item, checked against the stored bytes): a read
    after a count sees the count, and an unchanged item is not decoded again."""
    store = RedisOnlineStore.from_url(f"{redis_url}?namespace=decoded")
    store.add_item_counts([ItemCount("d1", "i1", "click", T0)])
    first = store.get_items(["i1"])[0]
    assert first is not None and store.get_items(["i1"])[0] is first  # unchanged: reused
    store.add_item_counts([ItemCount("d2", "i1", "click", T0 + 1)])
    second = store.get_items(["i1"])[0]
    assert second is not None and second is not first
    assert second.windows.get("24h", now=T0 + 2)["click"] == 2.0
    assert first.windows.get("24h", now=T0 + 2)["click"] == 1.0  # a reader's snapshot stays
    store.close()


def _one_user_events(tag: str, n: int, *, user: str = "u1") -> list[Event]:
    return [Event(f"{tag}{k}", user, f"i{k % 7}", "click", T0 + k) for k in range(n)]


def test_a_publish_is_one_entry_per_partition_and_every_count_is_in_events(redis_url: str) -> None:
    """300 events of one user: 3 entries (128 events at most each); lag, reads bounded by
    max_events, and acks all count events, and an ack repeated counts once."""
    bus = RedisStreamsBus.from_url(f"{redis_url}?namespace=entries&partitions=2")
    events = _one_user_events("b", 300)
    bus.publish(events)
    stream = bus.streams[bus.partition_of("u1")]
    assert bus.client.xlen(stream) == 3
    assert bus.lag("g") == 300
    got = []
    while batch := bus.consume("g", "c", max_events=100, block_s=0):
        assert len(batch) <= 100
        got += batch
    assert [d.event.event_id for d in got] == [e.event_id for e in events]
    assert bus.lag("g") == 300  # delivered, not acknowledged
    bus.ack("g", [d.message_id for d in got[:150]])
    bus.ack("g", [d.message_id for d in got[:150]])  # again: nothing more
    assert bus.lag("g") == 150
    bus.ack("g", [d.message_id for d in got[150:]])
    assert bus.lag("g") == 0
    assert bus.client.xpending(stream, "g")["pending"] == 0
    bus.close()


def test_trimming_keeps_the_count_a_new_group_starts_from(redis_url: str) -> None:
    bus = RedisStreamsBus.from_url(f"{redis_url}?namespace=trim&partitions=1")
    bus.publish(_one_user_events("t", 10))
    got = bus.consume("g1", "c", max_events=100, block_s=0)
    bus.ack("g1", [d.message_id for d in got])
    bus.publish(_one_user_events("s", 5))  # trims the first entry: every group acked it
    assert bus.client.xlen(bus.streams[0]) == 1
    assert bus.lag("g2") == 5  # a group made now reads what the stream still holds
    assert [d.event.event_id for d in bus.consume("g2", "c", max_events=100, block_s=0)] == [
        f"s{k}" for k in range(5)
    ]
    bus.close()


def test_an_unreadable_event_in_an_entry_goes_alone_to_the_dead_letters(redis_url: str) -> None:
    """A producer newer than the workers publishes an event type they do not know: that
    event is dead-lettered and acknowledged, its neighbours in the entry are delivered."""
    bus = RedisStreamsBus.from_url(f"{redis_url}?namespace=poison&partitions=1")
    alien = Event("p1", "u1", "i1", cast(Any, "teleport"), T0)
    bus.publish([Event("p0", "u1", "i1", "click", T0), alien, Event("p2", "u1", "i2", "like", T0)])
    got = bus.consume("g", "c", max_events=100, block_s=0)
    assert [d.event.event_id for d in got] == ["p0", "p2"]
    letters = [letter for _, letter in bus.client.xrange(bus.dead_letters)]
    assert len(letters) == 1
    assert b"teleport" in letters[0][b"reason"] and b"events [1] of 3" in letters[0][b"reason"]
    assert bus.lag("g") == 2  # the dead letter is acknowledged
    bus.ack("g", [d.message_id for d in got])
    assert bus.lag("g") == 0
    assert bus.client.xpending(bus.streams[0], "g")["pending"] == 0
    bus.close()


def test_a_group_made_before_counting_never_gets_a_negative_lag(redis_url: str) -> None:
    """A group an older version made (plain XGROUP CREATE) has no count: acknowledging new
    entries must not start one below zero."""
    bus = RedisStreamsBus.from_url(f"{redis_url}?namespace=oldgroup&partitions=1")
    bus.client.xgroup_create(bus.streams[0], "old", id="0", mkstream=True)
    bus.publish(_one_user_events("o", 5))
    got = bus.consume("old", "c", max_events=100, block_s=0)
    assert len(got) == 5 and bus.lag("old") == 1  # uncounted: its entries stand for events
    bus.ack("old", [d.message_id for d in got])
    assert bus.lag("old") == 0
    assert not bus.client.hexists(f"{{{bus.streams[0]}}}:counts", "g:old")
    bus.close()


def test_a_read_after_small_entries_does_not_take_a_whole_backlog(redis_url: str) -> None:
    """Entries of one event teach the bus to ask for many entries; when full ones follow, a
    read still takes at most 16 x max_events, and what it holds back is delivered once."""
    bus = RedisStreamsBus.from_url(f"{redis_url}?namespace=sizing&partitions=2")
    for event in _one_user_events("s", 50):
        bus.publish([event])
    while bus.consume("g", "c", max_events=1000, block_s=0):
        pass
    bus.publish(_one_user_events("f", 1000))  # 8 full entries
    stream = bus.streams[bus.partition_of("u1")]
    before = bus.client.xpending(stream, "g")["pending"]
    first = bus.consume("g", "c", max_events=10, block_s=0)
    assert len(first) == 10
    assert bus.client.xpending(stream, "g")["pending"] - before == 1  # one entry, not all
    reclaimed = bus.reclaim("g", "c", min_idle_s=0.0)  # held ones are not handed out twice
    rest = []
    while batch := bus.consume("g", "c", max_events=100, block_s=0):
        rest += batch
    delivered = [d.event.event_id for d in first + rest]
    assert sorted(delivered) == sorted(f"f{k}" for k in range(1000))
    assert not {d.event.event_id for d in reclaimed} & set(delivered[10:128])
    bus.close()
