"""ANN retrieval side by side: usearch (f32, i8), hnswlib, faiss HNSW and exact numpy search,
on the same vectors and queries, in one run (the retrieval part of `recomatrix bench`).

    python bench/retrieval.py [--items 1000000 --queries 1000 --only usearch-f32,exact]

Item vectors are the scale world's (clustered, power-law weighted: see
`recomatrix.data.scale`), queries are its users' long-term vectors. Each index's ef is
raised until recall@100 against exact search reaches the target, then latency is measured
one query at a time. Writes bench/results/retrieval-<N>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from recomatrix.bench import peers
from recomatrix.bench.common import machine, rss_mb, versions
from recomatrix.data.scale import generate_scale_world

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=2, help="threads for index builds")
    parser.add_argument("--only", default=",".join([*peers.BUILDERS, "exact"]))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    world = generate_scale_world(n_items=args.items, n_users=args.queries)
    queries = world.user_vectors.astype(np.float32)
    results = peers.compare(
        world.item_vectors, queries, target_recall=args.target_recall, threads=args.threads,
        only=tuple(args.only.split(",")), memory=rss_mb,
    )  # fmt: skip
    report = {
        "machine": machine(),
        "versions": versions("usearch", "hnswlib", "faiss", "numpy"),
        "items": args.items, "dim": world.dim, "k": 100, "queries": args.queries,
        "target_recall": args.target_recall, "retrieval": results,
    }  # fmt: skip
    output = args.output or HERE / "results" / f"retrieval-{args.items}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
