"""The stream processor: applies events to the online store and the offline log.

One code path updates both (dual write): rolling windows per user and item, the session
interest vector, recent items, the watched-at map and the trending table. Updates are
idempotent by event id, so a redelivered event is never counted twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recomatrix.events.base import Delivery, EventBus
from recomatrix.features.base import ItemCount, OnlineStore
from recomatrix.features.state import ENGAGED, ItemStats, UserState, trending_score
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

    def apply(self, events: Sequence[Event], *, copy_on_write: bool = True) -> int:
        """Apply events not applied before; returns how many were new.

        The order makes a crash at any step safe with at-least-once redelivery: events
        already recorded as applied are skipped; item counts are added exactly once per
        (event, item) by the store; users are put together with the record of the applied
        events in one atomic write; the caller acknowledges the bus only after that.
        A crash before the user write re-applies the users on redelivery, while the items
        ignore the counts they already have; a crash after it finds the events recorded.

        `copy_on_write=False` mutates stored user states in place: only safe while nobody
        reads (bulk bootstrap), and much faster.
        """
        unique = list({e.event_id: e for e in events}.values())
        seen = self.store.seen_events([e.event_id for e in unique])
        fresh = [e for e, old in zip(unique, seen, strict=True) if not old]
        if not fresh:
            return 0
        fresh.sort(key=lambda e: e.ts)
        users = self._load_users(sorted({e.user_id for e in fresh}), copy_on_write)
        for event in fresh:
            self._update_user(users[event.user_id], event)
        if self.offline_sink is not None:  # before the commit: a crash repeats, never loses
            self.offline_sink(fresh)
        self.store.add_item_counts([c for e in fresh for c in _item_counts(e)])
        self.store.put_users(list(users.values()), applied_events=[e.event_id for e in fresh])
        # Re-read the items: other workers add to the same counters concurrently.
        self.refresh_trending(sorted({e.item_id for e in fresh}), now=fresh[-1].ts)
        self.applied += len(fresh)
        for callback in self.on_applied:
            callback(fresh)
        return len(fresh)

    def refresh_trending(self, item_ids: Sequence[ItemId], *, now: float) -> None:
        """Re-score items already in the trending table so cooling items drop out."""
        states = self.store.get_items(item_ids)
        self.store.set_trending(
            {
                item_id: trending_score(s.engaged_5m, s.engaged_1h)
                for item_id, state in zip(item_ids, states, strict=True)
                for s in (ItemStats.of(state, now=now),)
            }
        )

    def run_once(self, *, max_events: int = 2000, block_s: float = 0.05) -> int:
        """Consume one batch from the bus (or retry a failed one), apply it, acknowledge it."""
        deliveries, self._retry = self._retry, []
        if not deliveries:
            deliveries = self.bus.consume(
                self.group, self.consumer, max_events=max_events, block_s=block_s
            )
        if not deliveries:
            return 0
        try:
            applied = self.apply([d.event for d in deliveries])
        except Exception:
            self._retry = deliveries  # still pending on the bus; applying again is a no-op
            raise
        self.bus.ack(self.group, [d.message_id for d in deliveries])
        return applied

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
        while not self._stop.is_set():
            try:
                self.run_once()
                if time.monotonic() - refreshed >= self.settings.trending_refresh_s:
                    refreshed = time.monotonic()
                    top = [item_id for item_id, _ in self.store.top_trending(1000)]
                    self.refresh_trending(top, now=time.time())
            except Exception:  # keep consuming; the failed batch is retried first
                log.exception("stream processor batch failed; retrying it in 0.5 s")
                self._stop.wait(0.5)

    def _load_users(self, user_ids: Sequence[UserId], copy: bool) -> dict[UserId, UserState]:
        states = self.store.get_users(user_ids)
        return {
            u: (UserState(u) if s is None else s.copy() if copy else s)
            for u, s in zip(user_ids, states, strict=True)
        }

    def _update_user(self, user: UserState, event: Event) -> None:
        settings = self.settings
        user.windows.add(event.type, ts=event.ts)
        if event.watch_seconds:
            user.windows.add("watch_seconds", ts=event.ts, amount=event.watch_seconds)
        weight = ENGAGEMENT_WEIGHT.get(event.type, 0.0)
        vector = self.item_vector(event.item_id) if weight else None
        if vector is not None:
            user.session.add(
                vector, weight=weight, ts=event.ts, half_life_s=settings.session_half_life_s
            )
        # Recent items feed the "share of this genre in what you just watched" feature: a
        # skip is the opposite of interest, so it must not make its genre look wanted.
        if event.type not in ("impression", "skip"):
            if event.item_id in user.recent_items:
                user.recent_items.remove(event.item_id)
            user.recent_items.insert(0, event.item_id)
            del user.recent_items[settings.recent_items :]
        if event.type in ENGAGED:
            user.history.append(event.item_id)
            del user.history[: -settings.history_items]
        if event.type in WATCHED_TYPES:
            user.watched = _remember(user.watched, event, settings.watched_retention_s)
        if event.type == "skip":
            user.skipped = _remember(user.skipped, event, settings.skipped_retention_s)
        user.last_ts = max(user.last_ts, event.ts)


def _item_counts(event: Event) -> list[ItemCount]:
    """The counters one event adds to its item."""
    counts = [ItemCount(event.event_id, event.item_id, event.type, event.ts)]
    if event.watch_seconds:
        counts.append(
            ItemCount(event.event_id, event.item_id, "watch_seconds", event.ts, event.watch_seconds)
        )
    return counts


def _remember(seen: dict[ItemId, float], event: Event, retention_s: float) -> dict[ItemId, float]:
    """`seen` with the event's item at its latest time, pruned of entries past retention."""
    seen[event.item_id] = max(event.ts, seen.get(event.item_id, 0.0))
    if len(seen) > 256:
        horizon = event.ts - retention_s
        seen = {i: t for i, t in seen.items() if t >= horizon}
    return seen
