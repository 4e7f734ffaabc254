"""The item catalogue: item records, their integer index keys and their retrieval vectors."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from recomatrix.types import Item, ItemId

_DTYPES: dict[str, type[np.floating[Any]]] = {"f16": np.float16, "f32": np.float32}


class Catalogue:
    """Maps string item ids to dense integer keys (what the vector indexes store).

    Keys are never reused, so a stale key from an index can always be told apart from a
    live item. Reads take no lock: writers replace whole arrays, never mutate in place.

    Vectors are kept at half precision by default: they feed ranker features (cosine
    similarities, good to ~1e-3) and session updates, while retrieval searches the index's
    own float32 copy. At a million items that is 128 MB instead of 256 MB. Reads return
    float32.
    """

    def __init__(self, *, ndim: int, capacity: int = 1024, dtype: str = "f16") -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"catalogue dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.ndim = ndim
        self._lock = threading.Lock()
        self._keys: dict[ItemId, int] = {}  # live items only
        # key -> item record, None once deleted (one list, no second dict by id: a million
        # items would pay ~40 MB for it).
        self._records: list[Item | None] = []
        self._vectors = np.zeros((capacity, ndim), dtype=_DTYPES[dtype])

    def put(self, items: Sequence[Item], vectors: np.ndarray) -> np.ndarray:
        """Create or replace items with their vectors; returns their keys."""
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        with self._lock:
            keys = np.empty(len(items), dtype=np.int64)
            for i, item in enumerate(items):
                key = self._keys.get(item.item_id)
                if key is None:
                    key = len(self._records)
                    self._records.append(item)
                    self._keys[item.item_id] = key
                else:
                    self._records[key] = item
                keys[i] = key
            self._grow(len(self._records))
            self._vectors[keys] = vectors
            return keys

    def delete(self, item_id: ItemId) -> int | None:
        """Forget an item; returns its key (None when unknown)."""
        with self._lock:
            key = self._keys.pop(item_id, None)
            if key is not None:
                self._records[key] = None
            return key

    def get(self, item_id: ItemId) -> Item | None:
        key = self._keys.get(item_id)
        return None if key is None else self._records[key]

    def key(self, item_id: ItemId) -> int | None:
        return self._keys.get(item_id)

    def item_id(self, key: int) -> ItemId | None:
        """The live item behind an index key, None when deleted or unknown."""
        record = self._records[key] if 0 <= key < len(self._records) else None
        return None if record is None else record.item_id

    def vectors(self, item_ids: Sequence[ItemId]) -> np.ndarray:
        """Retrieval vectors of live items, in order (zero rows for unknown ids)."""
        keys = np.fromiter((self._keys.get(i, -1) for i in item_ids), dtype=np.int64)
        return self.vectors_at(keys)

    def vectors_at(self, keys: np.ndarray) -> np.ndarray:
        """Vectors by key (no id lookups: the request path's candidates carry their keys);
        zero rows for unknown keys (-1)."""
        matrix = self._vectors
        out: np.ndarray = matrix[np.clip(keys, 0, len(matrix) - 1)].astype(np.float32)
        out[(keys < 0) | (keys >= len(matrix))] = 0.0
        return out

    def vector(self, item_id: ItemId) -> np.ndarray | None:
        key = self._keys.get(item_id)
        return None if key is None else self._vectors[key].astype(np.float32)

    def matrix(self) -> np.ndarray:
        """Row k is the stored vector of key k (deleted keys keep their last vector), in the
        storage precision; a read-only view."""
        view = self._vectors[: len(self._records)]
        view.flags.writeable = False
        return view

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> list[Item]:
        return [record for record in self._records if record is not None]

    def _grow(self, needed: int) -> None:
        if needed <= len(self._vectors):
            return
        grown = np.zeros((max(needed, 2 * len(self._vectors)), self.ndim), self._vectors.dtype)
        grown[: len(self._vectors)] = self._vectors
        self._vectors = grown
