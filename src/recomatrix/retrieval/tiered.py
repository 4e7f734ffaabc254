"""The main + delta index pair searched as one, with background compaction."""

from __future__ import annotations

import threading

import numpy as np

from recomatrix.retrieval.base import MainIndex, Neighbours
from recomatrix.retrieval.index import ExactIndex


class TieredIndex:
    """Searches the HNSW main index and the exact delta index together.

    New items go to the delta (found by the very next search); `compact()` moves them into
    the HNSW graph once the delta passes `compact_at` items. Writes and compaction take one
    lock, so a replaced or deleted item can never be resurrected by a compaction in flight;
    searches take none here (a main index that needs one to search safely takes its own).
    """

    def __init__(self, *, main: MainIndex, compact_at: int = 2_000) -> None:
        self.ndim = main.ndim
        self.main = main
        self.delta = ExactIndex(ndim=main.ndim)
        self._compact_at = compact_at
        self._writing = threading.Lock()
        self._compaction: threading.Thread | None = None

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        with self._writing:
            self.main.remove(keys)  # a replaced item must not be found under its old vector
            self.delta.add(keys, vectors)
            busy = self._compaction is not None and self._compaction.is_alive()
            if len(self.delta) >= self._compact_at and not busy:
                self._compaction = threading.Thread(
                    target=self.compact, name="index-compaction", daemon=True
                )
                self._compaction.start()

    def remove(self, keys: np.ndarray) -> None:
        with self._writing:
            self.delta.remove(keys)
            self.main.remove(keys)

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        main = self.main.search(queries, k)
        if len(self.delta) == 0:
            return main
        delta = self.delta.search(queries, k)
        keys = np.concatenate([delta.keys, main.keys], axis=1)
        sims = np.concatenate([delta.similarity, main.similarity], axis=1)
        valid = np.concatenate(
            [_valid_mask(delta), _valid_mask(main)], axis=1
        )  # padding slots sort last
        sims = np.where(valid, sims, -np.inf)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        keys = np.take_along_axis(keys, order, axis=1)
        sims = np.take_along_axis(sims, order, axis=1)
        counts = np.minimum(delta.counts + main.counts, k)
        # An item being compacted can sit in both indexes for a moment: keep its best copy.
        return _dedupe(Neighbours(keys, np.where(np.isfinite(sims), sims, -1.0), counts))

    def compact(self) -> int:
        """Fold the delta into the HNSW graph; returns how many items moved."""
        with self._writing:
            keys, vectors = self.delta.snapshot()
            if len(keys) == 0:
                return 0
            self.main.add(keys, vectors)
            self.delta.remove(keys)
            return len(keys)

    def __len__(self) -> int:
        return len(self.main) + len(self.delta)


def _valid_mask(found: Neighbours) -> np.ndarray:
    width = found.keys.shape[1]
    return np.arange(width)[None, :] < found.counts[:, None]


def _dedupe(found: Neighbours) -> Neighbours:
    keys, sims, counts = found.keys.copy(), found.similarity.copy(), found.counts.copy()
    for q in range(len(keys)):
        n = int(counts[q])
        _, first = np.unique(keys[q, :n], return_index=True)
        if len(first) < n:
            first.sort()
            kept = len(first)
            keys[q, :kept], sims[q, :kept] = keys[q, first], sims[q, first]
            keys[q, kept:], sims[q, kept:], counts[q] = -1, -1.0, kept
    return Neighbours(keys, sims, counts)
