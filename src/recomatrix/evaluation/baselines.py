"""Baselines run beside recomatrix on the same split: random, most popular, trending, ItemKNN.

Each is fitted on the train events only and learns from the replay through `observe`,
except MostPopular, which keeps the popularity of the split. They count positive events
(`POSITIVE_TYPES`); ALS lives in `als.py`.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Iterable, Sequence, Set

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]

from recomatrix.evaluation.split import POSITIVE_TYPES
from recomatrix.types import Event, Item, ItemId, UserId

DAY_S = 86_400.0
KNN_NEIGHBOURS = 100  # similar items kept per item
KNN_RECENT_ITEMS = 20  # the user's latest positive items that vote for candidates


def top_unexcluded(ranked: Iterable[ItemId], exclude: Set[ItemId], k: int) -> list[ItemId]:
    """The first `k` items of `ranked` not in `exclude`, without repeats.

    >>> top_unexcluded(["a", "b", "a", "c", "d"], {"b"}, 2)
    ['a', 'c']
    """
    out: list[ItemId] = []
    for item in ranked:
        if item not in exclude and item not in out:
            out.append(item)
            if len(out) == k:
                break
    return out


def popularity_ranking(events: Iterable[Event]) -> list[ItemId]:
    """Items by number of positive events, most first (ties by id, so runs agree)."""
    counts = Counter(e.item_id for e in events if e.type in POSITIVE_TYPES)
    return sorted(counts, key=lambda item: (-counts[item], item))


class RandomItems:
    """K items drawn uniformly from the catalogue as it is at the time of the request."""

    name = "random"

    def __init__(self, *, items: Sequence[ItemId], seed: int = 7) -> None:
        self.items = list(dict.fromkeys(items))
        self.known = set(self.items)
        self.rng = np.random.default_rng(seed)

    def recommend(
        self, user_id: UserId, *, k: int, exclude: Set[ItemId], now: float
    ) -> list[ItemId]:
        allowed = len(self.items) - sum(1 for item in exclude if item in self.known)
        out: list[ItemId] = []
        while len(out) < min(k, allowed):
            item = self.items[int(self.rng.integers(len(self.items)))]
            if item not in exclude and item not in out:
                out.append(item)
        return out

    def observe(self, event: Event) -> None:
        return None  # random is random

    def publish(self, items: Sequence[Item], *, now: float) -> None:
        fresh = [item.item_id for item in items if item.item_id not in self.known]
        self.items.extend(fresh)
        self.known.update(fresh)


class MostPopular:
    """The items with the most positive events before the split; never updated."""

    name = "most-popular"

    def __init__(self, *, train: Sequence[Event]) -> None:
        self.ranked = popularity_ranking(train)

    def recommend(
        self, user_id: UserId, *, k: int, exclude: Set[ItemId], now: float
    ) -> list[ItemId]:
        return top_unexcluded(self.ranked, exclude, k)

    def observe(self, event: Event) -> None:
        return None  # popularity as of the split, by definition

    def publish(self, items: Sequence[Item], *, now: float) -> None:
        return None


class RecentPopular:
    """Trending: positive events per item over the last `window_s` of event time.

    Items tie-break on their all-time count; a window with fewer than K items is topped up
    from the popularity at the split.
    """

    name = "recent-popular"

    def __init__(self, *, train: Sequence[Event], window_s: float = DAY_S) -> None:
        self.window_s = window_s
        self.window: deque[tuple[float, ItemId]] = deque()
        self.recent: Counter[ItemId] = Counter()
        self.total: Counter[ItemId] = Counter()
        self.backfill = popularity_ranking(train)
        horizon = (train[-1].ts if train else 0.0) - window_s
        for event in train:
            if event.type in POSITIVE_TYPES:
                self.total[event.item_id] += 1
                if event.ts >= horizon:
                    self._count(event)

    def recommend(
        self, user_id: UserId, *, k: int, exclude: Set[ItemId], now: float
    ) -> list[ItemId]:
        self._expire(now)
        wanted = k + sum(1 for item in exclude if item in self.recent)
        trending = heapq.nlargest(
            wanted, self.recent, key=lambda i: (self.recent[i], self.total[i], i)
        )
        return top_unexcluded([*trending, *self.backfill], exclude, k)

    def observe(self, event: Event) -> None:
        if event.type in POSITIVE_TYPES:
            self.total[event.item_id] += 1
            self._count(event)
        self._expire(event.ts)

    def publish(self, items: Sequence[Item], *, now: float) -> None:
        return None  # a new item trends once people engage with it

    def _count(self, event: Event) -> None:
        self.window.append((event.ts, event.item_id))
        self.recent[event.item_id] += 1

    def _expire(self, now: float) -> None:
        while self.window and self.window[0][0] < now - self.window_s:
            _, item = self.window.popleft()
            self.recent[item] -= 1
            if self.recent[item] <= 0:
                del self.recent[item]


class ItemKNN:
    """Item-item cosine similarity of positive co-occurrence in train; the user's latest
    positive items vote for their nearest neighbours. Users without history get popular items.
    """

    name = "item-knn"

    def __init__(
        self,
        *,
        train: Sequence[Event],
        neighbours: int = KNN_NEIGHBOURS,
        recent: int = KNN_RECENT_ITEMS,
        block: int = 1024,
    ) -> None:
        positives = [e for e in train if e.type in POSITIVE_TYPES]
        self.item_ids = sorted({e.item_id for e in positives})
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        self.recent = recent
        self.popular = popularity_ranking(train)
        self.history: dict[UserId, dict[int, None]] = {}
        for event in positives:
            self.observe(event)
        users = {u: i for i, u in enumerate(self.history)}
        rows = np.array(
            [users[u] for u, mine in self.history.items() for _ in mine], dtype=np.int64
        )
        cols = np.array([i for mine in self.history.values() for i in mine], dtype=np.int64)
        seen = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)),
            shape=(len(users), len(self.item_ids)),
        )
        self.neighbour_idx, self.neighbour_sim = _nearest_items(seen, neighbours, block)

    def recommend(
        self, user_id: UserId, *, k: int, exclude: Set[ItemId], now: float
    ) -> list[ItemId]:
        latest = list(self.history.get(user_id, {}))[-self.recent :]
        if not latest:
            return top_unexcluded(self.popular, exclude, k)
        scores = np.zeros(len(self.item_ids), dtype=np.float32)
        np.add.at(scores, self.neighbour_idx[latest].ravel(), self.neighbour_sim[latest].ravel())
        blocked = [self.index[i] for i in exclude if i in self.index]
        scores[blocked] = 0.0
        voted = np.flatnonzero(scores > 0)
        best = voted[np.argsort(-scores[voted], kind="stable")[:k]]
        return top_unexcluded([*(self.item_ids[i] for i in best), *self.popular], exclude, k)

    def observe(self, event: Event) -> None:
        item = self.index.get(event.item_id)
        if event.type in POSITIVE_TYPES and item is not None:
            mine = self.history.setdefault(event.user_id, {})
            mine.pop(item, None)  # re-engaging moves the item to the newest end
            mine[item] = None

    def publish(self, items: Sequence[Item], *, now: float) -> None:
        return None  # no co-occurrence yet, so no neighbours: a new item is never voted for


def _nearest_items(
    seen: sp.csr_matrix, neighbours: int, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """(items x neighbours) indices and cosine similarities of each item's nearest items."""
    n_items = seen.shape[1]
    width = max(1, min(neighbours, n_items - 1))
    by_item = seen.T.tocsr()
    degree = np.asarray(seen.sum(axis=0), dtype=np.float32).ravel()
    norm = np.sqrt(np.maximum(degree, 1.0))
    idx = np.zeros((n_items, width), dtype=np.int64)
    sim = np.zeros((n_items, width), dtype=np.float32)
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        co = np.asarray((by_item[start:stop] @ seen).todense(), dtype=np.float32)
        co /= norm[start:stop, None] * norm[None, :]
        co[np.arange(stop - start), np.arange(start, stop)] = 0.0  # an item is not its neighbour
        if width < n_items:
            top = np.argpartition(-co, width - 1, axis=1)[:, :width]
        else:  # a one-item catalogue: its only "neighbour" is itself, at similarity 0
            top = np.tile(np.arange(n_items), (stop - start, 1))
        idx[start:stop] = top
        sim[start:stop] = np.take_along_axis(co, top, axis=1)
    return idx, sim
