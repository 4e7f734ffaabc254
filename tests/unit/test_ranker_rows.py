"""Ranker rows from a log without impressions: sampled negatives carry their own features."""

from __future__ import annotations

import numpy as np

from recomatrix.events import MemoryEventBus
from recomatrix.features import MemoryOnlineStore
from recomatrix.ranking.features import FEATURE_NAMES
from recomatrix.retrieval import Catalogue
from recomatrix.stream import StreamProcessor
from recomatrix.training.ranker_data import replay_with_rows
from recomatrix.types import Event, Item


def test_each_negative_row_is_built_from_the_negative_item() -> None:
    catalogue = Catalogue(ndim=2)
    items = [Item("a", "A", created_at=9_999.0), Item("b", "B", created_at=0.0)]
    catalogue.put(items, np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    store = MemoryOnlineStore()
    processor = StreamProcessor(bus=MemoryEventBus(), store=store, item_vector=catalogue.vector)
    events = [Event(f"e{i}", "u", "a", "like", 10_000.0 + i) for i in range(20)]
    rows = replay_with_rows(
        events, processor=processor, store=store, catalogue=catalogue,
        user_vector=lambda vectors: vectors.mean(axis=0), half_life_s=600.0,
        session_weight=1.0, sample_rate=1.0, negatives=3,
    )  # fmt: skip
    age = rows.X[:, FEATURE_NAMES.index("item_log_age_hours")]
    cos = rows.X[:, FEATURE_NAMES.index("cos_long_term")]
    negatives = rows.y[:, 0] == 0
    drew_b = negatives & (age > 0.5)  # b is hours old at every event, a only seconds
    assert drew_b.any()
    # Once the user has liked `a`, a row about `b` must show b's (orthogonal) similarity.
    later = np.arange(len(cos)) >= 4
    assert np.allclose(cos[drew_b & later], 0.0, atol=1e-5)
    assert np.allclose(cos[~negatives & later], 1.0, atol=1e-5)
