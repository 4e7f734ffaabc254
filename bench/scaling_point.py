"""More points of the scaling curve, beyond what one `recomatrix bench` process holds.

    python bench/scaling_point.py --sizes 5000000 --merge bench/results/bench-1000000.json \
        --plot docs/img/scaling.png [--output bench/results/scaling-5000000.json]

Each size gets its own scale world and engine (users capped at 100,000, as the suite's
smaller points), then e2e p50/p99 and HNSW vs exact top-100, as in `recomatrix bench`.
With `--merge`, the points are drawn together with that report's `scaling` points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recomatrix.bench.common import machine, rss_mb, versions
from recomatrix.bench.scaling import curve, plot
from recomatrix.config import load_settings

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="5000000", help="comma-separated item counts")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--merge", type=Path, help="a `recomatrix bench` report to plot with")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    sizes = [int(s) for s in args.sizes.split(",")]
    settings = load_settings()
    points = curve(sizes, main=None, settings=settings, requests=args.requests)
    report = {
        "machine": machine(), "versions": versions("numpy", "hnswlib", "usearch", "onnxruntime"),
        "main_index": settings.retrieval.main_index, "scaling": points, "rss_mb_at_end": rss_mb(),
    }  # fmt: skip
    output = args.output or HERE / "results" / f"scaling-{'-'.join(map(str, sizes))}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    if args.plot is not None:
        merged = json.loads(args.merge.read_text())["scaling"] if args.merge else []
        by_size = {p["items"]: p for p in [*merged, *points]}
        plot([by_size[s] for s in sorted(by_size)], args.plot)


if __name__ == "__main__":
    main()
