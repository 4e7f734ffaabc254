"""The benchmark suite behind `recomatrix bench`: scale world, request path, retrieval peers,
naive monolith, HTTP load, freshness and memory, written as JSON (docs/benchmarks.md)."""
