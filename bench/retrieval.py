"""ANN retrieval side by side: usearch (f32, i8), hnswlib, faiss HNSW and exact numpy search,
on the same vectors and queries, in one run.

    python bench/retrieval.py [--items 1000000 --dim 64 --k 100 --queries 1000]

Vectors are clustered (a mixture of 200 Gaussian "genres" with power-law weights), closer
to real item embeddings than uniform noise. Each library's search expansion (ef) is raised
until recall@k against exact search reaches the target (0.95), then latency is measured
one query at a time, as the request path searches. Writes bench/results/retrieval-<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime  # noqa: F401  (must load before usearch: docs/adr/0002-import-order.md)

HERE = Path(__file__).parent
Search = Callable[[np.ndarray], np.ndarray]  # one query (d,) -> k keys


def clustered_vectors(n: int, dim: int, seed: int, *, intrinsic: int = 16) -> np.ndarray:
    """Unit vectors from 200 power-law-weighted clusters in an `intrinsic`-dim latent space,
    projected to `dim` with a little isotropic noise: learned embeddings are like this,
    not uniform noise (which no ANN index searches well)."""
    rng = np.random.default_rng(seed)
    projection = np.random.default_rng(0).normal(size=(intrinsic, dim)).astype(np.float32)
    centres = np.random.default_rng(1).normal(size=(200, intrinsic)).astype(np.float32)
    weights = 1.0 / np.arange(1, 201) ** 0.8
    cluster = rng.choice(200, size=n, p=weights / weights.sum())
    latent = centres[cluster] + 0.5 * rng.normal(size=(n, intrinsic)).astype(np.float32)
    vectors = latent @ projection + 0.1 * rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        sims = queries[start : start + 64] @ vectors.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out[start : start + 64] = top
    return out


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(
        np.mean(
            [len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]
        )
    )


def latency(search: Search, queries: np.ndarray) -> tuple[dict[str, float], list[np.ndarray]]:
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 4),
            "p99_ms": round(float(np.percentile(times, 99)), 4)}, found  # fmt: skip


def rss_mb() -> float:
    """Resident memory of this process now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def at_matched_recall(
    make_search: Callable[[int], Search], queries: np.ndarray, truth: np.ndarray, target: float
) -> dict[str, Any]:
    """Raise ef until recall@k >= target (on a probe set), then time the full query set."""
    probe = slice(0, min(200, len(queries)))
    for ef in (K, 128, 192, 256, 384, 512, 768, 1024):  # ef below k makes no sense
        search = make_search(ef)
        _, found = latency(search, queries[probe])
        if recall(found, truth[probe]) >= target:
            break
    stats, found = latency(search, queries)
    return {**stats, "recall@k": round(recall(found, truth), 4), "ef": ef}


def bench_usearch(
    vectors: np.ndarray, dtype: str, threads: int
) -> tuple[float, Callable[[int], Search]]:
    from usearch.index import Index

    index = Index(
        ndim=vectors.shape[1], metric="cos", dtype=dtype, connectivity=16, expansion_add=128
    )
    started = time.perf_counter()
    index.add(np.arange(len(vectors)), vectors, threads=threads)
    build = time.perf_counter() - started

    def make(ef: int) -> Search:
        index.expansion_search = ef
        return lambda q: index.search(q, K, threads=1).keys

    return build, make


def bench_hnswlib(vectors: np.ndarray, threads: int) -> tuple[float, Callable[[int], Search]]:
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=16, ef_construction=128)
    index.set_num_threads(threads)
    started = time.perf_counter()
    index.add_items(vectors, np.arange(len(vectors)))
    build = time.perf_counter() - started
    index.set_num_threads(1)

    def make(ef: int) -> Search:
        index.set_ef(max(ef, K))
        return lambda q: index.knn_query(q, k=K)[0][0]

    return build, make


def bench_faiss(vectors: np.ndarray, threads: int) -> tuple[float, Callable[[int], Search]]:
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(vectors.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    started = time.perf_counter()
    index.add(vectors)
    build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)

    def make(ef: int) -> Search:
        index.hnsw.efSearch = max(ef, K)
        return lambda q: index.search(q[None, :], K)[1][0]

    return build, make


K = 100


def main() -> None:
    global K
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=2, help="threads for index builds")
    parser.add_argument("--only", default="usearch-f32,usearch-i8,hnswlib,faiss-hnsw,exact")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    K = args.k

    started = time.perf_counter()
    vectors = clustered_vectors(args.items, args.dim, seed=1)
    queries = clustered_vectors(args.queries, args.dim, seed=2)
    truth = exact_top_k(vectors, queries, K)
    print(f"data + exact ground truth: {time.perf_counter() - started:.1f} s")

    results: dict[str, Any] = {}
    builders = {
        "usearch-f32": lambda: bench_usearch(vectors, "f32", args.threads),
        "usearch-i8": lambda: bench_usearch(vectors, "i8", args.threads),
        "hnswlib": lambda: bench_hnswlib(vectors, args.threads),
        "faiss-hnsw": lambda: bench_faiss(vectors, args.threads),
    }
    for name in args.only.split(","):
        if name == "exact":
            stats, found = latency(
                lambda q: np.argpartition(-(vectors @ q), K - 1)[:K], queries[:100]
            )
            results["exact"] = {**stats, "recall@k": round(recall(found, truth[:100]), 4)}
        else:
            rss_before = rss_mb()
            build_s, make = builders[name]()
            rss_growth = rss_mb() - rss_before
            results[name] = {
                **at_matched_recall(make, queries, truth, args.target_recall),
                "build_s": round(build_s, 1),
                "rss_growth_mb": round(rss_growth, 1),
            }
            del make  # free this index before building the next one
        print(name, results[name], flush=True)

    exact_p50 = results.get("exact", {}).get("p50_ms")
    for name, row in results.items():
        if exact_p50 and name != "exact":
            row["speedup_vs_exact"] = round(exact_p50 / row["p50_ms"], 1)
    versions = {}
    for module in ("usearch", "hnswlib", "faiss", "numpy"):
        try:
            versions[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            versions[module] = "n/a"
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "versions": versions,
        "items": args.items, "dim": args.dim, "k": K, "queries": args.queries,
        "target_recall": args.target_recall, "retrieval": results,
    }  # fmt: skip
    output = args.output or HERE / "results" / f"retrieval-{args.items}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
