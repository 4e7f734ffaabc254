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
from collections.abc import Callable, Sequence

from recomatrix.degrade import FailureLog
from recomatrix.events.base import Delivery, EventBus, OwnsPartitions
from recomatrix.features.base import LeaseLost, OnlineStore
from recomatrix.features.state import ItemState, UserState, engaged, trending_score
from recomatrix.stream.pending import PendingWrites
from recomatrix.stream.settings import StreamSettings
from recomatrix.stream.updates import VectorLookup, item_counts, update_user
from recomatrix.stream.user_cache import UserCache
from recomatrix.types import Event, ItemId, UserId

__all__ = ["StreamProcessor", "StreamSettings", "VectorLookup", "item_counts"]

log = logging.getLogger(__name__)

EventSink = Callable[[Sequence[Event]], None]


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
        # Users, item counts and acknowledgements wait for `flush` (stream/pending.py).
        self._defer = self._owner is not None and settings.item_flush_s > 0
        self._pending = PendingWrites()
        self._epoch: int | None = None  # the bus's ownership epoch the pending writes belong to
        self._drops = 0  # how often the pending writes were dropped (`_drop_pending`)
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
        deferred: bool = False,
    ) -> list[Event]:
        """`apply` without the trending re-score; returns the fresh events, oldest first.
        `consumed`: the events came from this processor's own `consume`, so their users are
        in partitions it holds and their states may come from and go to `self.users`.
        `deferred`: the users are stored, and the item counts added, at the next `flush`;
        meanwhile their states wait in `self._pending`, where the next batches find them."""
        pending = self._pending if deferred else None
        unique = list({e.event_id: e for e in events}.values())
        ids = [e.event_id for e in unique]
        seen = self.store.seen_events(ids)
        if pending is not None:
            seen = [a or b for a, b in zip(seen, pending.applied_already(ids), strict=True)]
        fresh = [e for e, old in zip(unique, seen, strict=True) if not old]
        if not fresh:
            return []
        fresh.sort(key=_event_time)
        by_user: dict[UserId, list[Event]] = defaultdict(list)
        for event in fresh:
            by_user[event.user_id].append(event)
        held = {} if pending is None else pending.held(by_user)
        loaded = self._load_users(
            sorted(u for u in by_user if u not in held), copy_on_write, cached=consumed
        )
        users = {**held, **loaded}
        try:
            changed = {
                user_id: update_user(users[user_id], user_events, self.settings, self.item_vector)
                for user_id, user_events in by_user.items()
            }
            if self.offline_sink is not None:  # before the commit: a crash repeats, never loses
                self.offline_sink(fresh)
        except Exception:
            if held:  # pending states half-changed: start again from what the store holds
                self._drop_pending()
            raise
        if pending is not None:
            pending.add_users(users, changed, fresh)
        else:
            self.store.add_item_counts(item_counts(fresh))
            self.store.put_users(
                list(users.values()), applied_events=[e.event_id for e in fresh], changed=changed
            )
            if self.users is not None and consumed:
                self.users.put(users.values())
            self._stored(fresh)
        return fresh

    def _stored(self, events: Sequence[Event]) -> None:
        """Events applied and now in the store: counted in `applied`, told to `on_applied`."""
        self.applied += len(events)
        for callback in self.on_applied:
            callback(events)

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
        On a partitioned bus the batch's users, item counts and acknowledgement wait for
        `flush` (at most `item_flush_s`, or until the bus has nothing more): one write per
        user and one counting script per item for several batches instead of one per batch.
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
        if self._owner is not None and not self._follow_epoch():
            return 0
        fresh: list[Event] = []
        if deliveries:
            events = [d.event for d in deliveries]
            drops = self._drops
            try:
                fresh = self._apply(events, copy_on_write=True, consumed=True, deferred=self._defer)
            except LeaseLost as lost:
                self._give_up_partitions(lost)
                return 0
            except Exception:
                if self._drops == drops:  # else it comes back with the dropped ones, in order
                    self._retry = deliveries  # still pending; applying again is a no-op
                raise
            if self._defer:
                self._pending.add_deliveries(events, (d.message_id for d in deliveries))
            else:
                self.bus.ack(self.group, [d.message_id for d in deliveries])
        if self._pending.deliveries and (
            not deliveries or time.monotonic() - self._flushed >= self.settings.item_flush_s
        ):
            try:
                self.flush()
            except LeaseLost as lost:
                self._give_up_partitions(lost)
                return 0
        self._rescore_when_due(fresh)
        return len(fresh)

    def _follow_epoch(self) -> bool:
        """Notice that this consumer acquired partitions (the bus's ownership epoch moved):
        what it cached or holds pending about users may be stale (it may have held them
        before, lost them, and another consumer written them since). The cache is emptied;
        pending writes are dropped and False returned (the batch in hand waits with them)."""
        assert self._owner is not None
        epoch = self._owner.ownership_epoch(self.group, self.consumer)
        if self.users is not None:
            self.users.follow(epoch)
        moved, self._epoch = epoch != self._epoch, epoch
        if moved and self._pending.users:
            log.info("stream processor %s acquired partitions: applying again what it had "
                     "not stored", self.consumer)  # fmt: skip
            self._drop_pending()
            return False
        return True

    def _stuck_due(self) -> bool:
        if time.monotonic() - self._looked_for_stuck < self.settings.stuck_after_s / 4:
            return False
        self._looked_for_stuck = time.monotonic()
        return True

    def _give_up_partitions(self, lost: LeaseLost) -> None:
        """The store refused a user write: another consumer holds one of the written users'
        partitions now. Nothing of that write was stored (the events may be in the offline
        log already, which a redelivery repeats, as after a crash)."""
        log.warning("stream processor %s: %s; dropping what it had not stored for the new "
                    "owner", self.consumer, lost)  # fmt: skip
        self._drop_pending()

    def _drop_pending(self) -> None:
        """Forget every batch applied since the last flush. They stay pending on the bus,
        unacknowledged: whoever holds each partition takes them over (this consumer, for
        those it still holds, at its next `consume`; the holder of the others at its next
        look for stuck deliveries, `stuck_after_s`), and applies them again from what the
        store holds, counting what was not counted."""
        self._pending = PendingWrites()
        self._drops += 1
        if self._owner is not None:
            self._owner.lost_lease(self.group, self.consumer)  # the cache follows the epoch
            self._epoch = self._owner.ownership_epoch(self.group, self.consumer)

    def flush(self) -> None:
        """Store the users changed by the batches applied since the last flush, with the ids
        of their events, then add those batches' item counts, then acknowledge them. A
        failure keeps what was not done for the next call; a crash leaves the batches
        pending, delivered again to whoever holds their partitions (users skip the events
        recorded as applied, items count what they have not counted). `LeaseLost`: a
        user's partition is held by another consumer now, nothing was stored."""
        pending = self._pending
        if pending.users or pending.applied:
            self.store.put_users(
                list(pending.users.values()),
                applied_events=list(pending.applied),
                changed=pending.fields,
            )
            if self.users is not None:
                self.users.put(pending.users.values())
            stored = list(pending.applied.values())
            pending.users_stored()
            self._stored(stored)
        if pending.items:
            self.store.add_item_counts(item_counts(pending.items.values()))
            pending.items = {}
        if pending.deliveries:
            self.bus.ack(self.group, pending.deliveries)
            pending.deliveries = []
        self._flushed = time.monotonic()

    def _rescore_when_due(self, fresh: Sequence[Event]) -> None:
        """Re-score the items touched since the last re-score once the interval is over
        and their counts are in the store (no deferred counts wait for `flush`)."""
        self._touched.update(e.item_id for e in fresh)
        if fresh:
            self._touched_ts = max(self._touched_ts, fresh[-1].ts)
        if not self._touched or self._pending.items:
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
