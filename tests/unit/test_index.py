"""Vector indexes: HNSW, exact, and the tiered main + delta pair."""

from __future__ import annotations

import numpy as np

from recomatrix.retrieval import Catalogue, ExactIndex, HnswIndex, TieredIndex
from recomatrix.types import Item

rng = np.random.default_rng(0)


def vectors(n: int, d: int = 16) -> np.ndarray:
    return rng.normal(size=(n, d)).astype(np.float32)


def test_hnsw_recall_against_exact_search_is_high() -> None:
    data = vectors(3000)
    hnsw, exact = HnswIndex(ndim=16), ExactIndex(ndim=16)
    keys = np.arange(3000)
    hnsw.add(keys, data)
    exact.add(keys, data)
    queries = vectors(50)
    got, want = hnsw.search(queries, 20), exact.search(queries, 20)
    overlap = np.mean([len(set(got.keys[q]) & set(want.keys[q])) / 20 for q in range(50)])
    assert overlap >= 0.9


def test_new_item_in_the_delta_is_found_by_the_next_search() -> None:
    main = HnswIndex(ndim=16)
    main.add(np.arange(500), vectors(500))
    tiered = TieredIndex(main=main, compact_at=10_000)
    new = vectors(1)
    tiered.add(np.array([9999]), new)
    assert tiered.search(new, 5).row(0)[0][0] == 9999


def test_removed_item_is_never_returned_after_compaction() -> None:
    main = HnswIndex(ndim=16)
    main.add(np.arange(100), vectors(100))
    tiered = TieredIndex(main=main, compact_at=10_000)
    new = vectors(3)
    tiered.add(np.array([200, 201, 202]), new)
    tiered.remove(np.array([201, 5]))
    assert tiered.compact() == 2
    found = {k for k, _ in tiered.search(new, 50).row(1)}
    assert 201 not in found and 5 not in found
    assert tiered.search(new[0], 1).row(0)[0][0] == 200


def test_replaced_item_is_found_under_its_new_vector_only() -> None:
    data = vectors(200)
    main = HnswIndex(ndim=16)
    main.add(np.arange(200), data)
    tiered = TieredIndex(main=main)
    tiered.add(np.array([7]), data[8:9])
    hits = [k for k, _ in tiered.search(data[7], 200).row(0)]
    assert hits.count(7) == 1
    assert tiered.search(data[8], 2).row(0)[0][1] > 0.99


def test_exact_pool_keeps_only_the_newest() -> None:
    pool = ExactIndex(ndim=16, capacity=3)
    pool.add(np.arange(5), vectors(5))
    assert list(pool.newest(10)) == [4, 3, 2]


def test_catalogue_keys_are_never_reused_after_delete() -> None:
    catalogue = Catalogue(ndim=16, capacity=2)
    keys = catalogue.put([Item("a", "A"), Item("b", "B"), Item("c", "C")], vectors(3))
    assert catalogue.delete("b") == keys[1]
    assert catalogue.item_id(int(keys[1])) is None
    (new_key,) = catalogue.put([Item("b", "B again")], vectors(1))
    assert new_key not in keys
    assert catalogue.vectors(["a", "zzz"])[1].sum() == 0.0


def test_exact_index_keeps_one_entry_per_key_when_a_batch_repeats_it() -> None:

    index = ExactIndex(ndim=2)
    index.add(np.array([7, 8, 7]), np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32))
    assert len(index) == 2
    found = index.search(np.array([0.0, 1.0], np.float32), 5)
    assert sorted(found.keys[0, : found.counts[0]].tolist()) == [7, 8]
    assert found.similarity[0, 0] > 0.99 and found.similarity[0, 1] > 0.99  # 7 got [0, 1]
