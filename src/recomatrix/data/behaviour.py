"""The user behaviour model shared by the synthetic world and its live event stream.

A session shows a user a slate of items (impressions), then the user engages with some of
them one after another: a click, then a skip, a partial view or a complete view, maybe a
like. Click, completion and like are likelier when the item matches the user's taste.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recomatrix.types import EVENT_TYPES, Event

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SLATE_SIZES = (4, 12)  # impressions per session, inclusive range
EXPLORE_SHARE = 0.6  # slate slots filled from the genre prior rather than the user's taste
SHIFT_STRENGTH = 0.75  # share of interest a shifted user gives to their new genre
CLICK_BASE, CLICK_MATCH = 0.02, 0.24  # p(click) = (base + match * taste match) * appeal
SKIP_BASE, SKIP_MATCH = 0.45, 0.35  # p(skip | click) = base - match * taste match
COMPLETE_BASE, COMPLETE_MATCH = 0.25, 0.5  # p(complete | not skipped)
LIKE_BASE, LIKE_MATCH = 0.05, 0.3  # p(like | watched)
VIRAL_PEAK = 0.02  # p(a slate slot shows a given viral item) at its peak
VIRAL_RISE_S, VIRAL_DECAY_S = 3600.0, 86400.0  # how fast a viral item takes off and fades
EVENTS_PER_SESSION = 9.9  # measured on the default world; paces the live stream

IMPRESSION, VIEW, CLICK, LIKE, SKIP, COMPLETE = (
    EVENT_TYPES.index(kind) for kind in ("impression", "view", "click", "like", "skip", "complete")
)


@dataclass(frozen=True, slots=True)
class BehaviourModel:
    """Everything sessions are sampled from. Item and user arrays are aligned with the ids."""

    item_ids: list[str]
    item_genre: IntArray  # primary genre index
    item_genre2: IntArray  # secondary genre index, -1 for none
    item_appeal: FloatArray
    item_duration_s: FloatArray
    genre_prior: FloatArray  # share of exploration slots per genre
    popular_items: IntArray  # item indices grouped by genre ...
    popular_cum: FloatArray  # ... with genre + cumulative popularity share within the genre
    user_ids: list[str]
    user_activity_cum: FloatArray  # cumulative share of sessions per user
    taste: FloatArray  # users x genres, rows sum to 1
    shift_genre: IntArray  # genre a user's interest moves to at shift_at
    shift_at: FloatArray  # +inf for users who never shift
    viral_items: IntArray
    viral_at: FloatArray  # when each viral item appears


def popularity_index(
    item_genre: IntArray, popularity: FloatArray, eligible: BoolArray
) -> tuple[IntArray, FloatArray]:
    """Lay eligible items out by genre so one searchsorted samples a popular item per genre.

    Genre g's block holds g + (cumulative share of popularity within g), ending at g + 1.
    """
    items = np.flatnonzero(eligible).astype(np.int64)
    items = items[np.argsort(item_genre[items], kind="stable")]
    genre = item_genre[items]
    weight = np.cumsum(popularity[items])
    block_first = np.searchsorted(genre, genre, side="left")
    block_last = np.searchsorted(genre, genre, side="right") - 1
    before = np.where(block_first > 0, weight[block_first - 1], 0.0)
    share = (weight - before) / (weight[block_last] - before)
    return items, (genre + share).astype(np.float64)


def sample_users(model: BehaviourModel, rng: np.random.Generator, n: int) -> IntArray:
    """Users for `n` sessions, in proportion to their activity."""
    picks = np.searchsorted(model.user_activity_cum, rng.random(n) * model.user_activity_cum[-1])
    return np.asarray(np.minimum(picks, len(model.user_ids) - 1), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class EventColumns:
    """Simulated events as columns (indices into the model), in no particular order."""

    user: IntArray
    item: IntArray
    kind: IntArray  # index into EVENT_TYPES
    ts: FloatArray
    watch_s: FloatArray
    session: IntArray

    def take(self, rows: IntArray | BoolArray) -> EventColumns:
        return EventColumns(
            user=self.user[rows],
            item=self.item[rows],
            kind=self.kind[rows],
            ts=self.ts[rows],
            watch_s=self.watch_s[rows],
            session=self.session[rows],
        )

    @staticmethod
    def concat(parts: list[EventColumns]) -> EventColumns:
        """All rows of `parts`, in order, copied once."""
        return EventColumns(
            user=np.concatenate([part.user for part in parts]),
            item=np.concatenate([part.item for part in parts]),
            kind=np.concatenate([part.kind for part in parts]),
            ts=np.concatenate([part.ts for part in parts]),
            watch_s=np.concatenate([part.watch_s for part in parts]),
            session=np.concatenate([part.session for part in parts]),
        )

    def __len__(self) -> int:
        return len(self.ts)


def simulate_sessions(
    model: BehaviourModel, rng: np.random.Generator, users: IntArray, starts: FloatArray
) -> EventColumns:
    """All events of one session per (user, start time) pair; session i is numbered i."""
    slate = rng.integers(SLATE_SIZES[0], SLATE_SIZES[1] + 1, len(users))
    session = np.repeat(np.arange(len(users)), slate)
    user, t0 = users[session], starts[session]
    shifted = t0 >= model.shift_at[user]
    item = _fill_slate(model, rng, user, shifted, t0)

    # A slate shows an item once: keep the first of repeated picks.
    _, first_pick = np.unique(session * len(model.item_ids) + item, return_index=True)
    keep = np.sort(first_pick)
    session, user, t0, shifted, item = (a[keep] for a in (session, user, t0, shifted, item))
    slate = np.bincount(session, minlength=len(users))
    first_slot = np.repeat(np.cumsum(slate) - slate, slate)
    slot = np.arange(len(session)) - first_slot
    match = _taste_match(model, user, shifted, item)
    n = len(item)
    clicked = rng.random(n) < np.minimum(
        (CLICK_BASE + CLICK_MATCH * match) * model.item_appeal[item], 0.95
    )
    skipped = clicked & (rng.random(n) < SKIP_BASE - SKIP_MATCH * match)
    watched = clicked & ~skipped
    completed = watched & (rng.random(n) < COMPLETE_BASE + COMPLETE_MATCH * match)
    liked = watched & (rng.random(n) < LIKE_BASE + LIKE_MATCH * match)
    duration = model.item_duration_s[item]
    watch_s = np.where(
        completed, duration, np.where(watched, duration * rng.uniform(0.1, 0.9, n), 0.0)
    ).round()
    watch_s[watched] = np.maximum(watch_s[watched], 1.0)

    # The slate renders at t0; the user then works through the clicked items in order.
    shown_ts = t0 + 0.01 * slot
    decide_s = rng.uniform(1.0, 6.0, n)
    skip_s = rng.uniform(2.0, 10.0, n)
    busy_s = np.where(clicked, decide_s + np.where(skipped, skip_s, watch_s) + 1.0, 0.0)
    busy_before = np.cumsum(busy_s) - busy_s
    busy_before -= busy_before[first_slot]
    click_ts = t0 + 0.01 * slate[session] + busy_before + decide_s
    outcome_ts = click_ts + np.where(skipped, skip_s, watch_s)
    outcome = np.where(skipped, SKIP, np.where(completed, COMPLETE, VIEW))

    no_watch = np.zeros(n)
    parts = [
        (np.ones(n, dtype=bool), np.full(n, IMPRESSION), shown_ts, no_watch),
        (clicked, np.full(n, CLICK), click_ts, no_watch),
        (clicked, outcome, outcome_ts, watch_s),
        (liked, np.full(n, LIKE), outcome_ts + 0.5, no_watch),
    ]
    return EventColumns.concat(
        [
            EventColumns(
                user=user[mask],
                item=item[mask],
                kind=kind[mask].astype(np.int64),
                ts=ts[mask],
                watch_s=watch[mask],
                session=session[mask],
            )
            for mask, kind, ts, watch in parts
        ]
    )


def _fill_slate(
    model: BehaviourModel,
    rng: np.random.Generator,
    user: IntArray,
    shifted: BoolArray,
    t0: FloatArray,
) -> IntArray:
    """Pick the item of each slate slot: genre by taste or exploration, item by popularity."""
    n = len(user)
    taste_cum = np.cumsum(model.taste[user], axis=1)
    genre = np.minimum((taste_cum < rng.random(n)[:, None]).sum(axis=1), model.taste.shape[1] - 1)
    to_new_interest = shifted & (rng.random(n) < SHIFT_STRENGTH)
    genre = np.where(to_new_interest, model.shift_genre[user], genre)
    explore = rng.random(n) < EXPLORE_SHARE
    genre[explore] = rng.choice(
        len(model.genre_prior), size=int(explore.sum()), p=model.genre_prior
    )
    # An empty genre falls through to the next block: an item of a neighbouring genre.
    spot = np.searchsorted(model.popular_cum, genre + rng.random(n), side="right")
    item = model.popular_items[np.minimum(spot, len(model.popular_items) - 1)]

    if len(model.viral_items):
        # A viral item takes a slot with a probability that rises, peaks and fades with age.
        age = t0[:, None] - model.viral_at[None, :]
        live = age >= 0
        age = np.where(live, age, 0.0)
        p = np.where(
            live, VIRAL_PEAK * (1 - np.exp(-age / VIRAL_RISE_S)) * np.exp(-age / VIRAL_DECAY_S), 0.0
        )
        which = (np.cumsum(p, axis=1) < rng.random(n)[:, None]).sum(axis=1)
        hit = which < len(model.viral_items)
        item = np.where(hit, model.viral_items[np.minimum(which, len(model.viral_items) - 1)], item)
    return item.astype(np.int64)


def _taste_match(
    model: BehaviourModel, user: IntArray, shifted: BoolArray, item: IntArray
) -> FloatArray:
    """How well each item fits its user's current taste, in [0, 1]."""

    def weight(genre: IntArray) -> FloatArray:
        w = model.taste[user, np.maximum(genre, 0)]
        moved = (1 - SHIFT_STRENGTH) * w + SHIFT_STRENGTH * (genre == model.shift_genre[user])
        return np.where(genre < 0, 0.0, np.where(shifted, moved, w))

    primary, secondary = weight(model.item_genre[item]), weight(model.item_genre2[item])
    return np.sqrt(np.maximum(primary, 0.5 * secondary))


def to_events(
    model: BehaviourModel, columns: EventColumns, *, id_prefix: str, first_id: int
) -> list[Event]:
    """Materialise columns (already in the wanted order) as Events with ids prefix-N."""
    item_ids, user_ids = model.item_ids, model.user_ids
    rows = zip(
        columns.user.tolist(),
        columns.item.tolist(),
        columns.kind.tolist(),
        columns.ts.round(3).tolist(),
        columns.watch_s.tolist(),
        strict=True,
    )
    return [
        Event(f"{id_prefix}-{first_id + i}", user_ids[u], item_ids[it], EVENT_TYPES[k], ts, watch)
        for i, (u, it, k, ts, watch) in enumerate(rows)
    ]
