"""The same world and settings build the same models and answer the same recommendations."""

from __future__ import annotations

from pathlib import Path

from recomatrix.bootstrap import build_engine
from recomatrix.config import load_settings
from recomatrix.data import generate_world


def test_two_builds_of_one_world_recommend_the_same_items(tmp_path: Path) -> None:
    world = generate_world(n_items=600, n_users=120, n_events=6_000, end_ts=1_700_000_000.0)
    answers, metrics = [], []
    for run in ("a", "b"):
        settings = load_settings(overrides={"data": {"encoder": "hashing", "home": tmp_path / run}})
        engine, report = build_engine(world, settings)
        engine.close()
        now = world.events[-1].ts
        answers.append(
            [
                [(c.item_id, round(c.score, 6)) for c in engine.recommend(u, n=10, now=now).items]
                for u in world.users[:20]
            ]
        )
        metrics.append({k: v for k, v in report.metrics.items() if not k.endswith("seconds")})
    assert metrics[0] == metrics[1]
    assert answers[0] == answers[1]
