"""The stream processor: applies events to the online store and the offline log.

One code path updates both (dual write): rolling windows per user and item, the session
interest vector, recent items, the watched-at map and the trending table. Updates are
idempotent by event id, so a redelivered event is never counted twice.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from recomatrix.degrade import FailureLog
from recomatrix.events.base import Delivery, EventBus, OwnsPartitions
from recomatrix.features.base import ItemCount, LeaseLost, OnlineStore
from recomatrix.features.state import (
    ENGAGED,
    ItemState,
    SessionVector,
    UserState,
    engaged,
    trending_score,
)
from recomatrix.features.windows import WINDOWS, WindowCounts
from recomatrix.stream.user_cache import UserCache
from recomatrix.types import ENGAGEMENT_WEIGHT, WATCHED_TYPES, Event, ItemId, UserId

log = logging.getLogger(__name__)

VectorLookup = Callable[[ItemId], "np.ndarray | None"]
EventSink = Callable[[Sequence[Event]], None]


@dataclass(frozen=True, slots=True)
class StreamSettings:
    session_half_life_s: float = 600.0  # session interest fades to half in 10 minutes
    recent_items: int = 50  # length of the recent-items list per user
    history_items: int = 200  # positive items kept per user for the long-term profile
    watched_retention_s: float = 7 * 86400.0  # watched-at entries older than this are dropped
    skipped_retention_s: float = 86400.0  # skipped-at entries older than this are dropped
    trending_refresh_s: float = 5.0  # how often cooling items are re-scored at wall time
    trending_interval_s: float = 1.0  # the consuming loop re-scores touched items this often
    batch_events: int = 10_000  # most events the consuming loop takes from the bus at once
    # User states a worker keeps decoded between batches, on a bus that gives each user's
    # events to one consumer at a time (`OwnsPartitions`; 0 = always read the store).
    cached_users: int = 20_000
    cached_user_age_s: float = 60.0  # read from the store again after this long
    # On such a bus, item counts are added (and batches acknowledged) this often, for all
    # the batches applied since (users are written with every batch); 0 = every batch.
    item_flush_s: float = 0.25
    # Deliveries pending this long on a partition this consumer holds are taken over: a
    # consumer that read them after losing the partition (it stalled between renewing its
    # lease and reading) had its write refused and left them. Looked for every quarter of it.
    stuck_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.cached_users < 0:
            raise ValueError(f"setting stream.cached_users: {self.cached_users} is negative; "
                             "use 0 to read users from the store every batch")  # fmt: skip
        if self.cached_user_age_s <= 0:
            raise ValueError(f"setting stream.cached_user_age_s: {self.cached_user_age_s} "
                             "must be > 0 (seconds)")  # fmt: skip
        if self.stuck_after_s <= 0:
            raise ValueError(f"setting stream.stuck_after_s: {self.stuck_after_s} must be > 0 "
                             "(seconds; keep it well above the bus lease, 15 s)")  # fmt: skip
        if self.item_flush_s < 0:
            raise ValueError(f"setting stream.item_flush_s: {self.item_flush_s} is negative; "
                             "use 0 to add item counts with every batch")  # fmt: skip


class StreamProcessor:
    """Consumes the bus as one consumer of `group` and applies batches of events."""

    def __init__(
        self,
        *,
        bus: EventBus,
        store: OnlineStore,
        item_vector: VectorLookup,
        offline_sink: EventSink | None = None,
        settings: StreamSettings = StreamSettings(),
        group: str = "stream",
        consumer: str = "embedded-1",
    ) -> None:
        self.bus, self.store, self.item_vector = bus, store, item_vector
        self.offline_sink = offline_sink
        self.settings, self.group, self.consumer = settings, group, consumer
        self.applied = 0
        self.on_applied: list[Callable[[Sequence[Event]], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry: list[Delivery] = []  # a batch whose apply failed, still unacknowledged
        # Items applied since trending was last re-scored, and the newest event time among them.
        self._touched: set[ItemId] = set()
        self._touched_ts = 0.0
        self._rescored = -math.inf  # time.monotonic() of the last re-score
        # A bus giving each user's events to one consumer at a time: this processor is then
        # the only writer of its users, may cache them and count items later.
        self._owner = bus if isinstance(bus, OwnsPartitions) else None
        # Deferred item counts and the deliveries they complete (see `flush`).
        self._defer_items = self._owner is not None and settings.item_flush_s > 0
        self._item_backlog: dict[str, Event] = {}  # by event id: a repeat is counted once
        self._unacked: list[str] = []
        self._flushed = self._looked_for_stuck = time.monotonic()
        self.users: UserCache | None = None
        # A store handing out its own objects (`shares_states`) would show readers the
        # cached states as they change.
        shared = getattr(store, "shares_states", False)
        if self._owner is not None and not shared and settings.cached_users > 0:
            self.users = UserCache(
                max_users=settings.cached_users, max_age_s=settings.cached_user_age_s
            )

    def apply(self, events: Sequence[Event], *, copy_on_write: bool = True) -> int:
        """Apply events not applied before and re-score their items; returns how many were new.

        The order makes a crash at any step safe with at-least-once redelivery: events
        already recorded as applied are skipped; item counts are added exactly once per
        (event, item) by the store; users are put together with the record of the applied
        events in one atomic write; the caller acknowledges the bus only after that.
        A crash before the user write re-applies the users on redelivery, while the items
        ignore the counts they already have; a crash after it finds the events recorded.

        `copy_on_write=False` mutates stored user states in place: only safe while nobody
        reads (bulk bootstrap), and much faster.
        """
        fresh = self._apply(events, copy_on_write)
        if fresh:
            self.refresh_trending(sorted({e.item_id for e in fresh}), now=fresh[-1].ts)
        return len(fresh)

    def _apply(
        self,
        events: Sequence[Event],
        copy_on_write: bool,
        *,
        consumed: bool = False,
        count_items: bool = True,
    ) -> list[Event]:
        """`apply` without the trending re-score; returns the fresh events, oldest first.
        `consumed`: the events came from this processor's own `consume`, so their users are
        in partitions it holds and their states may come from and go to `self.users`.
        `count_items=False`: the caller adds the item counts later (`flush`)."""
        unique = list({e.event_id: e for e in events}.values())
        seen = self.store.seen_events([e.event_id for e in unique])
        fresh = [e for e, old in zip(unique, seen, strict=True) if not old]
        if not fresh:
            return []
        fresh.sort(key=_event_time)
        by_user: dict[UserId, list[Event]] = defaultdict(list)
        for event in fresh:
            by_user[event.user_id].append(event)
        users = self._load_users(sorted(by_user), copy_on_write, cached=consumed)
        changed = {
            user_id: _update_user(users[user_id], user_events, self.settings, self.item_vector)
            for user_id, user_events in by_user.items()
        }
        if self.offline_sink is not None:  # before the commit: a crash repeats, never loses
            self.offline_sink(fresh)
        if count_items:
            self.store.add_item_counts(item_counts(fresh))
        self.store.put_users(
            list(users.values()), applied_events=[e.event_id for e in fresh], changed=changed
        )
        if self.users is not None and consumed:
            self.users.put(users.values())
        self.applied += len(fresh)
        for callback in self.on_applied:
            callback(fresh)
        return fresh

    def refresh_trending(self, item_ids: Sequence[ItemId], *, now: float) -> None:
        """Re-score items already in the trending table so cooling items drop out."""
        states = self.store.get_items(item_ids)
        self.store.set_trending(
            {
                item_id: _trending_score_of(state, now)
                for item_id, state in zip(item_ids, states, strict=True)
            }
        )

    def cool_trending(self, *, now: float, k: int = 1000) -> None:
        """Re-score the current top `k` at `now`, so items nobody engages with any more
        fall out of the trending table (only touched items are re-scored otherwise)."""
        self.refresh_trending([item_id for item_id, _ in self.store.top_trending(k)], now=now)

    def run_once(self, *, max_events: int | None = None, block_s: float = 0.05) -> int:
        """Consume one batch from the bus (or retry a failed one), apply it, acknowledge it.

        Items it touched are re-scored for trending at most every `trending_interval_s`
        (wall time), not after every batch: one read of their counters per interval.
        On a partitioned bus the batch's item counts wait for `flush` (at most
        `item_flush_s`, or until the bus has nothing more): one counting script per item
        for several batches instead of one per batch, the main cost of Redis under load.
        """
        deliveries, self._retry = self._retry, []
        if not deliveries and self._stuck_due():
            deliveries = self.bus.reclaim(
                self.group, self.consumer, min_idle_s=self.settings.stuck_after_s
            )
        if not deliveries:
            batch = self.settings.batch_events if max_events is None else max_events
            deliveries = self.bus.consume(
                self.group, self.consumer, max_events=batch, block_s=block_s
            )
        if self.users is not None and self._owner is not None:
            self.users.follow(self._owner.ownership_epoch(self.group, self.consumer))
        fresh: list[Event] = []
        if deliveries:
            events = [d.event for d in deliveries]
            try:
                fresh = self._apply(
                    events, copy_on_write=True, consumed=True, count_items=not self._defer_items
                )
            except LeaseLost as lost:
                self._give_up_partitions(lost)
                return 0
            except Exception:
                self._retry = deliveries  # still pending on the bus; applying again is a no-op
                raise
            if self._defer_items:
                # Every delivered event, not only those new to the users: a batch delivered
                # again after a crash between its user write and the flush finds its events
                # "seen", but their items never counted them (items skip what they counted).
                for event in events:
                    self._item_backlog.setdefault(event.event_id, event)
                self._unacked += [d.message_id for d in deliveries]
            else:
                self.bus.ack(self.group, [d.message_id for d in deliveries])
        if self._unacked and (
            not deliveries or time.monotonic() - self._flushed >= self.settings.item_flush_s
        ):
            self.flush()
        self._rescore_when_due(fresh)
        return len(fresh)

    def _stuck_due(self) -> bool:
        if time.monotonic() - self._looked_for_stuck < self.settings.stuck_after_s / 4:
            return False
        self._looked_for_stuck = time.monotonic()
        return True

    def _give_up_partitions(self, lost: LeaseLost) -> None:
        """The store refused a user write: another consumer holds one of the batch's
        partitions now. No user state or applied-event record of the batch was written
        (its events may be in the offline log already, which a redelivery repeats, as after
        a crash). It and the batches waiting for their item counts stay pending on the bus,
        unacknowledged: whoever holds each partition takes them over (this consumer too, for
        those it still holds, at its next `consume`; the holder of the others at its next
        look for stuck deliveries, `stuck_after_s`), and, applied again, they count what was
        not counted."""
        log.warning("stream processor %s: %s; dropping its batch for the new owner",
                    self.consumer, lost)  # fmt: skip
        self._item_backlog, self._unacked = {}, []
        if self._owner is not None:
            self._owner.lost_lease(self.group, self.consumer)  # the cache follows the epoch

    def flush(self) -> None:
        """Add the item counts of the batches applied since the last flush, then acknowledge
        those batches. A failure keeps both for the next call; a crash leaves the batches
        pending, delivered again to whoever holds their partitions (users skip them, items
        count what they have not counted)."""
        if self._item_backlog:
            self.store.add_item_counts(item_counts(self._item_backlog.values()))
            self._item_backlog = {}
        if self._unacked:
            self.bus.ack(self.group, self._unacked)
            self._unacked = []
        self._flushed = time.monotonic()

    def _rescore_when_due(self, fresh: Sequence[Event]) -> None:
        """Re-score the items touched since the last re-score once the interval is over
        and their counts are in the store (no deferred counts wait for `flush`)."""
        self._touched.update(e.item_id for e in fresh)
        if fresh:
            self._touched_ts = max(self._touched_ts, fresh[-1].ts)
        if not self._touched or self._item_backlog:
            return
        if time.monotonic() - self._rescored >= self.settings.trending_interval_s:
            self.refresh_trending(sorted(self._touched), now=self._touched_ts)
            self._touched.clear()  # only once scored: a failed re-score is tried again
            self._rescored = time.monotonic()

    def start(self) -> None:
        """Run `run_once` in a background thread until `stop()`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="stream-processor", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        refreshed = time.monotonic()
        failures = FailureLog(log, "stream processor batch failed; retrying it every 0.5 s")
        while not self._stop.is_set():
            try:
                self.run_once()
                if time.monotonic() - refreshed >= self.settings.trending_refresh_s:
                    refreshed = time.monotonic()
                    self.cool_trending(now=time.time())
                failures.recovered()
            except Exception as err:  # keep consuming; the failed batch is retried first
                failures.failed(err)
                self._stop.wait(0.5)
        try:
            self.flush()  # what was applied is acknowledged before the worker stops
        except Exception:  # left pending: delivered again, idempotently
            log.exception("stream processor: the last item counts were not flushed")

    def _load_users(
        self, user_ids: Sequence[UserId], copy: bool, *, cached: bool
    ) -> dict[UserId, UserState]:
        """The users' states to update: with `cached`, this worker's own cached ones (taken
        out of the cache until stored again, so a failed batch leaves none half-applied
        there), the others read from the store. Without it, their cached states are dropped:
        the store gets newer ones."""
        found: dict[UserId, UserState] = {}
        if self.users is not None and cached:
            found, user_ids = self.users.take(user_ids)
        elif self.users is not None:
            self.users.drop(user_ids)
        states = self.store.get_users(user_ids)
        loaded = {
            u: (UserState(u) if s is None else s.copy() if copy else s)
            for u, s in zip(user_ids, states, strict=True)
        }
        return {**found, **loaded}


def _trending_score_of(state: ItemState | None, now: float) -> float:
    """`trending_score` from the two windows it reads (not every `ItemStats` field)."""
    if state is None:
        return 0.0
    recent, hour = (state.windows.get(name, now=now) for name in ("5m", "1h"))
    return trending_score(engaged(recent), engaged(hour))


def _event_time(event: Event) -> float:
    return event.ts


def _update_user(
    user: UserState, events: Sequence[Event], settings: StreamSettings, item_vector: VectorLookup
) -> set[str]:
    """Apply one user's new events, oldest first, batched: one window add per (field, 10 s
    bucket) and one session-vector update for all the engagement (the same sums).
    Returns the names of the state's fields it changed."""
    changed = {"windows", "last_ts"}
    _count_in_windows(user.windows, events)
    if _engage_session(user.session, events, settings.session_half_life_s, item_vector):
        changed.add("session")
    # Recent items feed the "share of this genre in what you just watched" feature: a
    # skip is the opposite of interest, so it must not make its genre look wanted.
    newest_first: dict[ItemId, None] = {}
    for event in reversed(events):
        if event.type not in ("impression", "skip"):
            newest_first.setdefault(event.item_id)
    if newest_first:
        older = [i for i in user.recent_items if i not in newest_first]
        user.recent_items = [*newest_first, *older][: settings.recent_items]
        changed.add("recent_items")
    positives = [e.item_id for e in events if e.type in ENGAGED]
    if positives:
        user.history.extend(positives)
        del user.history[: -settings.history_items]
        # The trained vector no longer covers the history: the engine recomputes it from
        # the history at the next request (as the ranker's training rows do at each event).
        user.long_term = None
        changed.update(("history", "long_term"))
    watched = [e for e in events if e.type in WATCHED_TYPES]
    if watched:
        user.watched = _remember(user.watched, watched, settings.watched_retention_s)
        changed.add("watched")
    skipped = [e for e in events if e.type == "skip"]
    if skipped:
        user.skipped = _remember(user.skipped, skipped, settings.skipped_retention_s)
        changed.add("skipped")
    user.last_ts = max(user.last_ts, events[-1].ts)
    return changed


def _count_in_windows(windows: WindowCounts, events: Sequence[Event]) -> None:
    """Add events to rolling windows summed per 10 s bucket: every window's buckets are
    whole multiples of the 10 s one, so the counts land where single adds would."""
    finest = WINDOWS[0]
    sums: dict[int, tuple[float, dict[str, float]]] = {}  # bucket -> (a ts in it, amounts)
    for event in events:
        amounts = sums.setdefault(finest.bucket_of(event.ts), (event.ts, {}))[1]
        amounts[event.type] = amounts.get(event.type, 0.0) + 1.0
        if event.watch_seconds:
            amounts["watch_seconds"] = amounts.get("watch_seconds", 0.0) + event.watch_seconds
    for ts, amounts in sums.values():
        windows.add_amounts(amounts, ts=ts)


def _engage_session(
    session: SessionVector, events: Sequence[Event], half_life_s: float, item_vector: VectorLookup
) -> bool:
    """Add the events' weighted item vectors to the session in one step: each fades from its
    event time to the newest time seen, as `SessionVector.add` one by one would. False when
    no event engaged with an item that has a vector (the session is unchanged)."""
    times, weights, vectors = [], [], []
    for event in events:
        weight = ENGAGEMENT_WEIGHT.get(event.type, 0.0)
        vector = item_vector(event.item_id) if weight else None
        if vector is not None:
            times.append(event.ts)
            weights.append(weight)
            vectors.append(vector)
    if not vectors:
        return False
    if session.vector is None:
        session.vector, session.ts = np.zeros_like(vectors[0], dtype=np.float32), times[0]
    newest = max(session.ts, times[-1])
    ages = newest - np.array([session.ts, *times])
    fades = np.power(0.5, ages / half_life_s) * np.array([1.0, *weights])
    stacked = np.array([session.vector, *vectors], dtype=np.float32)
    session.vector = fades.astype(np.float32) @ stacked
    session.ts = newest
    return True


def item_counts(events: Iterable[Event]) -> list[ItemCount]:
    """The counters the events add to their items (one per event, plus its watch time)."""
    counts = []
    for event in events:
        counts.append(ItemCount(event.event_id, event.item_id, event.type, event.ts))
        if event.watch_seconds:
            counts.append(ItemCount(event.event_id, event.item_id, "watch_seconds", event.ts,
                                    event.watch_seconds))  # fmt: skip
    return counts


def _remember(
    seen: dict[ItemId, float], events: Sequence[Event], retention_s: float
) -> dict[ItemId, float]:
    """`seen` with the events' items at their latest time, past retention pruned.

    A touched item moves to the end, so the map stays in order of last touch (about time
    order) and pruning only walks the expired entries at its front: a heavy user's
    hundreds of recent entries are not scanned on every event. An entry touched late with
    an old time may outlive retention until it reaches the front (kept longer, not lost).
    """
    for event in events:
        seen[event.item_id] = max(event.ts, seen.pop(event.item_id, 0.0))
    if len(seen) > 256:
        horizon = events[-1].ts - retention_s
        expired = []
        for item_id, ts in seen.items():
            if ts >= horizon:
                break
            expired.append(item_id)
        for item_id in expired:
            del seen[item_id]
    return seen
