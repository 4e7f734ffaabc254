"""The values the online store keeps per user and per item, and the features derived from them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from recomatrix.features.windows import WindowCounts
from recomatrix.types import ItemId, UserId

# Event types that count as positive engagement for CTR, velocity and trending.
ENGAGED = ("click", "like", "complete")


@dataclass(slots=True)
class SessionVector:
    """A decayed sum of engaged items' vectors; older engagement fades with `half_life_s`.

    >>> s = SessionVector()
    >>> s.add(np.array([1.0, 0.0], dtype=np.float32), weight=1.0, ts=0.0, half_life_s=60.0)
    >>> round(float(s.at(60.0, half_life_s=60.0)[0]), 3)
    0.5
    """

    vector: np.ndarray | None = None
    ts: float = 0.0

    def add(self, item_vector: np.ndarray, *, weight: float, ts: float, half_life_s: float) -> None:
        if self.vector is None:
            self.vector = np.zeros_like(item_vector, dtype=np.float32)
            self.ts = ts
        if ts > self.ts:
            self.vector = self.vector * np.float32(_decay(ts - self.ts, half_life_s))
            self.ts = ts
            decay = 1.0
        else:  # late event: fade its contribution as if it had been added on time
            decay = _decay(self.ts - ts, half_life_s)
        self.vector = self.vector + np.float32(weight * decay) * item_vector.astype(np.float32)

    def at(self, now: float, *, half_life_s: float) -> np.ndarray | None:
        """The session vector as of `now` (decayed), or None before any engagement."""
        if self.vector is None:
            return None
        return (self.vector * np.float32(_decay(max(0.0, now - self.ts), half_life_s))).astype(
            np.float32
        )


def _decay(elapsed_s: float, half_life_s: float) -> float:
    return math.pow(0.5, elapsed_s / half_life_s)


class SeenMap(dict[ItemId, float]):
    """A user's watched or skipped map (item -> last time, in order of last touch) that
    remembers what changed since it was last stored whole: `changed`, item -> new time or
    None (removed), in the same order; None while nothing tracks it (it is then stored
    whole). A store then writes only those entries: a heavy user's map holds hundreds of
    items, a batch changes a few (`codec.encode_user_fields`)."""

    __slots__ = ("changed",)

    def __init__(self, entries: Mapping[ItemId, float] | None = None, *,
                 changed: dict[ItemId, float | None] | None = None) -> None:  # fmt: skip
        super().__init__(entries or {})
        self.changed = changed

    def copy(self) -> SeenMap:  # a SeenMap, not a dict
        return SeenMap(self, changed=None if self.changed is None else dict(self.changed))

    def touch(self, item_id: ItemId, ts: float) -> None:
        """Set the item's time and move it to the end (last touched)."""
        self.pop(item_id, None)
        self[item_id] = ts
        if self.changed is not None:
            self.changed.pop(item_id, None)
            self.changed[item_id] = ts

    def forget(self, item_id: ItemId) -> None:
        del self[item_id]
        if self.changed is not None:
            self.changed.pop(item_id, None)
            self.changed[item_id] = None


@dataclass(slots=True)
class UserState:
    """Everything the engine knows about one user right now."""

    user_id: UserId
    windows: WindowCounts = field(default_factory=WindowCounts)
    session: SessionVector = field(default_factory=SessionVector)
    recent_items: list[ItemId] = field(default_factory=list)  # newest first, no skips
    watched: dict[ItemId, float] = field(default_factory=dict)  # item -> last watched ts
    skipped: dict[ItemId, float] = field(default_factory=dict)  # item -> last skipped ts
    # The user tower's vector of `history`; None when unknown or stale (recomputed on read).
    long_term: np.ndarray | None = None
    history: list[ItemId] = field(default_factory=list)  # positive items, oldest first
    last_ts: float = 0.0

    def copy(self) -> UserState:
        """A deep copy to mutate: readers may hold the stored state (copy-on-write)."""
        return UserState(
            user_id=self.user_id,
            windows=self.windows.copy(),
            session=SessionVector(self.session.vector, self.session.ts),
            recent_items=list(self.recent_items),
            watched=self.watched.copy(),  # a SeenMap keeps what it tracks
            skipped=self.skipped.copy(),
            long_term=self.long_term,
            history=list(self.history),
            last_ts=self.last_ts,
        )


@dataclass(slots=True)
class ItemState:
    """Live engagement counters of one item."""

    item_id: ItemId
    windows: WindowCounts = field(default_factory=WindowCounts)
    total_engaged: float = 0.0
    last_ts: float = 0.0
    # (from, until, stats): the stats of every read in [from, until), where `until` is the
    # windows' `stable_until(from)`. They cannot change in that span unless the state does,
    # and a changed state is a new object (copy-on-write) or has its cache cleared. A
    # popular item is summarised once per 10 s tick at most; a quiet one once per event.
    stats_cache: tuple[float, float, ItemStats] | None = field(
        default=None, repr=False, compare=False
    )

    def copy(self) -> ItemState:
        """A deep copy to mutate: readers may hold the stored state (copy-on-write)."""
        return ItemState(self.item_id, self.windows.copy(), self.total_engaged, self.last_ts)


class ItemStats(NamedTuple):
    """Numbers derived from an item's windows at one moment (what the ranker reads, in
    this order: a tuple, so a batch of them is one `np.array` call)."""

    engaged_5m: float
    engaged_1h: float
    engaged_24h: float
    impressions_24h: float
    ctr_1h: float
    ctr_24h: float
    skip_rate_24h: float
    watch_seconds_24h: float
    velocity: float
    total_engaged: float

    @staticmethod
    def of(state: ItemState | None, *, now: float) -> ItemStats:
        if state is None:
            return _NO_STATS
        cached = state.stats_cache
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2]
        stats = ItemStats._compute(state, now)
        state.stats_cache = (now, state.windows.stable_until(now=now), stats)
        return stats

    @staticmethod
    def _compute(state: ItemState, now: float) -> ItemStats:
        w5, w1h, w24 = (state.windows.get(n, now=now) for n in ("5m", "1h", "24h"))
        e5, e1, e24 = engaged(w5), engaged(w1h), engaged(w24)
        imp1, imp24 = w1h.get("impression", 0.0), w24.get("impression", 0.0)
        return ItemStats(
            engaged_5m=e5,
            engaged_1h=e1,
            engaged_24h=e24,
            impressions_24h=imp24,
            # Smoothed towards a 5 % prior so a single impression cannot give CTR 1.0.
            ctr_1h=(e1 + 0.5) / (imp1 + 10.0),
            ctr_24h=(e24 + 0.5) / (imp24 + 10.0),
            skip_rate_24h=(w24.get("skip", 0.0) + 0.5) / (imp24 + 10.0),
            watch_seconds_24h=w24.get("watch_seconds", 0.0),
            velocity=velocity(e5, e1),
            total_engaged=state.total_engaged,
        )


_NO_STATS = ItemStats(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def velocity(engaged_5m: float, engaged_1h: float) -> float:
    """Engagement per minute in the last 5 minutes minus the hour's average per minute.

    Positive when an item is heating up; trending ranks by it.

    >>> velocity(10.0, 12.0)
    1.8
    """
    return engaged_5m / 5.0 - engaged_1h / 60.0


def engaged(counts: Mapping[str, float]) -> float:
    """Positive engagement (`ENGAGED` event types) in one window's counts."""
    return sum(counts.get(t, 0.0) for t in ENGAGED)


def trending_score(engaged_5m: float, engaged_1h: float) -> float:
    """How strongly an item is trending now: recent engagement, boosted by acceleration."""
    return engaged_5m + 5.0 * max(0.0, velocity(engaged_5m, engaged_1h))
