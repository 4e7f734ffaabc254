"""The offline log: applied events and served impressions (with their feature rows) land in
Parquet through the same path that updates the online store."""

from __future__ import annotations

import time
import uuid

from recomatrix.engine import Engine
from recomatrix.features.offline import read_events, read_impressions
from recomatrix.ranking.features import FEATURE_NAMES
from recomatrix.types import Event


def test_applied_events_and_served_impressions_are_in_parquet(engine: Engine) -> None:
    assert engine.offline is not None
    user = f"offline-{uuid.uuid4().hex[:6]}"
    item = engine.catalogue.items()[0].item_id
    event_ids = [f"{user}-{i}" for i in range(3)]
    engine.ingest([Event(e, user, item, "click", time.time()) for e in event_ids])
    assert engine.wait_idle(timeout_s=5)
    served = engine.recommend(user, n=10)
    engine.offline.flush()

    events = read_events(engine.offline.root).to_pylist()
    logged = {row["event_id"] for row in events if row["user_id"] == user}
    assert logged == set(event_ids)

    impressions = [
        r for r in read_impressions(engine.offline.root).to_pylist() if r["user_id"] == user
    ]
    assert [r["item_id"] for r in sorted(impressions, key=lambda r: r["position"])] == [
        c.item_id for c in served.items
    ]
    assert all(len(r["features"]) == len(FEATURE_NAMES) for r in impressions)
    assert {r["model_version"] for r in impressions} == {served.model_version}


def test_python_api_is_importable_from_the_package_root() -> None:
    import recomatrix

    assert recomatrix.Engine is Engine
    assert callable(recomatrix.build_engine)
