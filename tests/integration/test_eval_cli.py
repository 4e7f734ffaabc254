"""`recomatrix eval`: a small synthetic run end to end, and a bad interactions file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recomatrix.cli import app

runner = CliRunner()
SYSTEMS = ("recomatrix", "recomatrix-frozen", "most-popular", "recent-popular", "item-knn", "als")


def test_eval_on_a_small_synthetic_world_writes_the_json_report(tmp_path: Path) -> None:
    output = tmp_path / "eval.json"
    result = runner.invoke(
        app,
        ["eval", "--dataset", "synthetic", "--items-count", "300", "--users-count", "60",
         "--events-count", "4000", "--encoder", "hashing", "--home", str(tmp_path / "home"),
         "--cold-start", "--output", str(output)],
        env={},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["dataset"] == "synthetic"
    assert report["protocol"]["test_events"] == 800
    assert report["protocol"]["targets"] > 0
    for name in SYSTEMS:
        scores = report["systems"][name]
        assert set(scores) >= {"hr@10", "ndcg@10", "mrr", "coverage"}
        assert 0.0 <= scores["ndcg@10"] <= scores["hr@10"] <= 1.0
    assert set(report["cold_start"]) >= {"recomatrix", "random", "most-popular"}
    assert report["seconds"] > 0
    assert "recomatrix" in result.output and "NDCG@10" in result.output


def test_eval_names_the_missing_column_of_an_interactions_file(tmp_path: Path) -> None:
    log = tmp_path / "log.tsv"
    log.write_text("1\t2\n", encoding="utf-8")
    result = runner.invoke(
        app, ["eval", "--interactions", str(log), "--no-header", "--columns", "user_id,item_id"],
        env={},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "missing column 'timestamp'" in result.output
