"""The VectorIndex seam: nearest-neighbour search over item vectors in the retrieval space."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Neighbours:
    """Search result for one batch of queries: `keys[q, j]` with cosine `similarity[q, j]`.

    Rows are best first; `counts[q]` says how many leading entries of row q are real.
    """

    keys: np.ndarray  # (queries, k) int64
    similarity: np.ndarray  # (queries, k) float32
    counts: np.ndarray  # (queries,) int64

    def row(self, q: int) -> list[tuple[int, float]]:
        return list(zip(*self.columns(q), strict=True))

    def columns(self, q: int) -> tuple[list[int], list[float]]:
        """Row q's real entries as (keys, similarities), best first."""
        n = int(self.counts[q])
        return self.keys[q, :n].tolist(), self.similarity[q, :n].tolist()


class VectorIndex(Protocol):
    """Cosine-similarity search; keys are the catalogue's integer item keys."""

    ndim: int

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert (or replace) vectors under keys."""
        ...

    def remove(self, keys: np.ndarray) -> None:
        """Forget keys; searches never return them again."""
        ...

    def search(self, queries: np.ndarray, k: int) -> Neighbours:
        """The k most similar keys per query row."""
        ...

    def __len__(self) -> int: ...


class MainIndex(VectorIndex, Protocol):
    """The HNSW index behind a TieredIndex: a VectorIndex that can be saved to a file."""

    def save(self, path: Path) -> None:
        """Write the index to `path` (reopened with `main_index(kind, path=...)`)."""
        ...
