"""The in-process online store's cached trending top k stays equal to a fresh ranking."""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from recomatrix.features import MemoryOnlineStore

# Few items and few distinct scores, so ties and items entering and leaving the top are common.
rescores = st.dictionaries(st.sampled_from("abcdefgh"), st.sampled_from([0.0, 1.0, 2.0, 3.0]))
steps = st.lists(st.tuples(rescores, st.integers(1, 6)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_cached_top_trending_equals_a_fresh_ranking_after_any_rescores(
    script: list[tuple[dict[str, float], int]],
) -> None:
    store = MemoryOnlineStore()
    table: dict[str, float] = {}  # the brute-force trending table
    for scores, k in script:
        store.set_trending(scores)
        for item_id, score in scores.items():
            if score > 0:
                table[item_id] = score
            else:
                table.pop(item_id, None)
        want = heapq.nlargest(k, table.items(), key=lambda kv: kv[1])
        assert store.top_trending(k) == want
