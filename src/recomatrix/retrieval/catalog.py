"""The item catalogue: item records, their integer index keys and their retrieval vectors."""

from __future__ import annotations

import sys
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]  # ships no type information
import numpy as np

from recomatrix.types import Candidate, Item, ItemId

_DTYPES: dict[str, type[np.floating[Any]]] = {"f16": np.float16, "f32": np.float32}
_SHIFT = 24  # an item's text record: at most 16 MiB
_LENGTH = (1 << _SHIFT) - 1


class Traits(NamedTuple):
    """What retrieval, ranking and the rules read of an item, without its text."""

    genre: str  # primary genre, "" when none
    creator_id: str
    sponsored: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class ItemColumns:
    """Many new items as columns, for a bulk load (`Catalogue.load`): row i of each is item i.

    A million `Item` objects alive at once fragment the heap they leave behind (their long-
    lived ids end up interleaved with short-lived titles and floats, so the freed memory
    cannot go back to the OS); a column load never makes them.
    """

    item_ids: Sequence[ItemId]
    titles: Sequence[str]
    genres: Sequence[tuple[str, ...]]
    creator_ids: Sequence[str]
    created_at: np.ndarray
    sponsored: np.ndarray
    descriptions: Sequence[str] | None = None  # None: all empty
    tags: Sequence[tuple[str, ...]] | None = None  # None: all empty

    def __len__(self) -> int:
        return len(self.item_ids)


class Catalogue:
    """Maps string item ids to dense integer keys (what the vector indexes store).

    Keys are never reused, so a stale key from an index can always be told apart from a
    live item. Reads take no lock; a writer appends every column before it publishes a new
    key, so a reader never sees a key whose columns are missing.

    Records are kept as columns, not `Item` objects: per item an id, its genres and creator
    (shared objects), its publication time, its sponsored flag, and its text (title,
    description, tags) packed in one growing byte buffer. A million items cost ~120 bytes
    each instead of ~250 as objects; `get` builds an `Item` on demand, and the request path
    reads `traits` instead. A replaced item's old text stays in the buffer (the price of
    lock-free reads); `compact_text` rewrites the buffer when replacements pile up.

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
        self._ids: list[ItemId | None] = []  # key -> id, None once deleted
        self._genres: list[tuple[str, ...]] = []  # shared tuples (few distinct ones)
        self._shared_genres: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._creators: list[str] = []  # interned strings
        self._created = array("d")
        self._sponsored = bytearray()
        # msgpack [title, description, tags] records back to back, and per key its record's
        # start << 24 | length (one int, so a reader never pairs a new start with an old
        # length); one tuple, so compaction swaps both for readers at once.
        self._text: tuple[bytearray, array[int]] = (bytearray(), array("q"))
        self._vectors = np.zeros((capacity, ndim), dtype=_DTYPES[dtype])

    def put(self, items: Sequence[Item], vectors: np.ndarray) -> np.ndarray:
        """Create or replace items with their vectors; returns their keys."""
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        records = [
            _text_record(it.item_id, it.title, it.description, it.tags) for it in items
        ]  # refuse a bad batch before any write
        with self._lock:
            keys = np.empty(len(items), dtype=np.int64)
            new: dict[ItemId, tuple[Item, bytes]] = {}  # first seen here; the last put wins
            offset: dict[ItemId, int] = {}
            for i, (item, record) in enumerate(zip(items, records, strict=True)):
                key = self._keys.get(item.item_id)
                if key is not None:
                    self._write(key, item, record)
                else:
                    new[item.item_id] = (item, record)
                    key = len(self._ids) + offset.setdefault(item.item_id, len(offset))
                keys[i] = key
            for item, record in new.values():
                self._append(item, record)
            self._grow(len(self._ids) + len(new))
            self._vectors[keys] = vectors
            for item_id in new:  # publish: only now can a reader find the new keys
                self._ids.append(item_id)
                self._keys[item_id] = len(self._ids) - 1
            return keys

    def load(self, columns: ItemColumns, vectors: np.ndarray) -> np.ndarray:
        """Add many new items at once from columns (see `ItemColumns`); returns their keys.
        Every id must be new and appear once: replacing items is `put`'s job."""
        n = len(columns)
        required = (columns.titles, columns.genres, columns.creator_ids, columns.created_at,
                    columns.sponsored, vectors)  # fmt: skip
        optional = [c for c in (columns.descriptions, columns.tags) if c is not None]
        if any(len(column) != n for column in (*required, *optional)):
            raise ValueError(f"every column of a load needs {n} rows (one per item id)")
        if len(set(columns.item_ids)) != n or any(i in self._keys for i in columns.item_ids):
            raise ValueError("a load adds new items only: an id repeats or is already stored")
        no_text = ("",) * n
        records = [
            _text_record(item_id, title, description, tags)
            for item_id, title, description, tags in zip(
                columns.item_ids, columns.titles, columns.descriptions or no_text,
                columns.tags or ((),) * n, strict=True,
            )
        ]  # fmt: skip
        with self._lock:
            first = len(self._ids)
            for record in records:
                self._text[1].append(self._pack_text(record))
            del records
            self._genres.extend(self._shared(tuple(g)) for g in columns.genres)
            self._creators.extend(sys.intern(c) for c in columns.creator_ids)
            self._created.frombytes(np.asarray(columns.created_at, dtype="<f8").tobytes())
            self._sponsored.extend(np.asarray(columns.sponsored, dtype=bool).tobytes())
            keys = np.arange(first, first + n, dtype=np.int64)
            self._grow(first + n)
            self._vectors[keys] = vectors
            self._ids.extend(columns.item_ids)  # publish
            self._keys.update(zip(columns.item_ids, range(first, first + n), strict=True))
            return keys

    def delete(self, item_id: ItemId) -> int | None:
        """Forget an item; returns its key (None when unknown)."""
        with self._lock:
            key = self._keys.pop(item_id, None)
            if key is not None:
                self._ids[key] = None
            return key

    def get(self, item_id: ItemId) -> Item | None:
        key = self._keys.get(item_id)
        return None if key is None else self._item(key, item_id)

    def traits(self, key: int) -> Traits | None:
        """Genre, creator, sponsored flag and publication time of a live key (no text)."""
        if not 0 <= key < len(self._ids) or self._ids[key] is None:
            return None
        genres = self._genres[key]
        return Traits(
            genres[0] if genres else "",
            self._creators[key],
            bool(self._sponsored[key]),
            self._created[key],
        )

    def candidates(
        self, keys: Sequence[int], similarities: Sequence[float], source: str
    ) -> list[Candidate]:
        """A `Candidate` per live key, in order, carrying its traits (deleted keys skipped).

        The request path's hot loop: one pass over the columns, no `Traits` in between.
        """
        ids, genres, creators = self._ids, self._genres, self._creators
        created, sponsored, size = self._created, self._sponsored, len(self._ids)
        out = []
        for key, similarity in zip(keys, similarities, strict=True):
            item_id = ids[key] if 0 <= key < size else None
            if item_id is not None:
                g = genres[key]
                genre = g[0] if g else ""
                out.append(Candidate(item_id, source, similarity, 0.0, genre, creators[key],
                                     sponsored[key] != 0, created[key], key))  # fmt: skip
        return out

    def candidates_of(self, item_ids: Sequence[ItemId], source: str) -> list[Candidate]:
        """`candidates` by item id (unknown ids skipped), retrieval similarity 0."""
        get = self._keys.get
        keys = [k for i in item_ids if (k := get(i)) is not None]
        return self.candidates(keys, [0.0] * len(keys), source)

    def traits_of(self, item_id: ItemId) -> Traits | None:
        key = self._keys.get(item_id)
        return None if key is None else self.traits(key)

    def primary_genres(self, item_ids: Sequence[ItemId]) -> list[str]:
        """The primary genre of each live item among `item_ids`, in order (the unknown skipped)."""
        return [t.genre for i in item_ids if (t := self.traits_of(i)) is not None]

    def key(self, item_id: ItemId) -> int | None:
        return self._keys.get(item_id)

    def item_id(self, key: int) -> ItemId | None:
        """The live item behind an index key, None when deleted or unknown."""
        return self._ids[key] if 0 <= key < len(self._ids) else None

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
        view = self._vectors[: len(self._ids)]
        view.flags.writeable = False
        return view

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> list[Item]:
        """Every live item, in key order (builds the records: for offline work)."""
        return [self._item(key, i) for key, i in enumerate(self._ids) if i is not None]

    def text_bytes(self) -> int:
        """Bytes the text buffer holds, including replaced items' dead records."""
        return len(self._text[0])

    def compact_text(self) -> None:
        """Rewrite the text buffer without replaced items' dead records."""
        with self._lock:
            old, old_spans = self._text
            text, spans = bytearray(), array("q")
            for span in old_spans:
                start, length = span >> _SHIFT, span & _LENGTH
                spans.append(len(text) << _SHIFT | length)
                text += old[start : start + length]
            self._text = (text, spans)

    def _item(self, key: int, item_id: ItemId) -> Item:
        text, spans = self._text
        start, length = spans[key] >> _SHIFT, spans[key] & _LENGTH
        title, description, tags = msgpack.unpackb(text[start : start + length], use_list=False)
        return Item(
            item_id=item_id,
            title=title,
            description=description,
            tags=tags,
            genres=self._genres[key],
            creator_id=self._creators[key],
            created_at=self._created[key],
            sponsored=bool(self._sponsored[key]),
        )

    def _pack_text(self, record: bytes) -> int:
        text = self._text[0]
        start = len(text)
        text += record
        return start << _SHIFT | len(record)

    def _shared(self, genres: tuple[str, ...]) -> tuple[str, ...]:
        return self._shared_genres.setdefault(genres, genres)

    def _append(self, item: Item, record: bytes) -> None:
        self._text[1].append(self._pack_text(record))
        self._genres.append(self._shared(tuple(item.genres)))
        self._creators.append(sys.intern(item.creator_id))
        self._created.append(float(item.created_at))
        self._sponsored.append(bool(item.sponsored))

    def _write(self, key: int, item: Item, record: bytes) -> None:
        self._text[1][key] = self._pack_text(record)
        self._genres[key] = self._shared(tuple(item.genres))
        self._creators[key] = sys.intern(item.creator_id)
        self._created[key] = float(item.created_at)
        self._sponsored[key] = bool(item.sponsored)

    def _grow(self, needed: int) -> None:
        if needed <= len(self._vectors):
            return
        grown = np.zeros((max(needed, 2 * len(self._vectors)), self.ndim), self._vectors.dtype)
        grown[: len(self._vectors)] = self._vectors
        self._vectors = grown


def _text_record(item_id: ItemId, title: str, description: str, tags: Sequence[str]) -> bytes:
    record: bytes = msgpack.packb([title, description, list(tags)])
    if len(record) > _LENGTH:
        raise ValueError(f"item {item_id!r}: text of {len(record)} bytes is too long")
    return record
