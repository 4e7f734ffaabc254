"""`recomatrix bench`: the whole suite at one scale, written as one JSON document.

    world -> engine (RSS, build) -> saved index (size, mmap start) -> request path
          -> monolith -> HTTP levels -> freshness under load -> scaling curve -> ANN peers

Peers come last: each builds its own index of the same vectors, which would otherwise
count in the engine's memory figure.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recomatrix.bench import peers
from recomatrix.bench.common import machine, release_free_memory, rss_mb, versions
from recomatrix.bench.http_stage import freshness_under_load, load_levels, p99_crossing, serving
from recomatrix.bench.request_path import STAGES, monolith_ms, request_mix
from recomatrix.bench.scale_engine import build_scale_engine
from recomatrix.bench.scaling import curve, plot
from recomatrix.config import RetrievalSettings, load_settings
from recomatrix.data.scale import generate_scale_world
from recomatrix.heap import freeze_startup_heap
from recomatrix.retrieval.main_index import FILE_SUFFIX

LIBRARIES = ("numpy", "usearch", "onnxruntime", "hnswlib", "faiss", "fastapi", "uvicorn")

# Time to start a process, open the saved index (a usearch file memory-mapped, as the Redis
# tier's API processes do; an hnswlib file read into memory) and answer one query.
_OPEN_PROBE = """
import sys, time
started = time.perf_counter()
import numpy as np
from recomatrix.retrieval import main_index
kind, path, ndim = sys.argv[1], sys.argv[2], int(sys.argv[3])
index = main_index(kind, ndim=ndim, path=path, **({"view": True} if kind == "usearch" else {}))
index.search(np.ones(ndim, dtype=np.float32), 100)
print(time.perf_counter() - started)
"""


@dataclass(frozen=True, slots=True)
class SuiteOptions:
    items: int = 1_000_000
    users: int = 1_000_000
    requests: int = 10_000  # in-process request path
    monolith_requests: int = 3
    http_requests: int = 2_000  # per concurrency level
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    freshness_probes: int = 50
    scaling: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    peers: tuple[str, ...] = (*peers.BUILDERS, "exact")
    peer_queries: int = 1_000
    plot: Path | None = None
    index_cache: Path | None = None  # reuse the main index of the same world between runs
    seed: int = 11
    extra: dict[str, Any] = field(default_factory=dict)


def run_suite(options: SuiteOptions, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage at `options.items` x `options.users`; returns the report."""
    report: dict[str, Any] = {
        "machine": machine(),
        "versions": versions(*LIBRARIES),
        "items": options.items,
        "users": options.users,
    }
    settings = load_settings(env=os.environ)  # RECOMATRIX_RETRIEVAL__MAIN_INDEX=usearch ...
    report["main_index"] = settings.retrieval.main_index
    started = time.perf_counter()
    world = generate_scale_world(n_items=options.items, n_users=options.users, seed=options.seed)
    report["world_s"] = round(time.perf_counter() - started, 2)
    log(f"world: {options.items:,} items, {options.users:,} users in {report['world_s']} s")
    with tempfile.TemporaryDirectory(prefix="recomatrix-bench-") as tmp:
        home = Path(tmp)
        built = build_scale_engine(world, settings, home=home, index_cache=options.index_cache)
        engine = built.engine
        # The catalogue holds the item vectors now (keys are world rows): drop the world's
        # copy, so the memory figure is the engine's, not the generator's.
        world = dataclasses.replace(world, item_vectors=engine.catalogue.matrix())
        freeze_startup_heap()  # what `recomatrix serve` does once the engine is built
        release_free_memory()
        report["build_s"] = built.seconds["total"]
        report["build_steps_s"] = built.seconds
        report["rss_mb"] = round(rss_mb(), 1)
        log(f"engine built in {report['build_s']} s, RSS {report['rss_mb']} MiB")
        report["saved_index"] = _saved_index(engine, home, settings.retrieval)
        log(f"saved index: {report['saved_index']}")

        users = [world.user_id(u) for u in range(0, world.n_users, max(1, world.n_users // 50_000))]
        items = [world.item_id(i) for i in range(0, world.n_items, max(1, world.n_items // 50_000))]
        mix = request_mix(engine, users=users, items=items, n=options.requests, seed=options.seed)
        report["e2e_ms"] = {k: mix["total"][k] for k in ("p50", "p99", "p999")}
        report["stages_ms"] = {s: {k: mix[s][k] for k in ("p50", "p99", "p999")} for s in STAGES}
        log(f"request path ({options.requests} requests): {report['e2e_ms']}")

        mono = [monolith_ms(engine, users[i]) for i in range(options.monolith_requests)]
        report["monolith_ms"] = {"p50": round(float(np.median(mono)), 1), "runs": len(mono)}
        report["two_stage_speedup"] = round(report["monolith_ms"]["p50"] / mix["total"]["p50"], 1)
        log(f"monolith: {report['monolith_ms']} ({report['two_stage_speedup']}x the two-stage)")

        with serving(engine) as url:
            report["http"] = load_levels(
                url, users=world.n_users, levels=options.concurrency, requests=options.http_requests
            )
            report["http_p99_over_50ms"] = p99_crossing(report["http"])
            log(f"http: {report['http']}")
            report["freshness_ms"] = freshness_under_load(
                url, users=users[:200], n_users=world.n_users, probes=options.freshness_probes
            )
            log(f"freshness under load: {report['freshness_ms']}")

        sizes = [s for s in options.scaling if s <= options.items]
        report["scaling"] = curve(
            sizes, main=(engine, world), settings=settings, requests=500, log=log
        )
        if options.plot is not None and len(sizes) > 1:
            plot(report["scaling"], options.plot)
        engine.close()
        del built, engine

    queries = world.user_vectors[: options.peer_queries].astype(np.float32)
    report["retrieval"] = peers.compare(
        world.item_vectors.astype(np.float32), queries, only=options.peers, memory=rss_mb, log=log
    )
    report["seconds"] = round(time.perf_counter() - started, 1)
    report.update(options.extra)
    return report


def _saved_index(engine: Any, home: Path, retrieval: RetrievalSettings) -> dict[str, Any]:
    """Save the main index, then time a fresh process that opens it and answers."""
    kind = retrieval.main_index
    path = home / f"main{FILE_SUFFIX[kind]}"
    engine.index.main.save(path)
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_PROBE, kind, str(path), str(retrieval.dim)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {
        "kind": kind,
        "file_mb": round(path.stat().st_size / 1024**2, 1),
        ("ready_from_mmap_s" if kind == "usearch" else "ready_from_file_s"): round(
            float(done.stdout.strip().splitlines()[-1]), 3
        ),
    }


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(measure, value) pairs for the terminal table."""
    rows = [
        ("items x users", f"{report['items']:,} x {report['users']:,}"),
        ("main index", str(report.get("main_index", "usearch"))),
        ("build s / RSS MiB", f"{report['build_s']} / {report['rss_mb']}"),
        ("e2e p50 / p99 / p99.9 ms", "{p50} / {p99} / {p999}".format(**report["e2e_ms"])),
    ]
    rows += [
        (f"  {s} p50 / p99 ms", "{p50} / {p99}".format(**v)) for s, v in report["stages_ms"].items()
    ]
    rows.append(("monolith p50 ms", f"{report['monolith_ms']['p50']} "
                 f"({report['two_stage_speedup']}x slower)"))  # fmt: skip
    for row in report.get("http", []):
        latency = f"p50 {row['p50_ms']} / p99 {row['p99_ms']} ms"
        rows.append((f"http c={row['concurrency']}", f"{row['rps']} rps, {latency}"))
    fresh = report.get("freshness_ms", {})
    if fresh:
        rows.append(("fresh item p50/p99 ms", f"{fresh['item_p50']} / {fresh['item_p99']}"))
        rows.append(("event effect p50/p99 ms", f"{fresh['event_p50']} / {fresh['event_p99']}"))
    for name, r in report.get("retrieval", {}).items():
        recall = next((v for k, v in r.items() if k.startswith("recall@")), "-")
        rows.append((f"ann {name}", f"p50 {r['p50_ms']} ms, recall {recall}"))
    return rows


__all__ = ["SuiteOptions", "run_suite", "summary_rows"]
