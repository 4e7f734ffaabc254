"""`--dataset movielens`: the vendored ml-latest-small builds a working engine."""

from __future__ import annotations

from pathlib import Path

from recomatrix.bootstrap import build_engine
from recomatrix.config import load_settings
from recomatrix.data import load_movielens


def test_movielens_world_trains_and_serves_personalised_recommendations(tmp_path: Path) -> None:
    world = load_movielens()
    settings = load_settings(
        env={},
        overrides={"data": {"encoder": "hashing", "home": tmp_path},
                   "training": {"two_tower_epochs": 1, "ranker_epochs": 1,
                                "ranker_sample_rate": 0.1}},
    )  # fmt: skip
    engine, report = build_engine(world, settings)
    try:
        # Ratings only, no impressions: rows come from interactions plus sampled negatives.
        assert report.ranker_rows > 10_000
        assert report.metrics["val_auc_click"] > 0.6
        user = world.events[-1].user_id
        recs = engine.recommend(user, n=20)
        assert recs.personalised
        assert len({c.item_id for c in recs.items}) == 20
        state = engine.store.get_users([user])[0]
        assert state is not None
        completed = {e.item_id for e in world.events if e.user_id == user and e.type == "complete"}
        assert set(state.watched) == completed
    finally:
        engine.close()
