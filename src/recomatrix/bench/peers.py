"""ANN retrieval side by side on the same vectors and queries: usearch (f32, i8), hnswlib,
faiss HNSW and exact numpy search. Each index's search expansion (ef) is raised until
recall@k against exact search reaches the target, then latency is measured one query at a
time, as the request path searches. hnswlib and faiss come from the `bench` extra.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

Search = Callable[[np.ndarray], np.ndarray]  # one query (d,) -> k keys
Builder = Callable[[np.ndarray, int, int], tuple[float, Callable[[int], Search]]]
EFS = (128, 192, 256, 384, 512, 768, 1024)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ground truth: the k most similar rows of `vectors` for each query (inner product)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        sims = queries[start : start + 64] @ vectors.T
        out[start : start + 64] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return out


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = [len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def timed(search: Search, queries: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    """Per-query latency (ms) and answers, one query at a time."""
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - started) * 1000)
    return times, found


def at_matched_recall(
    make_search: Callable[[int], Search], queries: np.ndarray, truth: np.ndarray, target: float
) -> dict[str, Any]:
    """Raise ef until recall@k >= target on a probe set, then time the full query set."""
    k = truth.shape[1]
    probe = slice(0, min(200, len(queries)))
    for ef in (k, *(e for e in EFS if e > k)):  # ef below k makes no sense
        search = make_search(ef)
        _, found = timed(search, queries[probe])
        if recall(found, truth[probe]) >= target:
            break
    times, found = timed(search, queries)
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 4),
        "p99_ms": round(float(np.percentile(times, 99)), 4),
        f"recall@{k}": round(recall(found, truth), 4),
        "ef": ef,
    }


def usearch_builder(dtype: str) -> Builder:
    def build(vectors: np.ndarray, k: int, threads: int) -> tuple[float, Callable[[int], Search]]:
        from usearch.index import Index

        index = Index(
            ndim=vectors.shape[1], metric="cos", dtype=dtype, connectivity=16, expansion_add=128
        )
        started = time.perf_counter()
        index.add(np.arange(len(vectors)), vectors, threads=threads)
        build_s = time.perf_counter() - started

        def make(ef: int) -> Search:
            setattr(index, "expansion_search", ef)  # noqa: B010  (typed read-only, settable)
            return lambda q: index.search(q, k, threads=1).keys

        return build_s, make

    return build


def hnswlib_build(
    vectors: np.ndarray, k: int, threads: int
) -> tuple[float, Callable[[int], Search]]:
    import hnswlib  # type: ignore[import-untyped, import-not-found, unused-ignore]

    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=16, ef_construction=128)
    index.set_num_threads(threads)
    started = time.perf_counter()
    index.add_items(vectors, np.arange(len(vectors)))
    build_s = time.perf_counter() - started
    index.set_num_threads(1)

    def make(ef: int) -> Search:
        index.set_ef(max(ef, k))
        return lambda q: index.knn_query(q, k=k)[0][0]

    return build_s, make


def faiss_build(vectors: np.ndarray, k: int, threads: int) -> tuple[float, Callable[[int], Search]]:
    import faiss  # type: ignore[import-untyped, import-not-found, unused-ignore]

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(vectors.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    started = time.perf_counter()
    index.add(vectors)
    build_s = time.perf_counter() - started
    faiss.omp_set_num_threads(1)

    def make(ef: int) -> Search:
        index.hnsw.efSearch = max(ef, k)
        return lambda q: index.search(q[None, :], k)[1][0]

    return build_s, make


BUILDERS: dict[str, Builder] = {
    "usearch-f32": usearch_builder("f32"),
    "usearch-i8": usearch_builder("i8"),
    "hnswlib": hnswlib_build,
    "faiss-hnsw": faiss_build,
}


def compare(
    vectors: np.ndarray,
    queries: np.ndarray,
    *,
    k: int = 100,
    target_recall: float = 0.95,
    threads: int = 2,
    only: tuple[str, ...] = (*BUILDERS, "exact"),
    memory: Callable[[], float] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Every index in `only` on the same data; a peer whose library is missing is skipped."""
    truth = exact_top_k(vectors, queries, k)
    results: dict[str, dict[str, Any]] = {}
    for name in only:
        if name == "exact":
            brute: Search = lambda q: np.argpartition(-(vectors @ q), k - 1)[:k]  # noqa: E731
            times, found = timed(brute, queries[:100])
            results[name] = {
                "p50_ms": round(float(np.percentile(times, 50)), 4),
                "p99_ms": round(float(np.percentile(times, 99)), 4),
                f"recall@{k}": round(recall(found, truth[:100]), 4),
            }
        else:
            before = memory() if memory else 0.0
            try:
                build_s, make = BUILDERS[name](vectors, k, threads)
            except ImportError as err:
                log(f"{name}: skipped ({err}); install the `bench` extra")
                continue
            grown = (memory() - before) if memory else float("nan")
            results[name] = {
                **at_matched_recall(make, queries, truth, target_recall),
                "build_s": round(build_s, 1),
                "rss_growth_mb": round(grown, 1),
            }
            del make  # free this index before the next one is built
        log(f"{name}: {results[name]}")
    exact_p50 = results.get("exact", {}).get("p50_ms")
    for name, row in results.items():
        if exact_p50 and name != "exact":
            row["speedup_vs_exact"] = round(exact_p50 / row["p50_ms"], 1)
    return results
