"""Vector indexes: HNSW, exact, and the tiered main + delta pair."""

from __future__ import annotations

import doctest
import threading
from pathlib import Path

import numpy as np
import pytest

import recomatrix.retrieval.graph
from recomatrix.retrieval import (
    Catalogue,
    ExactIndex,
    GraphIndex,
    MainIndex,
    TieredIndex,
    main_index,
)
from recomatrix.types import Item

rng = np.random.default_rng(0)
KINDS = ["hnswlib", "usearch"]


def empty_main(kind: str, ndim: int = 16) -> MainIndex:
    return main_index(kind, ndim=ndim)


def vectors(n: int, d: int = 16) -> np.ndarray:
    return rng.normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_hnsw_recall_against_exact_search_is_high(kind: str) -> None:
    data = vectors(3000)
    hnsw, exact = empty_main(kind), ExactIndex(ndim=16)
    keys = np.arange(3000)
    hnsw.add(keys, data)
    exact.add(keys, data)
    queries = vectors(50)
    got, want = hnsw.search(queries, 20), exact.search(queries, 20)
    overlap = np.mean([len(set(got.keys[q]) & set(want.keys[q])) / 20 for q in range(50)])
    assert overlap >= 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_new_item_in_the_delta_is_found_by_the_next_search(kind: str) -> None:
    main = empty_main(kind)
    main.add(np.arange(500), vectors(500))
    tiered = TieredIndex(main=main, compact_at=10_000)
    new = vectors(1)
    tiered.add(np.array([9999]), new)
    assert tiered.search(new, 5).row(0)[0][0] == 9999


@pytest.mark.parametrize("kind", KINDS)
def test_removed_item_is_never_returned_after_compaction(kind: str) -> None:
    main = empty_main(kind)
    main.add(np.arange(100), vectors(100))
    tiered = TieredIndex(main=main, compact_at=10_000)
    new = vectors(3)
    tiered.add(np.array([200, 201, 202]), new)
    tiered.remove(np.array([201, 5]))
    assert tiered.compact() == 2
    found = {k for k, _ in tiered.search(new, 50).row(1)}
    assert 201 not in found and 5 not in found
    assert tiered.search(new[0], 1).row(0)[0][0] == 200


@pytest.mark.parametrize("kind", KINDS)
def test_replaced_item_is_found_under_its_new_vector_only(kind: str) -> None:
    data = vectors(200)
    main = empty_main(kind)
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


def test_graph_index_docstring_example_holds() -> None:
    result = doctest.testmod(recomatrix.retrieval.graph)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("kind", KINDS)
def test_main_index_removes_and_readds_a_key(kind: str) -> None:
    data = vectors(300)
    index = empty_main(kind)
    index.add(np.arange(300), data)
    index.remove(np.array([3, 3, 999]))  # a repeat and an unknown key are no error
    assert len(index) == 299
    assert 3 not in index.search(data[3], 300).keys[0].tolist()
    index.add(np.array([3]), data[4:5])  # back, under another vector
    assert len(index) == 300
    top = index.search(data[4], 2)
    assert set(top.keys[0, :2].tolist()) == {3, 4}


@pytest.mark.parametrize("kind", KINDS)
def test_main_index_asked_for_more_than_it_holds_returns_what_it_has(kind: str) -> None:
    index = empty_main(kind)
    assert index.search(vectors(1), 5).counts.tolist() == [0]
    index.add(np.arange(3), vectors(3))
    index.remove(np.array([1]))
    found = index.search(vectors(2), 10)
    assert found.counts.tolist() == [2, 2]
    assert sorted(found.keys[0, :2].tolist()) == [0, 2]
    assert found.keys[0, 2:].tolist() == [-1] * 8


def test_graph_index_saved_and_loaded_keeps_its_deletions(tmp_path: Path) -> None:
    data = vectors(400)
    index = GraphIndex(ndim=16)
    index.add(np.arange(400), data)
    index.remove(np.array([10, 11]))
    index.save(tmp_path / "main.hnswlib")
    loaded = main_index("hnswlib", ndim=16, path=tmp_path / "main.hnswlib")
    assert len(loaded) == 398
    assert loaded.search(data[12], 1).keys[0, 0] == 12
    assert 10 not in loaded.search(data[10], 50).keys[0].tolist()
    loaded.remove(np.array([10, 12]))  # 10 stays deleted; 12 goes
    assert len(loaded) == 397


def test_graph_index_searched_while_another_thread_adds_stays_correct() -> None:
    """The service's access pattern: compaction folds items into the graph while requests
    search it. Every search must answer (no error), only with keys already added, and the
    graph must end up finding every item."""
    data = vectors(6000)
    index = GraphIndex(ndim=16, threads=2)
    index.add(np.arange(1000), data[:1000])
    errors: list[BaseException] = []
    stop = threading.Event()
    adding_below = [1000]  # keys below this have been handed to `add`

    def search_loop() -> None:
        try:
            while not stop.is_set():
                found = index.search(data[rng.integers(0, 1000, size=4)], 50)
                assert (found.counts == 50).all()
                assert 0 <= found.keys.min() and found.keys.max() < adding_below[0]
        except BaseException as err:  # handed to the main thread
            errors.append(err)

    searchers = [threading.Thread(target=search_loop) for _ in range(2)]
    for thread in searchers:
        thread.start()
    for start in range(1000, 6000, 500):
        adding_below[0] = start + 500
        index.add(np.arange(start, start + 500), data[start : start + 500])
    stop.set()
    for thread in searchers:
        thread.join()
    assert not errors, errors[0]
    assert len(index) == 6000
    own = [index.search(data[i], 1).keys[0, 0] for i in range(0, 6000, 97)]
    assert np.mean(np.array(own) == np.arange(0, 6000, 97)) >= 0.98


def test_main_index_kind_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown main index 'faiss'"):
        main_index("faiss", ndim=4)


def test_an_i8_usearch_index_is_viewed_memory_mapped_with_its_answers(tmp_path: Path) -> None:
    from recomatrix.tier.mapped import MappedHnswIndex

    data = vectors(500)
    index = main_index("usearch", ndim=16, dtype="i8")
    index.add(np.arange(500), data)
    index.save(tmp_path / "main.usearch")
    viewed = MappedHnswIndex(path=tmp_path / "main.usearch", ndim=16)  # i8 read from the file
    hits = [viewed.search(data[i], 1).keys[0, 0] for i in range(0, 500, 25)]
    assert np.mean(np.array(hits) == np.arange(0, 500, 25)) >= 0.9
    with pytest.raises(ValueError, match="hnswlib keeps f32"):
        main_index("hnswlib", ndim=16, dtype="i8")


class _FindsAtMost:
    """An hnswlib index that, like one whose deletions cut off part of the graph, finds at
    most `limit` live nodes and raises as hnswlib does when asked for more."""

    def __init__(self, inner: object, limit: int, message: str) -> None:
        self.inner, self.limit, self.message = inner, limit, message

    def knn_query(self, queries: np.ndarray, k: int, num_threads: int) -> object:
        if k > self.limit:
            raise RuntimeError(self.message)
        return self.inner.knn_query(queries, k=k, num_threads=num_threads)  # type: ignore[attr-defined]

    def set_ef(self, ef: int) -> None:
        self.inner.set_ef(ef)  # type: ignore[attr-defined]


def test_graph_index_returns_what_it_finds_when_hnswlib_finds_fewer_than_k() -> None:
    data = vectors(200)
    index = GraphIndex(ndim=16)
    index.add(np.arange(200), data)
    message = "Cannot return the results in a contiguous 2D array. Probably ef or M is too small"
    index._index = _FindsAtMost(index._index, 3, message)
    found = index.search(data[:2], 10)
    assert found.counts.tolist() == [3, 3]  # 10 -> 7 -> 5 -> 3, per query
    assert found.keys[:, 0].tolist() == [0, 1]
    assert (found.keys[:, 3:] == -1).all()
    index._index = _FindsAtMost(index._index.inner, 3, "some other failure")
    with pytest.raises(RuntimeError, match="some other failure"):
        index.search(data[:2], 10)


def test_graph_index_compacts_into_a_serving_graph_in_small_chunks() -> None:
    """A build (the index empty) goes in one large chunk; a fold into a populated index goes
    8 items per lock hold, so a waiting search gets in between."""
    index = GraphIndex(ndim=16, threads=1)
    holds: list[int] = []
    add_items = index._index.add_items

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(index._index_inner, name)

        def add_items(self, data: np.ndarray, labels: np.ndarray, num_threads: int) -> None:
            holds.append(len(labels))
            add_items(data, labels, num_threads=num_threads)

    index._index_inner = index._index  # type: ignore[attr-defined]
    index._index = Counting()
    index.add(np.arange(1000), vectors(1000))
    assert holds == [1000]
    holds.clear()
    index.add(np.arange(1000, 1020), vectors(20))
    assert holds == [8, 8, 4]
    assert len(index) == 1020


@pytest.mark.parametrize("kind", KINDS)
def test_items_added_one_by_one_are_folded_into_the_graph_and_stay_found(kind: str) -> None:
    """The POST /v1/items pattern: the delta passes compact_at, a background thread folds
    it into the main graph, and every new item is found by its own vector throughout:
    first (exact delta) at k=1, folded (approximate graph) among its 10 nearest."""
    main = empty_main(kind)
    main.add(np.arange(1000), vectors(1000))
    tiered = TieredIndex(main=main, compact_at=50)
    new = vectors(130)
    for i, vector in enumerate(new):
        tiered.add(np.array([5000 + i]), vector[None, :])
        assert tiered.search(vector, 1).keys[0, 0] == 5000 + i
    compaction = tiered._compaction
    assert compaction is not None
    compaction.join(timeout=10)
    tiered.compact()  # what is left in the delta
    assert len(tiered.delta) == 0 and len(main) == 1130
    # Folded into the graph, items are found by approximate search: each among the 10
    # nearest of its own vector (at k=1 the graph walk missed one of the 130 in about 1 of
    # 25 runs, stopping at a close neighbour; the delta above is exact).
    lost = [5000 + i for i, v in enumerate(new) if 5000 + i not in tiered.search(v, 10).keys[0]]
    assert lost == []
