"""Contract checks that every backend of a seam must pass, river `checks` style.

`check_online_store(store)` and `check_event_bus(bus)` run each behaviour check in turn and
raise AssertionError naming the first broken one. Checks share the backend they are given,
so each uses ids of its own and ignores what other checks left behind.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial

import numpy as np

from recomatrix.events.base import Delivery, EventBus
from recomatrix.features.base import ItemCount, OnlineStore
from recomatrix.features.state import ENGAGED, SessionVector, UserState
from recomatrix.features.windows import WINDOWS, WindowCounts
from recomatrix.types import EVENT_TYPES, Event, ItemId

T0 = 1_700_000_000.0  # event time of the checks' first event


def check_online_store(store: OnlineStore, *, idle_ttl_s: float | None = None) -> None:
    """Run every OnlineStore check; `idle_ttl_s`: the store forgets idle state after it."""
    checks: list[Callable[[OnlineStore], None]] = [
        check_unknown_ids_are_none,
        check_users_round_trip_in_one_batch,
        check_a_write_of_changed_fields_keeps_the_others,
        check_applied_events_are_remembered,
        check_readers_keep_their_snapshot,
        check_item_counts_equal_a_recount,
        check_item_counts_are_counted_once_per_event,
        check_concurrent_item_counts_lose_nothing,
        check_trending_top_k_and_removal,
        check_deleted_items_are_forgotten,
    ]
    if idle_ttl_s is not None:
        checks.append(partial(check_idle_state_expires, idle_ttl_s=idle_ttl_s))
    for check in checks:
        check(store)


def check_event_bus(
    bus: EventBus, *, consumer_timeout_s: float = 0.0, small_bus: EventBus | None = None
) -> None:
    """Run every EventBus check.

    `consumer_timeout_s`: how long a silent consumer keeps its events before another may
    reclaim them. `small_bus`: a second, empty bus that holds at most 3 unacknowledged events.
    """
    check_each_group_sees_each_users_events_in_order(bus)
    check_unacknowledged_events_are_reclaimed(bus, consumer_timeout_s=consumer_timeout_s)
    check_lag_reaches_zero_after_ack(bus)
    check_consume_waits_for_an_event(bus)
    if small_bus is not None:
        check_full_bus_refuses_the_whole_batch(small_bus)


# --- OnlineStore -------------------------------------------------------------------------


def check_unknown_ids_are_none(store: OnlineStore) -> None:
    tag = _tag()
    assert store.get_users([f"{tag}-u1", f"{tag}-u2"]) == [None, None]
    assert store.get_items([f"{tag}-i1"]) == [None]
    assert store.seen_events([f"{tag}-e1"]) == [False]
    assert store.get_users([]) == [] and store.get_items([]) == []


def check_users_round_trip_in_one_batch(store: OnlineStore) -> None:
    tag = _tag()
    states = [_user(f"{tag}-u{i}", seed=i) for i in range(3)]
    store.put_users(states)
    got = store.get_users([states[2].user_id, f"{tag}-nobody", states[0].user_id])
    assert got[1] is None
    for want, have in ((states[2], got[0]), (states[0], got[2])):
        assert have is not None, f"user {want.user_id} was not stored"
        _assert_same_user(want, have)


def check_a_write_of_changed_fields_keeps_the_others(store: OnlineStore) -> None:
    """`put_users(changed=...)`: the named fields are stored, the others stay as stored, a
    user with nothing changed keeps its state, and a user not named is written whole."""
    tag = _tag()
    first, second, third = (_user(f"{tag}-u{i}", seed=i) for i in range(3))
    store.put_users([first, second])
    first, second = (s.copy() for s in store.get_users([first.user_id, second.user_id]) if s)
    first.history = [*first.history, "h2"]
    first.windows.add("click", ts=T0 + 600.0)
    first.last_ts = T0 + 600.0
    changed = {first.user_id: {"history", "windows", "last_ts"}, second.user_id: set()}
    store.put_users([first, second, third], applied_events=[f"{tag}-e"], changed=changed)
    got = store.get_users([first.user_id, second.user_id, third.user_id])
    for want, have in zip((first, second, third), got, strict=True):
        assert have is not None, f"user {want.user_id} was lost"
        _assert_same_user(want, have)
    assert store.seen_events([f"{tag}-e"]) == [True]


def check_applied_events_are_remembered(store: OnlineStore) -> None:
    tag = _tag()
    store.put_users([_user(f"{tag}-u")], applied_events=[f"{tag}-a", f"{tag}-b"])
    store.put_users([], applied_events=[f"{tag}-a"])  # recording again is harmless
    assert store.seen_events([f"{tag}-a", f"{tag}-c", f"{tag}-b"]) == [True, False, True]


def check_readers_keep_their_snapshot(store: OnlineStore) -> None:
    tag = _tag()
    user, item = f"{tag}-u", f"{tag}-i"
    store.put_users([_user(user, seed=1)])
    store.add_item_counts([ItemCount(f"{tag}-e1", item, "click", T0)])
    before_user, before_item = store.get_users([user])[0], store.get_items([item])[0]
    store.put_users([UserState(user)])
    store.add_item_counts([ItemCount(f"{tag}-e2", item, "click", T0)])
    assert before_user is not None and before_user.history == ["h0", "h1"]
    assert before_item is not None and before_item.windows.get("5m", now=T0) == {"click": 1.0}
    after = store.get_items([item])[0]
    assert after is not None and after.windows.get("5m", now=T0) == {"click": 2.0}


def check_item_counts_equal_a_recount(store: OnlineStore) -> None:
    """Sparse counts (a new 10 s bucket almost every time) and dense ones (many small batches
    into the same buckets, as under load), both with a few late ones."""
    for spacing_s, batch in ((30.0, 64), (1.5, 3)):
        tag, rng = _tag(), random.Random(7)
        items = [f"{tag}-i{i}" for i in range(3)]
        counts = []
        for n in range(600):  # 5 hours of sparse events, 15 minutes of dense ones
            ts = T0 + n * spacing_s - (rng.random() * 50 if n % 17 == 0 else 0.0)
            field = rng.choice([*EVENT_TYPES, "watch_seconds"])
            amount = float(rng.randint(1, 300)) if field == "watch_seconds" else 1.0
            counts.append(ItemCount(f"{tag}-e{n}", rng.choice(items), field, ts, amount))
        for start in range(0, len(counts), batch):
            store.add_item_counts(counts[start : start + batch])
        _assert_recounted(store, items, counts)


def _assert_recounted(store: OnlineStore, items: list[ItemId], counts: list[ItemCount]) -> None:
    states = store.get_items(items)
    last = max(c.ts for c in counts)
    for item, state in zip(items, states, strict=True):
        assert state is not None, f"{item} has no state"
        mine = [c for c in counts if c.item_id == item]
        for now in (last, last + 45.0, last + 1900.0, last + 7200.0):  # reads follow writes
            for window in WINDOWS:
                want: dict[str, float] = {}
                for c in mine:
                    if window.contains(c.ts, now):
                        want[c.field] = want.get(c.field, 0.0) + c.amount
                have = _nonzero(state.windows.get(window.name, now=now))
                assert have == want, f"{item} {window.name} at {now - last:+}: {have} != {want}"
        assert state.total_engaged == sum(c.amount for c in mine if c.field in ENGAGED)
        assert state.last_ts == max(c.ts for c in mine)


def check_item_counts_are_counted_once_per_event(store: OnlineStore) -> None:
    tag = _tag()
    a, b = f"{tag}-a", f"{tag}-b"
    batch = [ItemCount(f"{tag}-e1", a, "click", T0), ItemCount(f"{tag}-e1", b, "click", T0)]
    batch.append(ItemCount(f"{tag}-e1", a, "watch_seconds", T0, 30.0))
    store.add_item_counts(batch + batch)  # a row repeated in one call (forwarded twice)
    store.add_item_counts(batch)
    store.add_item_counts([ItemCount(f"{tag}-e1", a, "like", T0)])  # same event, again
    state_a, state_b = store.get_items([a, b])
    assert state_a is not None and state_b is not None
    assert state_a.windows.get("1h", now=T0) == {"click": 1.0, "watch_seconds": 30.0}
    assert state_b.windows.get("1h", now=T0) == {"click": 1.0}
    assert state_a.total_engaged == 1.0
    # A batch mixing counted and new events (a retry after a partial write) adds the new.
    store.add_item_counts([ItemCount(f"{tag}-e1", a, "click", T0),
                           ItemCount(f"{tag}-e2", a, "click", T0 + 1)])  # fmt: skip
    state_a = store.get_items([a])[0]
    assert state_a is not None and state_a.windows.get("1h", now=T0 + 1) == {
        "click": 2.0, "watch_seconds": 30.0}  # fmt: skip
    # One call with an item that counted the event and one that did not: only the second.
    c, d = f"{tag}-c", f"{tag}-d"
    store.add_item_counts([ItemCount(f"{tag}-e9", c, "click", T0)])
    store.add_item_counts([ItemCount(f"{tag}-e9", c, "click", T0),
                           ItemCount(f"{tag}-e9", d, "click", T0)])  # fmt: skip
    state_c, state_d = store.get_items([c, d])
    assert state_c is not None and state_c.windows.get("1h", now=T0) == {"click": 1.0}
    assert state_d is not None and state_d.windows.get("1h", now=T0) == {"click": 1.0}


def check_concurrent_item_counts_lose_nothing(store: OnlineStore) -> None:
    tag, threads, per_thread = _tag(), 4, 150
    items = [f"{tag}-i{i}" for i in range(3)]

    def worker(w: int) -> None:
        for n in range(0, per_thread, 10):
            store.add_item_counts(
                [
                    ItemCount(f"{tag}-{w}-{k}", items[k % 3], "click", T0 + k)
                    for k in range(n, n + 10)
                ]
            )

    pool = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    states = store.get_items(items)
    clicks = [s.windows.get("1h", now=T0 + per_thread)["click"] for s in states if s is not None]
    assert sum(clicks) == threads * per_thread, f"lost updates: {clicks}"
    assert sum(s.total_engaged for s in states if s is not None) == threads * per_thread


def check_trending_top_k_and_removal(store: OnlineStore) -> None:
    tag = _tag()
    a, b, c = f"{tag}-a", f"{tag}-b", f"{tag}-c"
    store.set_trending({a: 5.0, b: 9.0, c: 1.0})
    assert store.top_trending(2) == [(b, 9.0), (a, 5.0)]
    store.set_trending({b: 0.0, c: 7.5})
    assert store.top_trending(3) == [(c, 7.5), (a, 5.0)]
    assert store.top_trending(0) == []
    store.set_trending({a: -1.0, c: 0.0})
    assert store.top_trending(10) == []


def check_deleted_items_are_forgotten(store: OnlineStore) -> None:
    tag = _tag()
    a, b = f"{tag}-a", f"{tag}-b"
    store.add_item_counts([ItemCount(f"{tag}-e1", a, "click", T0)])
    store.add_item_counts([ItemCount(f"{tag}-e2", b, "click", T0)])
    store.set_trending({a: 3.0, b: 2.0})
    store.delete_items([a, f"{tag}-never-seen"])
    assert store.get_items([a])[0] is None
    assert store.get_items([b])[0] is not None
    assert [i for i, _ in store.top_trending(10)] == [b]
    store.set_trending({b: 0.0})


def check_idle_state_expires(store: OnlineStore, *, idle_ttl_s: float) -> None:
    tag = _tag()
    store.put_users([_user(f"{tag}-u")], applied_events=[f"{tag}-e"])
    store.add_item_counts([ItemCount(f"{tag}-e", f"{tag}-i", "click", T0)])
    time.sleep(idle_ttl_s * 1.5 + 0.1)
    assert store.get_users([f"{tag}-u"]) == [None], "an idle user was kept past its TTL"
    assert store.get_items([f"{tag}-i"]) == [None], "an idle item was kept past its TTL"
    assert store.seen_events([f"{tag}-e"]) == [False], "an event marker outlived its TTL"


# --- EventBus ----------------------------------------------------------------------------


def check_each_group_sees_each_users_events_in_order(bus: EventBus) -> None:
    tag = _tag()
    events = [_event(tag, n, user=f"{tag}-u{n % 3}") for n in range(30)]
    for start in range(0, 30, 7):  # several publishes
        bus.publish(events[start : start + 7])
    for group in (f"{tag}-g1", f"{tag}-g2"):
        got = _drain(bus, group, "c", want={e.event_id for e in events})
        mine = [d.event for d in got if d.event.event_id.startswith(tag)]
        assert sorted(e.event_id for e in mine) == sorted(e.event_id for e in events)
        for user in {e.user_id for e in events}:
            sent = [e.event_id for e in events if e.user_id == user]
            assert [e.event_id for e in mine if e.user_id == user] == sent, f"{user} reordered"


def check_unacknowledged_events_are_reclaimed(bus: EventBus, *, consumer_timeout_s: float) -> None:
    tag, group = _tag(), f"{_tag()}-g"
    events = [_event(tag, n) for n in range(6)]
    bus.publish(events)
    got = _drain(bus, group, "dies", want={e.event_id for e in events})
    kept = {e.event_id for e in events[:2]}  # "dies" finished two of its events, then died
    bus.ack(group, [d.message_id for d in got if d.event.event_id in kept])
    bus.ack(group, [d.message_id for d in got if not d.event.event_id.startswith(tag)])
    time.sleep(consumer_timeout_s * 1.2)
    reclaimed = bus.reclaim(group, "survivor", min_idle_s=0.0)
    assert sorted(d.event.event_id for d in reclaimed) == sorted(e.event_id for e in events[2:]), (
        "unacknowledged events were not redelivered"
    )
    assert bus.lag(group) == 4
    bus.ack(group, [d.message_id for d in reclaimed])
    assert bus.lag(group) == 0


def check_lag_reaches_zero_after_ack(bus: EventBus) -> None:
    tag, group = _tag(), f"{_tag()}-g"
    events = [_event(tag, n) for n in range(5)]
    bus.publish(events)
    assert bus.lag(group) >= 5
    got = _drain(bus, group, "c", want={e.event_id for e in events})
    assert bus.lag(group) == len(got), "consumed but unacknowledged events must count as lag"
    bus.ack(group, [d.message_id for d in got])
    assert bus.lag(group) == 0


def check_consume_waits_for_an_event(bus: EventBus) -> None:
    tag, group = _tag(), f"{_tag()}-g"
    for delivery in _drain(bus, group, "c", want=set()):
        bus.ack(group, [delivery.message_id])
    timer = threading.Timer(0.1, lambda: bus.publish([_event(tag, 1)]))
    timer.start()
    got = bus.consume(group, "c", max_events=10, block_s=5.0)
    timer.join()
    assert [d.event.event_id for d in got] == [f"{tag}-e1"]
    bus.ack(group, [d.message_id for d in got])


def check_full_bus_refuses_the_whole_batch(small_bus: EventBus) -> None:
    tag = _tag()
    first, refused = [_event(tag, 1), _event(tag, 2)], [_event(tag, 3), _event(tag, 4)]
    small_bus.publish(first)
    try:
        small_bus.publish(refused)
    except OverflowError:
        pass
    else:
        raise AssertionError("a batch that does not fit was accepted")
    got = _drain(small_bus, f"{tag}-g", "c", want={e.event_id for e in first})
    assert [d.event.event_id for d in got] == [e.event_id for e in first]
    assert small_bus.lag(f"{tag}-g") == 2


# --- helpers -----------------------------------------------------------------------------

_counter = itertools.count()


def _tag() -> str:
    return f"chk{next(_counter)}{uuid.uuid4().hex[:6]}"


def _event(tag: str, n: int, *, user: str | None = None) -> Event:
    return Event(f"{tag}-e{n}", user or f"{tag}-u", f"{tag}-i", "click", T0 + n)


def _drain(bus: EventBus, group: str, consumer: str, *, want: set[str]) -> list[Delivery]:
    """Everything `group` gets until the events in `want` arrived and the log ran dry."""
    got: list[Delivery] = []
    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        batch = bus.consume(group, consumer, max_events=1000, block_s=0.05)
        got += batch
        seen |= {d.event.event_id for d in batch}
        if not batch and want <= seen:
            return got
    raise AssertionError(f"events never arrived: {sorted(want - seen)[:5]}")


def _user(user_id: str, *, seed: int = 0) -> UserState:
    rng = np.random.default_rng(seed)
    windows = WindowCounts()
    for n in range(40):
        windows.add(EVENT_TYPES[n % len(EVENT_TYPES)], ts=T0 + n * 13.0)
    windows.add("watch_seconds", ts=T0 + 100.0, amount=42.5)
    session = SessionVector()
    session.add(rng.normal(size=8).astype(np.float32), weight=1.0, ts=T0, half_life_s=600.0)
    return UserState(
        user_id=user_id, windows=windows, session=session, recent_items=["r2", "r1"],
        watched={"w1": T0 + 5.0}, skipped={"s1": T0 + 9.0}, history=["h0", "h1"],
        long_term=rng.normal(size=8).astype(np.float32), last_ts=T0 + 520.0,
    )  # fmt: skip


def _assert_same_user(want: UserState, have: UserState) -> None:
    now = want.last_ts
    assert have.user_id == want.user_id
    assert have.windows.all(now=now) == want.windows.all(now=now), "windows differ"
    want_session, have_session = (
        want.session.at(now, half_life_s=600.0),
        have.session.at(now, half_life_s=600.0),
    )
    assert want_session is not None and have_session is not None
    assert np.array_equal(want_session, have_session), "session vectors differ"
    assert want.long_term is not None and have.long_term is not None
    assert np.array_equal(want.long_term, have.long_term)
    assert have.long_term.dtype == want.long_term.dtype
    assert (have.recent_items, have.watched, have.skipped, have.history, have.last_ts) == (
        want.recent_items, want.watched, want.skipped, want.history, want.last_ts,
    )  # fmt: skip


def _nonzero(counts: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in counts.items() if v > 1e-9}
