"""Ranker rows from a log without impressions: sampled negatives carry their own features."""

from __future__ import annotations

import numpy as np
import pytest

from recomatrix.config import load_settings
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


def test_hard_negatives_come_from_the_neighbours_and_skip_the_users_history() -> None:
    catalogue = Catalogue(ndim=2)
    ids = ["liked", "near1", "near2", "far"] + [f"x{i}" for i in range(40)]
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2]] + [[0.0, 1.0]] * 41, np.float32)
    catalogue.put([Item(i, i.upper()) for i in ids], vectors)
    store = MemoryOnlineStore()
    processor = StreamProcessor(bus=MemoryEventBus(), store=store, item_vector=catalogue.vector)
    asked: list[int] = []

    def neighbours(query: np.ndarray, k: int) -> list[str]:
        asked.append(k)
        return ["liked", "near1", "near2"]  # nearest first, the user's own item included

    events = [Event(f"e{i}", "u", "liked", "like", 10_000.0 + i) for i in range(30)]
    rows = replay_with_rows(
        events, processor=processor, store=store, catalogue=catalogue,
        user_vector=lambda v: v.mean(axis=0), half_life_s=600.0, session_weight=1.0,
        sample_rate=1.0, negatives=4, neighbours=neighbours, seed=1,
    )  # fmt: skip
    assert asked, "the neighbours were never asked"
    cos = rows.X[:, FEATURE_NAMES.index("cos_long_term")]
    negatives = rows.y[:, 0] == 0
    # After the first like every row has 2 hard negatives (near1, near2: cos > 0.9) and 2
    # uniform ones; the liked item itself is never a negative.
    hard = negatives & (cos > 0.95) & (cos < 0.9999)
    assert hard.sum() >= 2 * 25
    assert not (negatives & (cos > 0.9999)).any()


def test_sampled_rows_ignore_the_logs_impressions_and_impression_rows_use_them() -> None:
    catalogue = Catalogue(ndim=2)
    catalogue.put([Item(i, i.upper()) for i in "abcdef"], np.eye(2, dtype=np.float32)[[0, 1] * 3])
    events = []
    for u in range(20):
        ts = 10_000.0 + 10 * u
        events += [Event(f"i{u}{x}", f"u{u}", x, "impression", ts) for x in "abc"]
        events.append(Event(f"c{u}", f"u{u}", "a", "click", ts + 1))
    kinds = {}
    for use_impressions in (True, False):
        store = MemoryOnlineStore()
        processor = StreamProcessor(bus=MemoryEventBus(), store=store, item_vector=catalogue.vector)
        kinds[use_impressions] = replay_with_rows(
            events, processor=processor, store=store, catalogue=catalogue,
            user_vector=lambda v: v.mean(axis=0), half_life_s=600.0, session_weight=1.0,
            sample_rate=1.0, negatives=3, use_impressions=use_impressions,
        )  # fmt: skip
    # Impression rows: one per impression, engaged when the click on `a` followed.
    assert len(kinds[True]) == 60 and kinds[True].y[:, 0].sum() == 20
    # Sampled rows: one per click plus up to 3 sampled negatives; impressions make none.
    assert 20 < len(kinds[False]) <= 80 and kinds[False].y[:, 0].sum() == 20


def test_an_unknown_row_kind_is_a_setting_error() -> None:
    with pytest.raises(ValueError, match=r"training\.ranker_rows"):
        load_settings(env={"RECOMATRIX_TRAINING__RANKER_ROWS": "clicks"})
