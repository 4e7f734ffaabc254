"""The in-process OnlineStore: dicts behind one lock, for the embedded tier and for tests."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

from recomatrix.features.base import ItemCount, distinct_counts
from recomatrix.features.profiles import UserProfiles
from recomatrix.features.state import ENGAGED, ItemState, UserState
from recomatrix.types import ItemId, UserId


class MemoryOnlineStore:
    """Satisfies `OnlineStore` with plain dicts; state lives as long as the process.

    Remembers at least the newest `max_event_ids` applied event ids (and as many (event,
    item) counts) for idempotency, so a redelivered event is ignored as long as it comes back
    within that many newer events. Stored states are never mutated: a write replaces them,
    so a reader keeps a consistent snapshot (copy-on-write).
    """

    # Readers get the stored objects themselves: a writer must not keep and change them
    # (the stream processor's user cache is off over this store).
    shares_states = True

    def __init__(
        self, *, max_event_ids: int = 2_000_000, profiles: UserProfiles | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._users: dict[UserId, UserState] = {}
        # Trained profiles of users without live state (read-only; see features/profiles.py).
        self._profiles = profiles
        self._items: dict[ItemId, ItemState] = {}
        self._trending: dict[ItemId, float] = {}
        self._top: tuple[int, list[tuple[ItemId, float]]] | None = None  # (k, top k) cache
        self._seen: RecentKeys[str] = RecentKeys(max_event_ids)
        self._counted: RecentKeys[tuple[str, ItemId]] = RecentKeys(max_event_ids)
        # False only while nobody reads (bulk bootstrap): item writes then mutate in place.
        self.copy_on_write = True

    def seen_events(
        self, event_ids: Sequence[str], times: Sequence[float | None] | None = None
    ) -> list[bool]:
        with self._lock:
            return [event_id in self._seen for event_id in event_ids]

    def get_users(self, user_ids: Sequence[UserId]) -> list[UserState | None]:
        with self._lock:
            found = [self._users.get(u) for u in user_ids]
        if self._profiles is not None:
            profiles = self._profiles
            pairs = zip(found, user_ids, strict=True)
            found = [s if s is not None else profiles.get(u) for s, u in pairs]
        return found

    def put_users(
        self,
        states: Sequence[UserState],
        *,
        applied_events: Sequence[str] = (),
        changed: Mapping[UserId, Collection[str]] | None = None,
        applied_times: Sequence[float | None] | None = None,
    ) -> None:
        with self._lock:
            for state in states:
                self._users[state.user_id] = state
            self._seen.update(applied_events)

    def get_items(self, item_ids: Sequence[ItemId]) -> list[ItemState | None]:
        with self._lock:
            return [self._items.get(i) for i in item_ids]

    def add_item_counts(self, counts: Sequence[ItemCount]) -> None:
        counts = distinct_counts(counts)
        with self._lock:
            # A membership test per count: `set - dict.keys()` would walk the whole id history.
            fresh = {key for c in counts if (key := (c.event_id, c.item_id)) not in self._counted}
            changed: dict[ItemId, ItemState] = {}
            for count in counts:
                if (count.event_id, count.item_id) not in fresh:
                    continue
                state = changed.get(count.item_id)
                if state is None:
                    stored = self._items.get(count.item_id)
                    if stored is None:
                        state = ItemState(count.item_id)
                    elif self.copy_on_write:
                        state = stored.copy()
                    else:
                        state, state.stats_cache = stored, None
                    changed[count.item_id] = state
                state.windows.add(count.field, ts=count.ts, amount=count.amount)
                if count.field in ENGAGED:
                    state.total_engaged += count.amount
                state.last_ts = max(state.last_ts, count.ts)
            self._items.update(changed)
            self._counted.update(fresh)

    def delete_items(self, item_ids: Sequence[ItemId]) -> None:
        with self._lock:
            for item_id in item_ids:
                self._items.pop(item_id, None)
                self._trending.pop(item_id, None)
            self._top = None

    def set_trending(self, scores: Mapping[ItemId, float]) -> None:
        with self._lock:
            if self._top is not None and _moves_top(self._top, scores):
                self._top = None
            for item_id, score in scores.items():
                if score > 0:
                    self._trending[item_id] = score
                else:
                    self._trending.pop(item_id, None)

    def top_trending(self, k: int) -> list[tuple[ItemId, float]]:
        # Every request asks and the table changes only when events arrive: keep the last
        # answer until the next write (a heap over thousands of items per request otherwise).
        with self._lock:
            top = self._top
            if top is None or top[0] < k:
                top = self._top = (k, heapq.nlargest(k, self._trending.items(), key=_score))
            return top[1][:k]


def _score(entry: tuple[ItemId, float]) -> float:
    return entry[1]


def _moves_top(top: tuple[int, list[tuple[ItemId, float]]], scores: Mapping[ItemId, float]) -> bool:
    """Whether new `scores` can change the cached top k: an item in it changed, or one
    outside reaches its lowest score (ties included: `nlargest` breaks them by table order).

    Most re-scores touch items far below the top, so the cache usually survives them.
    """
    k, entries = top
    if not entries:
        return any(score > 0 for score in scores.values())
    members = {item_id for item_id, _ in entries}
    floor = entries[-1][1] if len(entries) >= k else 0.0  # a short list takes any positive
    return any(
        item_id in members or (score > 0 and score >= floor) for item_id, score in scores.items()
    )


K = TypeVar("K")


class RecentKeys(Generic[K]):
    """A bounded memory of keys: remembers at least the newest `keep`, holds at most 2x that.

    Two generations of plain sets: when the new one is full it becomes the old one and the
    previous old one is dropped. Half the memory of an insertion-ordered dict (no linked
    list, no per-key eviction), and O(1) amortised.

    >>> keys = RecentKeys[str](2)
    >>> keys.update(["a", "b", "c", "d", "e"])
    >>> [k in keys for k in "abcde"]
    [False, False, True, True, True]
    """

    __slots__ = ("_keep", "_new", "_old")

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self._keep = keep
        self._new: set[K] = set()
        self._old: set[K] = set()

    def __contains__(self, key: object) -> bool:
        return key in self._new or key in self._old

    def update(self, keys: Iterable[K]) -> None:
        for key in keys:
            if len(self._new) >= self._keep:
                self._old, self._new = self._new, set()
            self._new.add(key)

    def __len__(self) -> int:
        return len(self._new) + len(self._old)
