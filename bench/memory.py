"""Where the memory of a 1M x 1M engine goes: RSS after each part is built, in MiB.

    python bench/memory.py [--items 1000000] [--index-cache DIR]

Builds the scale world's parts one by one in this process (item records, catalogue, HNSW
index, user profiles), then the whole engine (live state included) and prints the growth
of each step. Freed start-up memory is handed back to the OS before every reading.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from recomatrix.bench.common import release_free_memory, rss_mb
from recomatrix.bench.scale_engine import build_scale_engine, cached_index_path
from recomatrix.config import Settings
from recomatrix.data.scale import generate_scale_world
from recomatrix.features import UserProfiles
from recomatrix.retrieval import Catalogue, HnswIndex


class Steps:
    def __init__(self) -> None:
        release_free_memory()
        self.last = rss_mb()
        print(f"{'start':16s} {self.last:8.1f}")

    def __call__(self, name: str) -> None:
        release_free_memory()
        now = rss_mb()
        print(f"{name:16s} {now:8.1f}  ({now - self.last:+.1f})", flush=True)
        self.last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--index-cache", type=Path)
    args = parser.parse_args()
    step = Steps()
    world = generate_scale_world(n_items=args.items, n_users=args.items)
    step("world arrays")
    catalogue = Catalogue(ndim=world.dim, capacity=world.n_items)
    keys = catalogue.load(world.item_columns(), world.item_vectors)
    step("catalogue")
    settings = Settings()
    connectivity = settings.retrieval.hnsw_connectivity
    cached = (
        None if args.index_cache is None else cached_index_path(world, settings, args.index_cache)
    )
    if cached is not None and cached.exists():
        index = HnswIndex(ndim=world.dim, connectivity=connectivity, path=cached)
        step("hnsw index (loaded)")
    else:
        index = HnswIndex(ndim=world.dim, connectivity=connectivity, threads=2)
        index.add(keys, world.item_vectors)
        step("hnsw index")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            index.save(cached)
    profiles = UserProfiles(
        user_ids=[world.user_id(u) for u in range(world.n_users)], vectors=world.user_vectors,
        indptr=world.history_indptr, history=world.history_items,
        item_ids=[catalogue.item_id(k) or "" for k in range(world.n_items)],
    )  # fmt: skip
    step("user profiles")
    del catalogue, index, profiles, keys
    step("parts freed")
    with tempfile.TemporaryDirectory() as home:
        built = build_scale_engine(world, settings, home=Path(home), index_cache=args.index_cache)
        step("whole engine")
        world = dataclasses.replace(world, item_vectors=built.engine.catalogue.matrix())
        step("world f32 freed")
        built.engine.close()


if __name__ == "__main__":
    main()
