"""What a compaction costs the requests searching the main index meanwhile.

    python bench/compaction_stall.py --index PATH.hnswlib [--items 1000000] [--fold 2000]

Opens a saved hnswlib main index of the scale world (`recomatrix bench --index-cache DIR`
leaves one), times top-200 searches alone, then folds `--fold` new items into the graph
(as `TieredIndex.compact` does once the delta reaches `retrieval.compact_at`) while another
thread searches at about a request path's pace, and prints both latency sets.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np

from recomatrix.bench.common import percentiles
from recomatrix.bench.peers import timed
from recomatrix.data.scale import generate_scale_world
from recomatrix.retrieval import main_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--fold", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=1, help="insert threads (build setting)")
    args = parser.parse_args()

    world = generate_scale_world(n_items=args.items, n_users=3_000, seed=11)
    index = main_index("hnswlib", ndim=world.dim, path=args.index, threads=args.threads)
    queries = world.user_vectors.astype(np.float32)
    alone, _ = timed(lambda q: index.search(q, 200).keys[0], queries[:500])

    during: list[float] = []
    folding = threading.Event()

    def search_meanwhile() -> None:
        for q in queries[500:]:
            if not folding.is_set():
                return
            started = time.perf_counter()
            index.search(q, 200)
            during.append((time.perf_counter() - started) * 1000)
            time.sleep(0.004)  # ~250 searches/s

    new_keys = np.arange(args.items + 1_000_000, args.items + 1_000_000 + args.fold)
    new_vectors = world.item_vectors[: args.fold].astype(np.float32) + 0.01
    folding.set()
    searcher = threading.Thread(target=search_meanwhile)
    searcher.start()
    started = time.perf_counter()
    index.add(new_keys, new_vectors)
    fold_s = time.perf_counter() - started
    folding.clear()
    searcher.join()
    print(f"fold of {args.fold:,} items into {args.items:,}: {fold_s:.2f} s")
    print(f"search alone: {percentiles(alone)}")
    print(f"search during the fold ({len(during)}): {percentiles(during)}, "
          f"max {max(during, default=float('nan')):.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
