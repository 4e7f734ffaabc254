"""The scale engine's request path alone, per stage: for a same-machine A/B of two commits.

    python bench/scale_request_path.py [--items 100000] [--requests 2000] [--index-cache DIR]
    RECOMATRIX_RETRIEVAL__MAIN_INDEX=usearch python bench/scale_request_path.py ...  # settings
    PYTHONPATH=<other checkout>/src python bench/scale_request_path.py ...   # the other commit

Builds the scale world and engine (`recomatrix.bench.scale_engine`) at `--items` items and
users, freezes the start-up heap as serving does, and prints p50/p99 per stage over the
same request mix as `recomatrix bench`.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
from pathlib import Path

import recomatrix
from recomatrix.bench.request_path import request_mix
from recomatrix.bench.scale_engine import build_scale_engine
from recomatrix.config import load_settings
from recomatrix.data.scale import generate_scale_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--index-cache", type=Path, default=None, help="reuse a built index")
    args = parser.parse_args()
    print(f"recomatrix from {Path(recomatrix.__file__).parent}")
    world = generate_scale_world(n_items=args.items, n_users=args.items)
    with tempfile.TemporaryDirectory() as home:
        engine = build_scale_engine(
            world, load_settings(env=os.environ), home=Path(home), index_cache=args.index_cache
        ).engine
        # What `recomatrix serve` and `recomatrix bench` do once the engine is built (done here
        # with the standard library, so any other checkout under PYTHONPATH gets the same).
        gc.collect()
        gc.freeze()
        step = max(1, args.items // 50_000)
        users = [world.user_id(u) for u in range(0, world.n_users, step)]
        items = [world.item_id(i) for i in range(0, world.n_items, step)]
        mix = request_mix(engine, users=users, items=items, n=args.requests, seed=7)
        for stage, values in mix.items():
            print(f"{stage:10s} p50 {values['p50']:.3f} p99 {values['p99']:.3f} ms")
        engine.close()


if __name__ == "__main__":
    main()
