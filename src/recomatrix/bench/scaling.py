"""Latency against catalogue size: end to end and HNSW retrieval vs exact search, and the plot."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recomatrix.bench.common import percentiles
from recomatrix.bench.peers import timed
from recomatrix.bench.request_path import request_mix
from recomatrix.bench.scale_engine import build_scale_engine
from recomatrix.config import Settings
from recomatrix.data.scale import ScaleWorld, generate_scale_world
from recomatrix.engine import Engine


def point(engine: Engine, world: ScaleWorld, *, requests: int) -> dict[str, Any]:
    """One point of the curve: e2e p50/p99, HNSW top-100 and exact top-100 p50 (ms)."""
    users = [world.user_id(u) for u in range(min(world.n_users, 50_000))]
    items = [world.item_id(i) for i in range(0, world.n_items, max(1, world.n_items // 10_000))]
    mix = request_mix(engine, users=users, items=items, n=requests, warmup=50)
    queries = world.user_vectors[: min(300, world.n_users)].astype(np.float32)
    vectors = world.item_vectors.astype(np.float32)  # exact search in full precision
    # One loop each: an exact scan between two searches would evict the graph from the CPU
    # caches (at 1M it reads 256 MB), and time the scan's leftovers as the index's cost.
    hnsw, _ = timed(lambda q: engine.index.search(q, 100).keys[0], queries)
    exact, _ = timed(lambda q: np.argpartition(-(vectors @ q), 99)[:100], queries)
    return {
        "items": world.n_items,
        "e2e_p50_ms": mix["total"]["p50"],
        "e2e_p99_ms": mix["total"]["p99"],
        "hnsw_p50_ms": percentiles(hnsw)["p50"],
        "exact_p50_ms": percentiles(exact)["p50"],
    }


def curve(
    sizes: list[int], *, main: tuple[Engine, ScaleWorld] | None, settings: Settings,
    requests: int, log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:  # fmt: skip
    """A point per size; the size of `main` reuses that engine, others build a small one."""
    out = []
    for size in sorted(sizes):
        if main is not None and main[1].n_items == size:
            out.append(point(main[0], main[1], requests=requests))
        else:
            world = generate_scale_world(n_items=size, n_users=min(size, 100_000))
            with tempfile.TemporaryDirectory() as home:
                built = build_scale_engine(
                    world, settings, home=Path(home), n_live_events=20_000, active_users=5_000
                )
                try:
                    out.append(point(built.engine, world, requests=requests))
                finally:
                    built.engine.close()
        log(f"scaling {size}: {out[-1]}")
    return out


def plot(points: list[dict[str, Any]], path: Path) -> None:
    """Log-log plot of latency vs items: HNSW stays nearly flat, exact grows linearly."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [p["items"] for p in points]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    series = (
        ("e2e_p50_ms", "end to end p50 (two-stage)"),
        ("hnsw_p50_ms", "HNSW top-100 p50"),
        ("exact_p50_ms", "exact top-100 p50"),
    )
    for key, label in series:
        ax.plot(sizes, [p[key] for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items in the catalogue")
    ax.set_ylabel("milliseconds")
    ax.set_title("recomatrix latency vs catalogue size (2 cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
