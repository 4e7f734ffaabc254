"""The synthetic world: a streaming platform's catalogue, users with shifting tastes, a
session log with viral items that appear mid-stream, and an endless live continuation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import numpy as np

from recomatrix.data.behaviour import (
    CLICK,
    COMPLETE,
    EVENTS_PER_SESSION,
    IMPRESSION,
    BehaviourModel,
    EventColumns,
    FloatArray,
    IntArray,
    popularity_index,
    sample_users,
    simulate_sessions,
    to_events,
)
from recomatrix.data.catalogue import GENRE_PRIOR, GENRES, draw_items
from recomatrix.data.world import World
from recomatrix.types import EVENT_TYPES, Event

DAY_S = 86_400.0
SHIFTING_USER_SHARE = 0.3  # users whose interest moves to a new genre mid-stream
FAVOURITE_COUNT_SHARES = (0.4, 0.4, 0.2)  # users with 1, 2 or 3 favourite genres
VIRAL_APPEAL = 2.5  # viral items get clicked this much more than an average item
LIVE_CHUNK_S = 2.0  # simulated seconds generated per step of the live stream
SESSIONS_PER_BATCH = 100_000  # bounds the memory of one vectorised step at large scale
POSITIVE_KINDS = [EVENT_TYPES.index(k) for k in ("click", "view", "like", "complete")]


def generate_world(
    *,
    n_items: int = 50_000,
    n_users: int = 20_000,
    n_events: int = 400_000,
    n_viral: int = 5,
    days: float = 3.0,
    end_ts: float | None = None,
    seed: int = 7,
) -> World:
    """A synthetic world of exactly `n_events` events spread over `days` days up to `end_ts`.

    The same arguments give the same world; with `end_ts=None` (now) only timestamps move.
    """
    for name, value in {
        "n_items": n_items,
        "n_users": n_users,
        "n_events": n_events,
        "days": days,
    }.items():
        if value <= 0:
            raise ValueError(f"generate_world: {name} must be positive, got {value}")
    if n_viral < 0:
        raise ValueError(f"generate_world: n_viral must be >= 0, got {n_viral}")
    rng = np.random.default_rng(seed)
    end = round(time.time() if end_ts is None else end_ts, 3)
    start = end - days * DAY_S
    span = end - start

    creator_home = rng.choice(len(GENRES), size=int(np.clip(n_items // 25, 1, 2000)), p=GENRE_PRIOR)
    # Most items are weeks old, some were published just before the log starts.
    created_at = np.floor(start - 60.0 - rng.exponential(30 * DAY_S, n_items))
    items, traits = draw_items(rng, creator_home=creator_home, created_at=created_at)
    viral_at = np.sort(rng.uniform(start + 2 * span / 3, end - span / 12, n_viral)).round(3)
    late, late_traits = draw_items(
        rng, creator_home=creator_home, created_at=viral_at, first_index=n_items
    )

    taste, shift_genre = draw_tastes(rng, n_users)
    shifts = rng.random(n_users) < SHIFTING_USER_SHARE
    shift_at = np.where(
        shifts, rng.uniform(start + 0.3 * span, start + 0.7 * span, n_users), np.inf
    )
    genre = np.concatenate([traits.genre, late_traits.genre])
    popular_items, popular_cum = popularity_index(
        genre,
        np.concatenate([traits.popularity, late_traits.popularity]),
        eligible=np.arange(n_items + n_viral) < n_items,  # late items trend only as viral
    )
    model = BehaviourModel(
        item_ids=[item.item_id for item in [*items, *late]],
        item_genre=genre,
        item_genre2=np.concatenate([traits.genre2, late_traits.genre2]),
        item_appeal=np.concatenate([traits.appeal, np.full(n_viral, VIRAL_APPEAL)]),
        item_duration_s=np.concatenate([traits.duration_s, late_traits.duration_s]),
        genre_prior=GENRE_PRIOR,
        popular_items=popular_items,
        popular_cum=popular_cum,
        user_ids=[f"user-{u}" for u in range(n_users)],
        user_activity_cum=np.cumsum(rng.lognormal(0.0, 1.0, n_users)),
        taste=taste,
        shift_genre=shift_genre,
        shift_at=shift_at,
        viral_items=np.arange(n_items, n_items + n_viral, dtype=np.int64),
        viral_at=viral_at,
    )
    log = _session_log(model, rng, n_events=n_events, start=start, end=end)
    events = to_events(model, log, id_prefix="ev", first_id=0)
    return World(
        name="synthetic",
        items=items,
        users=model.user_ids,
        events=events,
        late_items=late,
        genres=list(GENRES),
    )


def draw_tastes(
    rng: np.random.Generator, n_users: int, prior: FloatArray = GENRE_PRIOR
) -> tuple[FloatArray, IntArray]:
    """Each user's interest over 1-3 favourite genres, and a different genre to shift to."""
    n_genres = len(prior)
    # Gumbel top-k: sorting log-prior plus Gumbel noise samples genres without replacement.
    keys = np.log(prior) + rng.gumbel(size=(n_users, n_genres))
    favourites = np.argsort(-keys, axis=1)[:, :3]
    n_favourites = rng.choice(3, size=n_users, p=FAVOURITE_COUNT_SHARES) + 1
    weights = rng.gamma(1.0, size=(n_users, 3)) * (np.arange(3) < n_favourites[:, None])
    taste = np.zeros((n_users, n_genres))
    np.put_along_axis(taste, favourites, weights / weights.sum(axis=1, keepdims=True), axis=1)
    return taste, _new_interest(rng, taste, prior)


def _new_interest(rng: np.random.Generator, taste: FloatArray, prior: FloatArray) -> IntArray:
    """For every user, a genre drawn from the prior among those they do not care for yet."""
    keys = np.log(prior) + rng.gumbel(size=taste.shape)
    return np.asarray(np.argmax(np.where(taste > 0, -np.inf, keys), axis=1), dtype=np.int64)


def _session_log(
    model: BehaviourModel, rng: np.random.Generator, *, n_events: int, start: float, end: float
) -> EventColumns:
    """Exactly `n_events` events of whole sessions (the last one cut short), sorted by time."""
    batches: list[EventColumns] = []
    simulated = sessions = 0
    while simulated < n_events:
        n = min(int((n_events - simulated) / EVENTS_PER_SESSION * 1.1) + 16, SESSIONS_PER_BATCH)
        starts = rng.uniform(start, end, n).round(3)
        batch = simulate_sessions(model, rng, sample_users(model, rng, n), starts)
        batch = dataclasses.replace(batch, session=batch.session + sessions)
        batch = batch.take(batch.ts.round(3) <= end)  # later events have not happened yet
        batches.append(batch)
        simulated, sessions = simulated + len(batch), sessions + n
    log = EventColumns.concat(batches)
    # Session start times are random, so a prefix of sessions is a random subset of them.
    keep = np.lexsort((log.ts, log.session))[:n_events]
    return log.take(keep[np.argsort(log.ts[keep], kind="stable")])


def stream_live_events(
    world: World, *, seed: int = 0, start_ts: float | None = None, events_per_second: float = 200.0
) -> Iterator[Event]:
    """Endless new events for `world`'s users and items, from `start_ts` on, in time order.

    Users behave as in `generate_world`; their tastes, item popularity and item appeal are
    read from the world's log, so this works for any World (MovieLens too). `start_ts`
    defaults to the time of the world's last event. Simulated time advances at about
    `events_per_second` events per second; the caller decides how fast to consume them.
    """
    if events_per_second <= 0:
        raise ValueError(
            f"stream_live_events: events_per_second must be positive, got {events_per_second}"
        )
    if not world.users or not world.all_items:
        raise ValueError(f"stream_live_events: world {world.name!r} has no users or no items")
    rng = np.random.default_rng(seed)
    start = world.end_ts if start_ts is None else start_ts
    model = _model_from_world(world, rng, start)
    return _live(
        model, rng, start=start, events_per_second=events_per_second, id_prefix=f"live{seed}"
    )


def _live(
    model: BehaviourModel,
    rng: np.random.Generator,
    *,
    start: float,
    events_per_second: float,
    id_prefix: str,
) -> Iterator[Event]:
    pending: EventColumns | None = None
    emitted, chunk_end = 0, start
    while True:
        chunk_start, chunk_end = chunk_end, chunk_end + LIVE_CHUNK_S
        n = int(rng.poisson(events_per_second / EVENTS_PER_SESSION * LIVE_CHUNK_S))
        starts = np.sort(rng.uniform(chunk_start, chunk_end, n))
        fresh = simulate_sessions(model, rng, sample_users(model, rng, n), starts)
        pending = fresh if pending is None else EventColumns.concat([pending, fresh])
        pending = pending.take(np.argsort(pending.ts, kind="stable"))
        # Later chunks start at chunk_end, so everything before it is final.
        ready = int(np.searchsorted(pending.ts, chunk_end))
        yield from to_events(
            model, pending.take(np.arange(ready)), id_prefix=id_prefix, first_id=emitted
        )
        emitted += ready
        pending = pending.take(np.arange(ready, len(pending)))


def _model_from_world(world: World, rng: np.random.Generator, start: float) -> BehaviourModel:
    """The behaviour model implied by a world's log: who likes what, what is popular."""
    items = world.all_items
    genre_index = {genre: g for g, genre in enumerate(world.genres)}
    unknown = len(world.genres)  # one extra genre for items that have none
    item_genre = np.array([genre_index.get(item.genre, unknown) for item in items], dtype=np.int64)
    item_genre2 = np.array(
        [genre_index.get(item.genres[1], -1) if len(item.genres) > 1 else -1 for item in items],
        dtype=np.int64,
    )
    item_pos = {item.item_id: i for i, item in enumerate(items)}
    user_pos = {user: u for u, user in enumerate(world.users)}
    kind_pos = {kind: k for k, kind in enumerate(EVENT_TYPES)}
    ev_item = np.array([item_pos[e.item_id] for e in world.events], dtype=np.int64)
    ev_user = np.array([user_pos[e.user_id] for e in world.events], dtype=np.int64)
    ev_kind = np.array([kind_pos[e.type] for e in world.events], dtype=np.int64)
    ev_watch = np.array([e.watch_seconds for e in world.events], dtype=np.float64)
    n_items, n_users, n_genres = len(items), len(world.users), unknown + 1

    shown = np.bincount(ev_item[ev_kind == IMPRESSION], minlength=n_items)
    clicked = np.bincount(ev_item[ev_kind == CLICK], minlength=n_items)
    appeal = np.ones(n_items)
    if clicked.sum() > 0:
        ctr = clicked.sum() / shown.sum()
        appeal = np.clip((clicked + 20 * ctr) / (shown + 20) / ctr, 0.5, VIRAL_APPEAL)
    duration = np.zeros(n_items)
    completes = ev_kind == COMPLETE
    np.maximum.at(duration, ev_item[completes], ev_watch[completes])
    duration[duration == 0] = np.median(duration[duration > 0]) if completes.any() else 600.0

    genre_count = np.bincount(item_genre, minlength=n_genres) + 1.0
    genre_prior = (genre_count / genre_count.sum()).astype(np.float64)
    taste, _ = draw_tastes(rng, n_users, genre_prior)
    positive = np.isin(ev_kind, POSITIVE_KINDS)
    liking = np.zeros((n_users, n_genres))
    np.add.at(liking, (ev_user[positive], item_genre[ev_item[positive]]), 1.0)
    # A user's taste is their three most engaged genres; users without history get a drawn one.
    liking[np.arange(n_users)[:, None], np.argsort(-liking, axis=1)[:, 3:]] = 0.0
    known = liking.sum(axis=1) > 0
    taste[known] = liking[known] / liking[known].sum(axis=1, keepdims=True)
    shifts = rng.random(n_users) < SHIFTING_USER_SHARE
    popular_items, popular_cum = popularity_index(
        item_genre,
        (np.bincount(ev_item, minlength=n_items) + 1.0).astype(np.float64),
        eligible=np.ones(n_items, dtype=bool),
    )
    return BehaviourModel(
        item_ids=[item.item_id for item in items],
        item_genre=item_genre,
        item_genre2=item_genre2,
        item_appeal=appeal,
        item_duration_s=duration,
        genre_prior=genre_prior,
        popular_items=popular_items,
        popular_cum=popular_cum,
        user_ids=list(world.users),
        user_activity_cum=np.cumsum(np.bincount(ev_user, minlength=n_users) + 1.0),
        taste=taste,
        shift_genre=_new_interest(rng, taste, genre_prior),
        shift_at=np.where(shifts, start + rng.exponential(1800.0, n_users), np.inf),
        viral_items=np.arange(len(world.items), n_items, dtype=np.int64),
        viral_at=np.array([item.created_at for item in world.late_items], dtype=np.float64),
    )
