"""How a batch of one user's events changes the user's state, and the item counts events add.

Pure functions of the state and the events (no store, no bus): the stream processor applies
them to the states it loaded, the seeder and the tests to states of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from recomatrix.features.base import ItemCount
from recomatrix.features.state import ENGAGED, SeenMap, SessionVector, UserState
from recomatrix.features.windows import WINDOWS, WindowCounts
from recomatrix.stream.settings import StreamSettings
from recomatrix.types import ENGAGEMENT_WEIGHT, WATCHED_TYPES, Event, ItemId

VectorLookup = Callable[[ItemId], "np.ndarray | None"]


def update_user(
    user: UserState, events: Sequence[Event], settings: StreamSettings, item_vector: VectorLookup
) -> set[str]:
    """Apply one user's new events, oldest first, batched: one window add per (field, 10 s
    bucket) and one session-vector update for all the engagement (the same sums).
    Returns the names of the state's fields it changed."""
    changed = {"windows", "last_ts"}
    count_in_windows(user.windows, events)
    if engage_session(user.session, events, settings.session_half_life_s, item_vector):
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
        user.watched = remember(user.watched, watched, settings.watched_retention_s)
        changed.add("watched")
    skipped = [e for e in events if e.type == "skip"]
    if skipped:
        user.skipped = remember(user.skipped, skipped, settings.skipped_retention_s)
        changed.add("skipped")
    user.last_ts = max(user.last_ts, events[-1].ts)
    return changed


def count_in_windows(windows: WindowCounts, events: Sequence[Event]) -> None:
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


def engage_session(
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
        counts.append(ItemCount(event.event_id, event.item_id, event.type, event.ts, 1.0,
                                event.ts_given))  # fmt: skip
        if event.watch_seconds:
            counts.append(ItemCount(event.event_id, event.item_id, "watch_seconds", event.ts,
                                    event.watch_seconds, event.ts_given))  # fmt: skip
    return counts


def remember(seen: dict[ItemId, float], events: Sequence[Event], retention_s: float) -> SeenMap:
    """`seen` with the events' items at their latest time, past retention pruned (as a
    `SeenMap`, which records the change if it tracks one).

    A touched item moves to the end, so the map stays in order of last touch (about time
    order) and pruning only walks the expired entries at its front: a heavy user's
    hundreds of recent entries are not scanned on every event. An entry touched late with
    an old time may outlive retention until it reaches the front (kept longer, not lost).
    """
    if not isinstance(seen, SeenMap):
        seen = SeenMap(seen)
    for event in events:
        seen.touch(event.item_id, max(event.ts, seen.get(event.item_id, 0.0)))
    if len(seen) > 256:
        horizon = events[-1].ts - retention_s
        expired = []
        for item_id, ts in seen.items():
            if ts >= horizon:
                break
            expired.append(item_id)
        for item_id in expired:
            seen.forget(item_id)
    return seen
