"""hnswlib HNSW as the main index of the embedded tier, made safe to search while adding.

hnswlib searches ~2.5x faster than usearch per query on these machines (0.096 vs 0.23 ms
at 200k items, k 100, the same recall: docs/benchmarks.md), but its query walk takes no
lock, so a search racing an insert can read a half-linked node (nmslib/hnswlib#562;
ADR 0001). Here every hnswlib call holds one lock, and writes go in small chunks that let
waiting searches in between: while 2,000 items are folded into a 1M-item graph (0.4 s),
a search waits for one chunk at most (8 items, ~1.4 ms; measured: searches during the
fold p50 0.78 / max 1.95 ms against 0.25 ms alone). Chunks of 128 had stalled them 20 ms.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import hnswlib
import numpy as np

from recomatrix.retrieval.base import Neighbours
from recomatrix.retrieval.index import empty_neighbours, last_of_each, normalise

WRITE_CHUNK = 8  # items inserted per lock hold: the longest a search waits on a write
# An add into an empty index is a build, which nothing searches yet: large chunks keep the
# insert threads busy (chunks of 8 leave a second thread idle: 200k items took 21 s on 1 or
# 2 threads, against 10 s on 2 threads in one call).
BUILD_CHUNK = 65_536
_TOO_FEW_FOUND = "contiguous 2D array"  # hnswlib's error when a query found fewer than k


class GraphIndex:
    """hnswlib HNSW over cosine similarity (inner product of unit vectors), f32.

    >>> index = GraphIndex(ndim=2)
    >>> index.add(np.array([4, 5]), np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    >>> index.search(np.array([0.9, 0.1], np.float32), 1).row(0)[0][0]
    4
    """

    def __init__(
        self,
        *,
        ndim: int,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 96,
        path: Path | None = None,
        threads: int = 2,
        seed: int = 100,
        dtype: str = "f32",
    ) -> None:
        if dtype != "f32":
            raise ValueError(f"hnswlib keeps f32 vectors, not {dtype}: use usearch for {dtype}")
        self.ndim = ndim
        self.threads = threads  # for adds (builds, compaction); a search uses one thread
        self._expansion_search = expansion_search
        self._lock = threading.Lock()
        self._waiting_lock = threading.Lock()  # guards the counter below (`+=` is not atomic)
        self._searches_waiting = 0
        self._index = hnswlib.Index(space="ip", dim=ndim)
        self._live = np.zeros(0, dtype=bool)  # by key: in the graph and not deleted
        self._count = 0  # live keys (a sum over `_live` would cost 0.3 ms a search at 1M)
        self._ef = 0  # the search expansion hnswlib was last given
        if path is None:
            self._index.init_index(max_elements=1024, M=connectivity,
                                   ef_construction=expansion_add, random_seed=seed)  # fmt: skip
        else:
            self._index.load_index(str(path))
            deleted_file = _deleted_path(path)  # written by `save`; absent: a foreign file
            deleted = np.load(deleted_file) if deleted_file.exists() else np.empty(0, np.int64)
            self._mark_live(np.asarray(self._index.get_ids_list(), dtype=np.int64), True)
            self._mark_live(deleted, False)
        self._index.set_num_threads(1)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace; a key repeated in one batch keeps its last vector."""
        keys, vectors = last_of_each(keys, vectors)
        unit = normalise(vectors)
        size = BUILD_CHUNK if len(self) == 0 else WRITE_CHUNK
        for start in range(0, len(keys), size):
            chunk = slice(start, start + size)
            self._yield_to_searches()
            with self._lock:
                needed = self._index.element_count + len(keys[chunk])
                if needed > self._index.max_elements:
                    self._index.resize_index(max(needed, int(self._index.max_elements * 1.5)))
                self._index.add_items(unit[chunk], keys[chunk], num_threads=self.threads)
                self._mark_live(keys[chunk], True)

    def remove(self, keys: np.ndarray) -> None:
        keys = np.unique(np.asarray(keys, dtype=np.int64))
        with self._lock:
            gone = keys[self._is_live(keys)]
            for key in gone.tolist():
                self._index.mark_deleted(key)
            self._mark_live(gone, False)

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        queries = normalise(np.atleast_2d(queries))
        result = empty_neighbours(len(queries), k)
        with self._waiting_lock:
            self._searches_waiting += 1
        with self._lock:
            with self._waiting_lock:
                self._searches_waiting -= 1
            k_found = min(k, self._count)
            if k_found <= 0:
                return result
            ef = max(self._expansion_search, k_found)
            if ef != self._ef:
                self._index.set_ef(ef)
                self._ef = ef
            try:
                labels, distances = self._index.knn_query(queries, k=k_found, num_threads=1)
            except RuntimeError as err:
                if _TOO_FEW_FOUND not in str(err):
                    raise
                return self._search_each(queries, k_found, result)
        result.keys[:, :k_found] = labels.astype(np.int64)
        result.similarity[:, :k_found] = 1.0 - distances
        result.counts[:] = k_found
        return result

    def save(self, path: Path) -> None:
        with self._lock:
            self._index.save_index(str(path))
            deleted = np.setdiff1d(
                np.asarray(self._index.get_ids_list(), dtype=np.int64), np.flatnonzero(self._live)
            )
        np.save(_deleted_path(path), deleted)

    def __len__(self) -> int:
        return self._count

    def _search_each(self, queries: np.ndarray, k: int, result: Neighbours) -> Neighbours:
        """Under the lock: a query found fewer than k live nodes (deletions can leave a
        region of the graph with few reachable), and hnswlib raises rather than return a
        ragged batch. Each query on its own, with the largest k it can fill."""
        for row, query in enumerate(queries):
            width = k
            while width > 0:
                try:
                    labels, distances = self._index.knn_query(query, k=width, num_threads=1)
                    break
                except RuntimeError as err:
                    if _TOO_FEW_FOUND not in str(err):
                        raise
                    width = width * 3 // 4
            if width > 0:
                result.keys[row, :width] = labels[0].astype(np.int64)
                result.similarity[row, :width] = 1.0 - distances[0]
                result.counts[row] = width
        return result

    def _yield_to_searches(self) -> None:
        """Between write chunks, let searches already waiting for the lock go first
        (CPython's lock is not fair: a writer releasing and re-acquiring would win)."""
        for _ in range(50):
            if self._searches_waiting <= 0:
                return
            time.sleep(0.0001)

    def _is_live(self, keys: np.ndarray) -> np.ndarray:
        inside = (keys >= 0) & (keys < len(self._live))
        live = np.zeros(len(keys), dtype=bool)
        live[inside] = self._live[keys[inside]]
        return live

    def _mark_live(self, keys: np.ndarray, value: bool) -> None:
        """Record keys (unique) as live or deleted, keeping the live count."""
        if len(keys) == 0:
            return
        top = int(keys.max()) + 1
        if top > len(self._live):
            grown = np.zeros(max(top, len(self._live) * 3 // 2), dtype=bool)
            grown[: len(self._live)] = self._live
            self._live = grown
        changed = int(np.count_nonzero(self._live[keys] != value))
        self._live[keys] = value
        self._count += changed if value else -changed


def _deleted_path(path: Path) -> Path:
    return Path(f"{path}.deleted.npy")
