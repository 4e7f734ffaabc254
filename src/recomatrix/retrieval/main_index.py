"""The main index by name (`retrieval.main_index`): one table, no branches elsewhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recomatrix.retrieval.base import MainIndex
from recomatrix.retrieval.graph import GraphIndex
from recomatrix.retrieval.index import HnswIndex

if TYPE_CHECKING:  # config imports this module; settings are only passed in
    from recomatrix.config import RetrievalSettings

MAIN_INDEXES: dict[str, Callable[..., MainIndex]] = {
    "hnswlib": GraphIndex,  # fastest search (the embedded tier's default)
    "usearch": HnswIndex,  # memory-mappable (the Redis tier's snapshots), i8 vectors
}
FILE_SUFFIX = {"hnswlib": ".hnswlib", "usearch": ".usearch"}


def main_index(
    kind: str,
    *,
    ndim: int,
    connectivity: int = 16,
    expansion_search: int = 96,
    threads: int = 2,
    path: Path | None = None,
    **options: Any,
) -> MainIndex:
    """An empty main index of `kind`, or the one saved at `path`."""
    if kind not in MAIN_INDEXES:
        raise ValueError(f"unknown main index {kind!r}: use one of {', '.join(MAIN_INDEXES)}")
    return MAIN_INDEXES[kind](ndim=ndim, connectivity=connectivity,
                              expansion_search=expansion_search, threads=threads, path=path,
                              **options)  # fmt: skip


def main_index_of(
    retrieval: RetrievalSettings,
    *,
    kind: str | None = None,
    threads: int | None = None,
    path: Path | None = None,
) -> MainIndex:
    """The main index `retrieval` describes (kind, graph degree, ef, vector precision,
    build threads); `kind` and `threads` override the settings' own."""
    return main_index(
        kind or retrieval.main_index,
        ndim=retrieval.dim,
        connectivity=retrieval.hnsw_connectivity,
        expansion_search=retrieval.hnsw_expansion_search,
        dtype=retrieval.hnsw_dtype,
        threads=retrieval.hnsw_build_threads if threads is None else threads,
        path=path,
    )
