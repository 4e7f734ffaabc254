"""The in-process OnlineStore: dicts behind one lock, for the embedded tier and for tests."""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from recomatrix.features.state import ItemState, UserState
from recomatrix.types import ItemId, UserId


class MemoryOnlineStore:
    """Satisfies `OnlineStore` with plain dicts; state lives as long as the process.

    Remembers the newest `max_event_ids` event ids for idempotency, so a redelivered
    event is ignored as long as it comes back within that many newer events.
    """

    def __init__(self, *, max_event_ids: int = 2_000_000) -> None:
        self._lock = threading.Lock()
        self._users: dict[UserId, UserState] = {}
        self._items: dict[ItemId, ItemState] = {}
        self._trending: dict[ItemId, float] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._max_event_ids = max_event_ids

    def claim_events(self, event_ids: Sequence[str]) -> list[bool]:
        fresh: list[bool] = []
        with self._lock:
            for event_id in event_ids:
                new = event_id not in self._seen
                fresh.append(new)
                if new:
                    self._seen[event_id] = None
            while len(self._seen) > self._max_event_ids:
                self._seen.popitem(last=False)
        return fresh

    def get_users(self, user_ids: Sequence[UserId]) -> list[UserState | None]:
        with self._lock:
            return [self._users.get(u) for u in user_ids]

    def put_users(self, states: Sequence[UserState]) -> None:
        with self._lock:
            for state in states:
                self._users[state.user_id] = state

    def get_items(self, item_ids: Sequence[ItemId]) -> list[ItemState | None]:
        with self._lock:
            return [self._items.get(i) for i in item_ids]

    def put_items(self, states: Sequence[ItemState]) -> None:
        with self._lock:
            for state in states:
                self._items[state.item_id] = state

    def delete_items(self, item_ids: Sequence[ItemId]) -> None:
        with self._lock:
            for item_id in item_ids:
                self._items.pop(item_id, None)
                self._trending.pop(item_id, None)

    def set_trending(self, scores: Mapping[ItemId, float]) -> None:
        with self._lock:
            for item_id, score in scores.items():
                if score > 0:
                    self._trending[item_id] = score
                else:
                    self._trending.pop(item_id, None)

    def top_trending(self, k: int) -> list[tuple[ItemId, float]]:
        with self._lock:
            return heapq.nlargest(k, self._trending.items(), key=lambda kv: kv[1])

    def trending_items(self) -> list[ItemId]:
        """Every item currently in the trending table (for periodic re-scoring)."""
        with self._lock:
            return list(self._trending)

    def stats(self) -> dict[str, int]:
        """Sizes, for /metrics and the demo summary."""
        with self._lock:
            return {
                "users": len(self._users),
                "items": len(self._items),
                "trending": len(self._trending),
            }
