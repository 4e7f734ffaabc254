"""The columnar catalogue gives back exactly the records it was given, by id and by key."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recomatrix.retrieval import Catalogue, ItemColumns
from recomatrix.types import Item

text = st.text(max_size=40)
items = st.builds(
    Item,
    item_id=st.text(min_size=1, max_size=12),
    title=text,
    description=text,
    tags=st.lists(st.text(max_size=10), max_size=4).map(tuple),
    genres=st.lists(st.sampled_from(["drama", "comedy", "horror"]), max_size=2).map(tuple),
    creator_id=st.sampled_from(["", "c1", "c2"]),
    created_at=st.floats(0, 2e9),
    sponsored=st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(items, max_size=30), st.lists(items, max_size=30))
def test_records_come_back_as_put_and_the_last_put_of_an_id_wins(
    first: list[Item], second: list[Item]
) -> None:
    catalogue = Catalogue(ndim=2, capacity=1)
    latest: dict[str, Item] = {}
    for batch in (first, second):
        keys = catalogue.put(batch, np.ones((len(batch), 2), dtype=np.float32))
        for item, key in zip(batch, keys, strict=True):
            latest[item.item_id] = item
            assert catalogue.key(item.item_id) == key
    assert len(catalogue) == len(latest)
    for item_id, item in latest.items():
        assert catalogue.get(item_id) == item
        key = catalogue.key(item_id)
        assert key is not None and catalogue.item_id(key) == item_id
        traits = catalogue.traits(key)
        assert traits == (item.genre, item.creator_id, item.sponsored, item.created_at)
        [candidate] = catalogue.candidates([key], [0.5], "personal")
        assert (candidate.item_id, candidate.key, candidate.retrieval_score) == (item_id, key, 0.5)
        assert (candidate.genre, candidate.creator_id, candidate.sponsored,
                candidate.created_at) == traits  # fmt: skip
    catalogue.compact_text()
    assert {it.item_id: it for it in catalogue.items()} == latest


def test_delete_hides_the_item_everywhere_and_keeps_the_key_retired() -> None:
    catalogue = Catalogue(ndim=2)
    a, b = Item("a", "A", genres=("drama",)), Item("b", "B", genres=("comedy",))
    keys = catalogue.put([a, b], np.eye(2, dtype=np.float32))
    assert catalogue.delete("a") == keys[0]
    assert catalogue.get("a") is None and catalogue.traits(int(keys[0])) is None
    assert catalogue.item_id(int(keys[0])) is None and "a" not in catalogue
    assert catalogue.primary_genres(["a", "b", "zzz"]) == ["comedy"]
    # Retrieval never turns the retired key (nor an unknown one) into a candidate.
    found = catalogue.candidates([int(keys[0]), int(keys[1]), 99, -1], [0.9, 0.8, 0.7, 0.6], "p")
    assert [c.item_id for c in found] == ["b"]
    assert [c.item_id for c in catalogue.candidates_of(["a", "b", "zzz"], "popular")] == ["b"]
    again = catalogue.put([a], np.ones((1, 2), dtype=np.float32))
    assert again[0] not in keys  # a key is never reused


def test_replacing_text_grows_the_buffer_until_compacted() -> None:
    catalogue = Catalogue(ndim=2)
    vector = np.ones((1, 2), dtype=np.float32)
    for n in range(50):
        catalogue.put([Item("a", f"title number {n}")], vector)
    before = catalogue.text_bytes()
    catalogue.compact_text()
    assert catalogue.text_bytes() < before / 10
    assert catalogue.get("a") == Item("a", "title number 49")


def test_text_too_long_is_refused_and_nothing_changes() -> None:
    catalogue = Catalogue(ndim=2)
    catalogue.put([Item("a", "ok")], np.ones((1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="too long"):
        catalogue.put([Item("b", "fine"), Item("a", "x" * (1 << 24))], np.ones((2, 2)))
    assert catalogue.get("a") == Item("a", "ok")
    assert len(catalogue) == 1 and "b" not in catalogue
    catalogue.put([Item("c", "next")], np.ones((1, 2), dtype=np.float32))
    assert catalogue.get("c") == Item("c", "next") and catalogue.key("c") == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(items, max_size=30, unique_by=lambda it: it.item_id))
def test_a_column_load_stores_what_put_would(batch: list[Item]) -> None:
    loaded, put = Catalogue(ndim=2, capacity=1), Catalogue(ndim=2, capacity=1)
    put.put([Item("first", "before")], np.zeros((1, 2), dtype=np.float32))
    loaded.put([Item("first", "before")], np.zeros((1, 2), dtype=np.float32))
    vectors = np.arange(2 * len(batch), dtype=np.float32).reshape(-1, 2)
    columns = ItemColumns(
        item_ids=[it.item_id for it in batch if it.item_id != "first"],
        titles=[it.title for it in batch if it.item_id != "first"],
        genres=[it.genres for it in batch if it.item_id != "first"],
        creator_ids=[it.creator_id for it in batch if it.item_id != "first"],
        created_at=np.array([it.created_at for it in batch if it.item_id != "first"]),
        sponsored=np.array([it.sponsored for it in batch if it.item_id != "first"], dtype=bool),
        descriptions=[it.description for it in batch if it.item_id != "first"],
        tags=[it.tags for it in batch if it.item_id != "first"],
    )
    fresh = [it for it in batch if it.item_id != "first"]
    keys = loaded.load(columns, vectors[: len(fresh)])
    assert keys.tolist() == put.put(fresh, vectors[: len(fresh)]).tolist()
    assert loaded.items() == put.items()
    assert np.array_equal(loaded.matrix(), put.matrix())
    assert all(loaded.traits(k) == put.traits(k) for k in keys.tolist())


def test_a_load_refuses_stored_or_repeated_ids_and_ragged_columns() -> None:
    catalogue = Catalogue(ndim=2)
    catalogue.put([Item("a", "A")], np.ones((1, 2), dtype=np.float32))

    def columns(ids: list[str], n_titles: int) -> ItemColumns:
        return ItemColumns(
            item_ids=ids, titles=["t"] * n_titles, genres=[()] * len(ids),
            creator_ids=[""] * len(ids), created_at=np.zeros(len(ids)),
            sponsored=np.zeros(len(ids), dtype=bool),
        )  # fmt: skip

    for bad, match in ((columns(["a"], 1), "new items"), (columns(["b", "b"], 2), "repeats"),
                       (columns(["b", "c"], 1), "rows")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            catalogue.load(bad, np.ones((len(bad), 2), dtype=np.float32))
    assert len(catalogue) == 1 and catalogue.get("a") == Item("a", "A")
