"""Vector indexes: usearch HNSW (the Redis tier's main index, memory-mappable; f32, f16
or i8) and exact search for small sets (the delta of new items, the fresh pool).

usearch stays correct when searched while another thread adds, so it takes no lock (the
embedded tier's hnswlib index, `graph.py`, needs one: docs/adr/0001-usearch.md). One add
into a 1M-item HNSW graph is found by its own search only 97.5-100 % of the time, so new
items live in an exact delta index until compaction folds them into the graph.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from usearch.index import Index

from recomatrix.retrieval.base import Neighbours


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return unit


class HnswIndex:
    """usearch HNSW over cosine similarity (f32 by default; `dtype="i8"` quarters memory)."""

    def __init__(
        self,
        *,
        ndim: int,
        dtype: str = "f32",
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 96,
        path: Path | None = None,
        view: bool = False,
        threads: int = 2,
    ) -> None:
        self.ndim = ndim
        self.threads = threads  # for adds (bulk builds); a search uses one thread
        self._index = Index(
            ndim=ndim,
            metric="cos",
            dtype=dtype,
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )
        if path is not None:
            if view:
                self._index.view(str(path))
            else:
                self._index.load(str(path))

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.uint64)
        present = np.array([int(k) in self._index for k in keys.tolist()], dtype=bool)
        if present.any():
            self._index.remove(keys[present])
        self._index.add(keys, normalise(vectors), threads=self.threads)

    def remove(self, keys: np.ndarray) -> None:
        for key in np.asarray(keys, dtype=np.uint64).tolist():
            if key in self._index:
                self._index.remove(key)

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        queries = normalise(np.atleast_2d(queries))
        if len(self._index) == 0 or k <= 0:
            return empty_neighbours(len(queries), k)
        found = self._index.search(queries, k, threads=1)
        # usearch answers one query with `Matches` (no counts) and a batch with `BatchMatches`.
        counts = np.atleast_1d(getattr(found, "counts", len(found.keys))).astype(np.int64)
        keys = np.atleast_2d(found.keys).astype(np.int64)
        distances = np.atleast_2d(found.distances).astype(np.float32)
        if (counts < keys.shape[1]).any():  # usearch leaves the unused slots unset
            unused = np.arange(keys.shape[1])[None, :] >= counts[:, None]
            keys[unused], distances[unused] = -1, 2.0
        return Neighbours(keys, 1.0 - distances, counts)

    def save(self, path: Path) -> None:
        self._index.save(str(path))

    def __len__(self) -> int:
        return len(self._index)


class ExactIndex:
    """Brute-force cosine search over a small set held as a dense matrix (delta, fresh pool)."""

    def __init__(self, *, ndim: int, capacity: int | None = None) -> None:
        self.ndim = ndim
        self._capacity = capacity  # keep only the newest `capacity` keys when set
        self._lock = threading.Lock()
        self._keys = np.empty(0, dtype=np.int64)
        self._vectors = np.empty((0, ndim), dtype=np.float32)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys, vectors = last_of_each(keys, vectors)
        with self._lock:
            keep = ~np.isin(self._keys, keys)
            self._keys = np.concatenate([self._keys[keep], keys])
            self._vectors = np.concatenate([self._vectors[keep], normalise(vectors)])
            if self._capacity is not None and len(self._keys) > self._capacity:
                self._keys = self._keys[-self._capacity :]
                self._vectors = self._vectors[-self._capacity :]

    def remove(self, keys: np.ndarray) -> None:
        with self._lock:
            keep = ~np.isin(self._keys, np.asarray(keys, dtype=np.int64))
            self._keys, self._vectors = self._keys[keep], self._vectors[keep]

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        queries = normalise(np.atleast_2d(queries))
        keys, vectors = self._keys, self._vectors  # a consistent snapshot without the lock
        k_found = min(k, len(keys))
        if k_found == 0:
            return empty_neighbours(len(queries), k)
        sims = queries @ vectors.T
        top = np.argpartition(-sims, k_found - 1, axis=1)[:, :k_found]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1)
        top = np.take_along_axis(top, order, axis=1)
        result = empty_neighbours(len(queries), k)
        result.keys[:, :k_found] = keys[top]
        result.similarity[:, :k_found] = np.take_along_axis(top_sims, order, axis=1)
        result.counts[:] = k_found
        return result

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, vectors) as of now."""
        return self._keys, self._vectors

    def newest(self, k: int) -> np.ndarray:
        """The keys added last, newest first."""
        return self._keys[::-1][:k].copy()

    def __len__(self) -> int:
        return len(self._keys)


def last_of_each(keys: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, vectors) with each key once: a key repeated in one batch keeps its last vector."""
    keys, vectors = np.asarray(keys, dtype=np.int64), np.asarray(vectors)
    if len(np.unique(keys)) == len(keys):
        return keys, vectors
    _, from_end = np.unique(keys[::-1], return_index=True)
    last = np.sort(len(keys) - 1 - from_end)
    return keys[last], vectors[last]


def empty_neighbours(n_queries: int, k: int) -> Neighbours:
    """A result with no entries: keys -1, similarity -1, counts 0."""
    return Neighbours(
        np.full((n_queries, max(k, 0)), -1, dtype=np.int64),
        np.full((n_queries, max(k, 0)), -1.0, dtype=np.float32),
        np.zeros(n_queries, dtype=np.int64),
    )
