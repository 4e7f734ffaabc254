"""The scale world: millions of items and users as arrays, generated vectorised in seconds.

The demo world (`synthetic.py`) simulates sessions and encodes item text with a sentence
model; neither scales to a million items on two cores. This world keeps what the request
path's cost depends on and synthesises the rest:

- item vectors: unit vectors from 200 power-law-weighted clusters in a 16-dim latent space,
  projected to `dim` (learned embeddings look like this; uniform noise does not, and no
  ANN index searches it well). A cluster belongs to one genre.
- popularity: Zipf-like (exponent 1.1) over a random permutation; creators with Zipf-sized
  catalogues; ages exponential with a mean of 30 days, 1 % published in the last day.
- users: a favourite cluster drawn by cluster weight, a long-term vector near it, and a
  history of 5-40 items, half from the favourite cluster, half by popularity.
- live events: a recent stream (impressions, clicks, completes, skips) over the last hour
  from an active minority, popular items first, to fill the rolling windows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recomatrix.data.catalogue import GENRES
from recomatrix.retrieval.catalog import ItemColumns
from recomatrix.types import Event, Item

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

CLUSTERS = 200
LATENT_DIM = 16
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ScaleWorld:
    """Items and users of a scale benchmark as columns (row i of each array is item/user i)."""

    item_vectors: F32  # (n_items, dim), unit rows
    item_cluster: I64
    item_creator: I64
    item_created_at: npt.NDArray[np.float64]
    item_popularity: npt.NDArray[np.float64]  # sampling weights, sum 1
    # (n_users, dim), unit rows: the trained long-term vectors, stored at half precision
    # (a query vector needs no more; it halves the largest array of the world).
    user_vectors: npt.NDArray[np.float16]
    history_indptr: I64  # CSR: user u's history is history_items[indptr[u]:indptr[u + 1]]
    history_items: npt.NDArray[np.int32]
    cluster_centres: F32  # (CLUSTERS, dim), unit rows: where a new item of a cluster lands
    end_ts: float
    seed: int

    @property
    def n_items(self) -> int:
        return len(self.item_vectors)

    @property
    def n_users(self) -> int:
        return len(self.user_vectors)

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])

    def item_id(self, i: int) -> str:
        return f"i{i:08d}"

    def user_id(self, u: int) -> str:
        return f"u{u:08d}"

    def genre(self, cluster: int) -> str:
        return GENRES[cluster % len(GENRES)]

    def item_columns(self) -> ItemColumns:
        """Every item's catalogue record as columns, for `Catalogue.load` (ids made in one
        run, so the ones the catalogue keeps sit together in memory)."""
        item_ids = [self.item_id(i) for i in range(self.n_items)]
        genre_of_cluster = [(self.genre(c),) for c in range(CLUSTERS)]
        names = [name.title() for (name,) in genre_of_cluster]
        cluster = self.item_cluster.tolist()
        creators = {c: f"c{c:06d}" for c in np.unique(self.item_creator).tolist()}
        return ItemColumns(
            item_ids=item_ids,
            titles=[f"{names[c]} #{i}" for i, c in enumerate(cluster)],
            genres=[genre_of_cluster[c] for c in cluster],
            creator_ids=[creators[c] for c in self.item_creator.tolist()],
            created_at=self.item_created_at,
            sponsored=np.arange(self.n_items) % 500 == 0,
        )

    def items(self, start: int = 0, stop: int | None = None) -> list[Item]:
        """Catalogue records of items [start, stop): short titles, shared genre/creator strings."""
        stop = self.n_items if stop is None else stop
        genres = [(g,) for g in GENRES]
        creators: dict[int, str] = {}
        out = []
        for i in range(start, stop):
            creator = int(self.item_creator[i])
            cluster = int(self.item_cluster[i])
            out.append(
                Item(
                    item_id=self.item_id(i),
                    title=f"{self.genre(cluster).title()} #{i}",
                    genres=genres[cluster % len(GENRES)],
                    creator_id=creators.setdefault(creator, f"c{creator:06d}"),
                    created_at=float(self.item_created_at[i]),
                    sponsored=i % 500 == 0,
                )
            )
        return out

    def history(self, u: int) -> npt.NDArray[np.int32]:
        return self.history_items[self.history_indptr[u] : self.history_indptr[u + 1]]


def generate_scale_world(
    *, n_items: int = 1_000_000, n_users: int = 1_000_000, dim: int = 64, seed: int = 11,
    end_ts: float | None = None,
) -> ScaleWorld:  # fmt: skip
    """A reproducible world of `n_items` items and `n_users` users (same seed, same arrays;
    `end_ts`, default now, only moves the timestamps)."""
    end_ts = float(round(time.time())) if end_ts is None else end_ts
    if n_items < CLUSTERS or n_users < 1 or dim < LATENT_DIM:
        raise ValueError(
            f"generate_scale_world: need n_items >= {CLUSTERS}, n_users >= 1 and "
            f"dim >= {LATENT_DIM}; got {n_items}, {n_users}, {dim}"
        )
    rng = np.random.default_rng(seed)
    projection = rng.normal(size=(LATENT_DIM, dim)).astype(np.float32)
    latent_centres = rng.normal(size=(CLUSTERS, LATENT_DIM)).astype(np.float32)
    weights = 1.0 / np.arange(1, CLUSTERS + 1) ** 0.8
    weights /= weights.sum()

    cluster = rng.choice(CLUSTERS, size=n_items, p=weights).astype(np.int64)
    item_vectors = _embed(rng, latent_centres[cluster], projection, spread=0.5)
    rank = rng.permutation(n_items)
    popularity: npt.NDArray[np.float64] = (1.0 / (1.0 + rank) ** 1.1).astype(np.float64)
    popularity /= popularity.sum()
    n_creators = max(1, n_items // 25)
    creator_weights = 1.0 / np.arange(1, n_creators + 1) ** 0.7
    creator = rng.choice(n_creators, size=n_items, p=creator_weights / creator_weights.sum())
    age = rng.exponential(30 * DAY_S, n_items)
    fresh = rng.random(n_items) < 0.01
    age[fresh] = rng.uniform(0, DAY_S, int(fresh.sum()))
    created_at = np.floor(end_ts - age)

    favourite = rng.choice(CLUSTERS, size=n_users, p=weights)
    user_vectors = _embed(rng, latent_centres[favourite], projection, spread=0.7, dtype=np.float16)
    indptr, history = _histories(rng, favourite, cluster, popularity)
    centres = _embed(rng, latent_centres, projection, spread=0.0)
    return ScaleWorld(
        item_vectors=item_vectors,
        item_cluster=cluster,
        item_creator=creator.astype(np.int64),
        item_created_at=created_at,
        item_popularity=popularity,
        user_vectors=user_vectors,
        history_indptr=indptr,
        history_items=history,
        cluster_centres=centres,
        end_ts=end_ts,
        seed=seed,
    )


def _embed(
    rng: np.random.Generator, latent: F32, projection: F32, *, spread: float,
    chunk: int = 250_000, dtype: type[np.floating[Any]] = np.float32,
) -> Any:  # fmt: skip
    """Latent points plus Gaussian spread, projected to `dim` with a little noise, unit rows."""
    dim = projection.shape[1]
    out = np.empty((len(latent), dim), dtype=dtype)
    for start in range(0, len(latent), chunk):
        part = latent[start : start + chunk]
        noisy = part + spread * rng.normal(size=part.shape).astype(np.float32)
        v = noisy @ projection + 0.1 * rng.normal(size=(len(part), dim)).astype(np.float32)
        out[start : start + chunk] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def _histories(
    rng: np.random.Generator, favourite: I64, cluster: I64, popularity: npt.NDArray[np.float64]
) -> tuple[I64, npt.NDArray[np.int32]]:
    """Per user 5-40 items: half from the favourite cluster (uniform), half by popularity."""
    n_users = len(favourite)
    lengths = rng.integers(5, 41, n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    total = int(indptr[-1])
    owner = np.repeat(np.arange(n_users), lengths)
    by_cluster = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[by_cluster], np.arange(CLUSTERS + 1))
    sizes = np.diff(starts)
    own = favourite[owner]
    # A cluster can be empty in a small world: those picks fall back to popularity.
    offset = (rng.random(total) * np.maximum(sizes[own], 1)).astype(np.int64)
    from_cluster = by_cluster[np.minimum(starts[own] + offset, len(cluster) - 1)]
    from_popular = _sample(rng, popularity, total)
    use_cluster = (rng.random(total) < 0.5) & (sizes[own] > 0)
    history = np.where(use_cluster, from_cluster, from_popular).astype(np.int32)
    return indptr, history


def _sample(rng: np.random.Generator, weights: npt.NDArray[np.float64], n: int) -> I64:
    """`n` indices drawn with `weights` by inverse CDF (rng.choice with p is slower at 1M)."""
    cdf = np.cumsum(weights)
    picks: I64 = np.searchsorted(cdf, rng.random(n) * cdf[-1]).astype(np.int64)
    return np.minimum(picks, len(weights) - 1)


def live_events(
    world: ScaleWorld, *, n_events: int, active_users: int, span_s: float = 3600.0
) -> list[Event]:
    """A recent stream ending at `world.end_ts`: impressions with clicks, completes and skips.

    Users are drawn from the first `active_users` (Zipf-weighted: a few very active),
    items by popularity. Each impression is followed, with fixed odds, by a click (30 %,
    of which half complete) or a skip (20 %). Sorted by time, unique event ids.
    """
    rng = np.random.default_rng(world.seed + 1)
    n_impressions = max(1, (2 * n_events) // 3)  # ~1.5 events per impression
    active = max(1, min(active_users, world.n_users))
    user_w = 1.0 / np.arange(1, active + 1) ** 0.8
    users = _sample(rng, user_w / user_w.sum(), n_impressions)
    items = _sample(rng, world.item_popularity, n_impressions)
    ts = np.sort(rng.uniform(world.end_ts - span_s, world.end_ts, n_impressions))
    outcome = rng.random(n_impressions)
    events: list[Event] = []
    for n in range(n_impressions):
        u, i, t, o = world.user_id(int(users[n])), world.item_id(int(items[n])), ts[n], outcome[n]
        events.append(Event(f"e{n}-0", u, i, "impression", float(t)))
        if o < 0.3:
            events.append(Event(f"e{n}-1", u, i, "click", float(t) + 1.0))
            if o < 0.15:
                events.append(Event(f"e{n}-2", u, i, "complete", float(t) + 60.0, 60.0))
        elif o < 0.5:
            events.append(Event(f"e{n}-1", u, i, "skip", float(t) + 2.0))
        if len(events) >= n_events:
            break
    events.sort(key=lambda e: e.ts)
    return events


__all__ = ["ScaleWorld", "generate_scale_world", "live_events"]
