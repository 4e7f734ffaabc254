"""`recomatrix bench` at a tiny scale: every stage runs and the JSON has the documented shape
(the figures themselves are for docs/benchmarks.md, measured on a quiet machine)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recomatrix.cli import app


def test_tiny_bench_writes_every_section(tmp_path: Path) -> None:
    output, plot = tmp_path / "bench.json", tmp_path / "scaling.png"
    result = CliRunner().invoke(
        app,
        ["bench", "--items", "3000", "--users", "1000", "--requests", "100",
         "--http-requests", "40", "--concurrency", "1,2", "--probes", "3",
         "--scaling", "1000,3000", "--output", str(output), "--plot", str(plot)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(output.read_text())
    assert report["items"] == 3000 and report["users"] == 1000
    assert {"cpu", "cores"} <= set(report["machine"])
    assert set(report["e2e_ms"]) == {"p50", "p99", "p999"}
    assert set(report["stages_ms"]) == {"features", "retrieval", "enrich", "ranking", "rules"}
    assert report["e2e_ms"]["p50"] <= report["e2e_ms"]["p99"] <= report["e2e_ms"]["p999"]
    assert report["monolith_ms"]["p50"] > 0
    assert [r["concurrency"] for r in report["http"]] == [1, 2]
    assert all(r["errors"] == 0 and r["requests"] == 40 for r in report["http"])
    fresh = report["freshness_ms"]
    assert {"item_p50", "item_p99", "event_p50", "event_p99"} <= set(fresh)
    assert fresh["item_p99"] < 5000 and fresh["event_p99"] < 5000  # found before the timeout
    for name in ("usearch-f32", "usearch-i8", "hnswlib", "faiss-hnsw"):
        assert report["retrieval"][name]["recall@100"] >= 0.95, name
    assert set(report["retrieval"]["exact"]) >= {"p50_ms", "p99_ms"}
    assert [p["items"] for p in report["scaling"]] == [1000, 3000]
    assert report["rss_mb"] > 0 and report["build_s"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_names_a_bad_option() -> None:
    result = CliRunner().invoke(app, ["bench", "--peers", "annoy"])
    assert result.exit_code == 2
    assert "annoy" in result.output and "--peers" in result.output
