"""A main index memory-mapped from a snapshot file: shared by every API process, read-only.

usearch cannot change a viewed index, so removals are tombstones filtered out of searches
(a replaced item is found under its new vector in the delta index only), and adds are
refused: new items stay in the delta index until the next snapshot.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from recomatrix.retrieval import HnswIndex, Neighbours

# A TieredIndex around a MappedHnswIndex must never try to compact into it.
NEVER_COMPACT = 2**62


class MappedHnswIndex(HnswIndex):
    """An `HnswIndex` viewed from `path` (pages shared between processes by the OS)."""

    def __init__(
        self, *, path: Path, ndim: int, connectivity: int = 16, expansion_search: int = 96
    ) -> None:
        # The vectors' precision (f32, f16, i8) is the file's: usearch reads it from there.
        super().__init__(ndim=ndim, connectivity=connectivity,
                         expansion_search=expansion_search, path=path, view=True)  # fmt: skip
        self._lock = threading.Lock()
        self._removed: frozenset[int] = frozenset()  # replaced as a whole: searches take no lock
        self._removed_keys = np.empty(0, dtype=np.int64)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        raise ValueError(
            "the main index is memory-mapped read-only: add new items to the delta index "
            f"(TieredIndex with compact_at={NEVER_COMPACT})"
        )

    def remove(self, keys: np.ndarray) -> None:
        present = [k for k in np.asarray(keys, dtype=np.int64).tolist() if k in self._index]
        if not present:
            return
        with self._lock:
            removed = self._removed | frozenset(present)
            self._removed_keys = np.fromiter(removed, dtype=np.int64, count=len(removed))
            self._removed = removed

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        removed = self._removed_keys
        if len(removed) == 0:
            return super().search(queries, k)
        # Ask for enough extra neighbours that k survive even if every removed key is among them.
        found = super().search(queries, k + len(removed))
        valid = np.arange(found.keys.shape[1])[None, :] < found.counts[:, None]
        keep = valid & ~np.isin(found.keys, removed)
        keys = np.full((len(found.keys), max(k, 0)), -1, dtype=np.int64)
        sims = np.full((len(found.keys), max(k, 0)), -1.0, dtype=np.float32)
        counts = np.zeros(len(found.keys), dtype=np.int64)
        for q in range(len(found.keys)):
            row = np.flatnonzero(keep[q])[:k]
            keys[q, : len(row)], sims[q, : len(row)] = found.keys[q, row], found.similarity[q, row]
            counts[q] = len(row)
        return Neighbours(keys, sims, counts)

    def save(self, path: Path) -> None:
        raise ValueError("a memory-mapped index is saved by the snapshot it was viewed from")

    def __len__(self) -> int:
        return len(self._index) - len(self._removed)
