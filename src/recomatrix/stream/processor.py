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
from recomatrix.events.base import CountRelay, Delivery, EventBus, OwnsPartitions, Receipt
from recomatrix.features.base import LeaseLost, OnlineStore, RemembersUserWrites
from recomatrix.features.state import ItemState, UserState, engaged, trending_score
from recomatrix.stream.pacing import LoadGauge
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
        relay: CountRelay | None = None,
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
        # With a relay, counts other consumers forwarded to the partitions this one holds
        # are taken and counted at its flushes; with `relay_item_counts` too, it forwards
        # the counts of items in partitions it does not hold to their holders.
        self._relay = relay if self._defer_items else None
        self._unacked: list[str] = []
        self._flushed = self._looked_for_stuck = time.monotonic()
        self._load = LoadGauge(settings)  # whether item counts wait, and reads
        self._hot = False  # the last batch asks the loop to wait (`LoadGauge.paces`)
        self.users: UserCache | None = None
        # Checks an aged cached user instead of reading it whole, where the store can.
        self._unchanged = (store.unchanged_since_written
                           if isinstance(store, RemembersUserWrites) else None)  # fmt: skip
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
        seen = self.store.seen_events([e.event_id for e in unique], _placing_times(unique))
        fresh = [e for e, old in zip(unique, seen, strict=True) if not old]
        if not fresh:
            return []
        fresh.sort(key=_event_time)
        by_user: dict[UserId, list[Event]] = defaultdict(list)
        for event in fresh:
            by_user[event.user_id].append(event)
        users = self._load_users(sorted(by_user), copy_on_write, cached=consumed)
        changed = {
            user_id: update_user(users[user_id], user_events, self.settings, self.item_vector)
            for user_id, user_events in by_user.items()
        }
        if self.offline_sink is not None:  # before the commit: a crash repeats, never loses
            self.offline_sink(fresh)
        if count_items:
            self.store.add_item_counts(item_counts(fresh))
        self.store.put_users(
            list(users.values()),
            applied_events=[e.event_id for e in fresh],
            applied_times=_placing_times(fresh),
            changed=changed,
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
        for several batches instead of one per batch, the main cost of Redis under load;
        but not while waiting would merge little (`LoadGauge.merges_little`).
        """
        deliveries, self._retry = self._retry, []
        if not deliveries and self._stuck_due():
            deliveries = self.bus.reclaim(
                self.group, self.consumer, min_idle_s=self.settings.stuck_after_s
            )
        batch = self.settings.batch_events if max_events is None else max_events
        consumed = not deliveries
        if consumed:
            deliveries = self.bus.consume(
                self.group, self.consumer, max_events=batch, block_s=block_s
            )
        self._hot = (
            consumed
            and self._defer_items
            and self._load.paces(  # not a retry, a reclaim
                deliveries,
                full=len(deliveries) >= batch,
                backlogged=self._owner is not None
                and self._owner.backlogged(self.group, self.consumer),
            )
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
                self._hot = False
                return 0
            except Exception:
                self._retry = deliveries  # still pending on the bus; applying again is a no-op
                raise
            if self._defer_items:
                # Every delivered event, not only those new to the users: a batch delivered
                # again after a crash between its user write and the flush finds its events
                # "seen", but their items never counted them (items skip what they counted).
                try:
                    own = self._forward_others(events)
                except Exception:
                    self._retry = deliveries  # applied: applying again only forwards again
                    raise
                for event in own:
                    self._item_backlog.setdefault(event.event_id, event)
                self._load.counted(own)
                self._unacked += [d.message_id for d in deliveries]
            else:
                self.bus.ack(self.group, [d.message_id for d in deliveries])
        due = time.monotonic() - self._flushed >= self.settings.item_flush_s
        if self._unacked and (not deliveries or self._hot or self._load.merges_little() or due):
            self.flush()
        elif self._relay is not None and due:  # counts forwarded to this consumer wait
            self.flush()
        self._rescore_when_due([] if self._defer_items else fresh)
        return len(fresh)

    def _forward_others(self, events: Sequence[Event]) -> Sequence[Event]:
        """With a relay: forward the item counts of events whose item's partition another
        consumer holds, to it; returns the events whose items this consumer counts."""
        if (
            self._relay is None
            or self._owner is None
            or not self.settings.relay_item_counts
            or self._load.merges_little()
        ):
            # Not forwarding (the default), or under a light load: this batch's counts are
            # added by this consumer, not at the holders' next flush, so a click shows on
            # its item sooner. Counting is idempotent and atomic per item, so any worker
            # may count any item.
            return events
        held = self._owner.held_partitions(self.group, self.consumer)
        partition_of = self._relay.partition_of
        own: list[Event] = []
        others: dict[int, list[Event]] = defaultdict(list)
        for event in events:
            partition = partition_of(event.item_id)
            if partition in held:
                own.append(event)
            else:
                others[partition].append(event)
        self._relay.forward({p: item_counts(batch) for p, batch in others.items()})
        return own

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
        """Add the item counts of the batches applied since the last flush, and with a relay
        those other consumers forwarded to this one's partitions, then acknowledge those
        batches. A failure keeps them all for the next call; a crash leaves the batches
        pending, delivered again to whoever holds their partitions (users skip them, items
        count what they have not counted), and the forwarded counts in the relay."""
        counts = item_counts(self._item_backlog.values())
        receipt: Receipt = {}
        if self._relay is not None and self._owner is not None:
            forwarded, receipt = self._relay.take(
                self._owner.held_partitions(self.group, self.consumer)
            )
            counts += forwarded
        if counts:
            self.store.add_item_counts(counts)
            self._touched.update(c.item_id for c in counts)
            self._touched_ts = max(self._touched_ts, max(c.ts for c in counts))
        self._item_backlog = {}
        if self._relay is not None and receipt:
            self._relay.release(receipt)  # only once counted: a failure takes them again
        if self._unacked:
            self.bus.ack(self.group, self._unacked)
            self._unacked = []
        self._flushed = time.monotonic()

    def _rescore_when_due(self, fresh: Sequence[Event]) -> None:
        """Re-score the items touched since the last re-score once the interval is over
        and their counts are in the store (no deferred counts wait for `flush`)."""
        self._touched.update(e.item_id for e in fresh)
        if fresh:
            self._touched_ts = max(self._touched_ts, fresh[-1].ts)  # oldest first
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
            began = time.monotonic()
            try:
                self.run_once()
                if time.monotonic() - refreshed >= self.settings.trending_refresh_s:
                    refreshed = time.monotonic()
                    self.cool_trending(now=time.time())
                failures.recovered()
            except Exception as err:  # keep consuming; the failed batch is retried first
                failures.failed(err)
                self._stop.wait(0.5)
                continue
            if self._hot:
                self._stop.wait(max(0.0, self.settings.item_flush_s - (time.monotonic() - began)))
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
            found, user_ids = self.users.take(user_ids, self._unchanged)
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


def _placing_times(events: Sequence[Event]) -> list[float | None]:
    """The times that place the events' applied records: None where the server stamped
    `ts` on arrival (a client's retry would have another)."""
    return [e.ts if e.ts_given else None for e in events]
