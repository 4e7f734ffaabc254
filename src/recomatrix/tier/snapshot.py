"""A deployment snapshot: what every API process and stream worker of the server tier loads.

    <home>/models/<version>/deployment/
        items.parquet     the catalogue: one row per item, with its index key
        vectors.npy       row k = the retrieval vector of key k (float16), memory-mapped
        main.usearch      the HNSW main index, memory-mapped read-only by API processes
        deployment.json   genres, popular items, encoder, where the item feed resumes;
                          written last, so a folder holding it is complete

Live state (users, item counters, trending) is not in it: that lives in Redis.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recomatrix.config import RetrievalSettings
from recomatrix.retrieval import (
    Catalogue,
    ExactIndex,
    HnswIndex,
    ItemColumns,
    MainIndex,
    main_index_of,
)
from recomatrix.tier.mapped import MappedHnswIndex
from recomatrix.types import Item, ItemId

if TYPE_CHECKING:
    from recomatrix.engine import Engine

SNAPSHOT_DIR = "deployment"
MANIFEST = "deployment.json"
FORMAT = 1
_FILES = ("items.parquet", "vectors.npy", "main.usearch", MANIFEST)

ITEM_SCHEMA = pa.schema(
    [
        ("key", pa.int64()),
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("genres", pa.list_(pa.string())),
        ("creator_id", pa.string()),
        ("created_at", pa.float64()),
        ("sponsored", pa.bool_()),
    ]
)


@dataclass(frozen=True, slots=True)
class Manifest:
    """The contents of deployment.json."""

    format: int
    version: str  # the model version folder the snapshot sits in
    created_ns: int  # when it was saved (the newest snapshot is served)
    items: int
    dim: int
    encoder: str  # the content encoder the models were trained with
    genres: list[str]  # the two-tower's genre ids are positions in this list
    popular: list[ItemId]
    feed_after: str  # item feed entry id: changes after it are not in the snapshot


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A saved deployment folder; loads its parts on demand."""

    folder: Path
    manifest: Manifest

    @property
    def version_dir(self) -> Path:
        return self.folder.parent

    def vectors(self) -> np.ndarray:
        """Row k is the vector of key k (float16), memory-mapped read-only."""
        matrix: np.ndarray = np.load(self.folder / "vectors.npy", mmap_mode="r")
        return matrix

    def keys(self) -> dict[ItemId, int]:
        """Item id -> key (the row of `vectors()`), without loading the rest of the items."""
        table = pq.read_table(self.folder / "items.parquet", columns=["item_id", "key"])
        ids, keys = table.column("item_id").to_pylist(), table.column("key").to_pylist()
        return dict(zip(ids, keys, strict=True))

    def catalogue(self) -> Catalogue:
        """The catalogue with every item under the key the main index knows it by (a column
        load: no `Item` per row, see `ItemColumns`)."""
        table = pq.read_table(self.folder / "items.parquet", schema=ITEM_SCHEMA)
        vectors = self.vectors()
        # Keys are positions in load order: keys of deleted items are filled and dropped again.
        row_of = np.full(len(vectors), -1, dtype=np.int64)
        row_of[table.column("key").to_numpy()] = np.arange(table.num_rows)
        gaps = np.flatnonzero(row_of < 0)
        rows = row_of.tolist()

        def column(name: str, filler: Any, convert: Any = None) -> list[Any]:
            values = table.column(name).to_pylist()
            if convert is not None:
                values = [convert(v) for v in values]
            return [values[r] if r >= 0 else filler for r in rows]

        columns = ItemColumns(
            item_ids=[i if r >= 0 else f"\x00deleted-{k}"
                      for k, (r, i) in enumerate(zip(rows, column("item_id", ""), strict=True))],
            titles=column("title", ""),
            genres=column("genres", (), tuple),
            creator_ids=column("creator_id", ""),
            created_at=np.array(column("created_at", 0.0), dtype=np.float64),
            sponsored=np.array(column("sponsored", False), dtype=bool),
            descriptions=column("description", ""),
            tags=column("tags", (), tuple),
        )  # fmt: skip
        catalogue = Catalogue(ndim=self.manifest.dim, capacity=len(vectors) + 1024)
        catalogue.load(columns, vectors)
        for key in gaps.tolist():
            catalogue.delete(f"\x00deleted-{key}")
        return catalogue

    def main_index(self, retrieval: RetrievalSettings) -> MappedHnswIndex:
        return MappedHnswIndex(
            path=self.folder / "main.usearch",
            ndim=self.manifest.dim,
            connectivity=retrieval.hnsw_connectivity,
            expansion_search=retrieval.hnsw_expansion_search,
        )


def item_from_row(row: dict[str, Any]) -> Item:
    """An Item from its stored columns (lists where the Item holds tuples)."""
    return Item(**{**row, "tags": tuple(row["tags"]), "genres": tuple(row["genres"])})


def fresh_pool(catalogue: Catalogue, size: int) -> ExactIndex:
    """The fresh source's exact index over the `size` newest items, as bootstrap builds it."""
    items = catalogue.items()
    newest = sorted(items, key=lambda item: item.created_at)[-size:]
    fresh = ExactIndex(ndim=catalogue.ndim, capacity=size)
    if newest:
        ids = [item.item_id for item in newest]
        keys = np.array([catalogue.key(i) for i in ids], dtype=np.int64)
        fresh.add(keys, catalogue.vectors(ids))
    return fresh


def save_snapshot(
    engine: Engine, version_dir: Path, *, encoder: str, genres: list[str], feed_after: str
) -> Snapshot:
    """Write `engine`'s catalogue, vectors, main index and popular list into `version_dir`."""
    folder = version_dir / SNAPSHOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # incomplete until written again, last
    engine.index.compact()  # the file holds every item; nothing waits in the delta
    catalogue = engine.catalogue
    items = catalogue.items()
    columns: dict[str, Any] = {name: [getattr(it, name) for it in items]
                               for name in ITEM_SCHEMA.names if name != "key"}  # fmt: skip
    columns["key"] = [catalogue.key(item.item_id) for item in items]
    pq.write_table(pa.table(columns, schema=ITEM_SCHEMA), folder / "items.parquet")
    matrix = catalogue.matrix()
    np.save(folder / "vectors.npy", matrix)
    _mappable(engine, np.array(columns["key"], dtype=np.int64), matrix).save(
        folder / "main.usearch"
    )
    manifest = Manifest(
        format=FORMAT, version=version_dir.name, created_ns=time.time_ns(), items=len(items),
        dim=catalogue.ndim, encoder=encoder, genres=list(genres),
        popular=list(engine.sources.popular), feed_after=feed_after,
    )  # fmt: skip
    partial = folder / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(asdict(manifest), indent=1) + "\n")
    os.replace(partial, folder / MANIFEST)
    return Snapshot(folder, manifest)


def _mappable(engine: Engine, keys: np.ndarray, matrix: np.ndarray) -> MainIndex:
    """The engine's main index if API processes can memory-map its file (usearch), else a
    usearch copy of the live `keys` (rows of the catalogue's `matrix`); `serve --backend
    redis` bootstraps with usearch, so the copy is only made for an embedded-tier engine."""
    main = engine.index.main
    if isinstance(main, HnswIndex):
        return main
    copy = main_index_of(engine.settings.retrieval, kind="usearch")
    copy.add(keys, matrix[keys])
    return copy


def open_snapshot(folder: Path) -> Snapshot:
    """The snapshot in `folder`; ValueError naming what is missing or unreadable."""
    missing = [name for name in _FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"no complete deployment snapshot at {folder} ({missing[0]} is missing): "
            "run `recomatrix serve --backend redis --bootstrap` to make one"
        )
    try:
        manifest = Manifest(**json.loads((folder / MANIFEST).read_text()))
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"{folder / MANIFEST} is not a deployment manifest: {err}") from err
    if manifest.format != FORMAT:
        raise ValueError(f"{folder} has snapshot format {manifest.format}, this recomatrix "
                         f"reads {FORMAT}: bootstrap again with --bootstrap")  # fmt: skip
    return Snapshot(folder, manifest)


def latest_snapshot(home: Path) -> Snapshot | None:
    """The most recently saved complete snapshot under `home/models`, or None."""
    manifests = (home / "models").glob(f"v*/{SNAPSHOT_DIR}/{MANIFEST}")
    found = [open_snapshot(path.parent) for path in manifests]
    return max(found, key=lambda s: s.manifest.created_ns, default=None)
