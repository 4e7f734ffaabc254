"""Evaluation: metrics, the time split, the replay's no-leakage and exclusion guarantees,
the baselines, the read-only snapshot behind the frozen engine, and the interactions loader."""

from __future__ import annotations

import math
from collections.abc import Sequence, Set
from pathlib import Path

import numpy as np
import pytest

from recomatrix.data.interactions import load_interactions
from recomatrix.data.world import World
from recomatrix.evaluation import RankingScores, replay, split_by_time
from recomatrix.evaluation.als import ALS
from recomatrix.evaluation.baselines import ItemKNN, MostPopular, RandomItems, RecentPopular
from recomatrix.evaluation.run import validation_world
from recomatrix.evaluation.systems import SnapshotStore
from recomatrix.events import open_bus
from recomatrix.features import MemoryOnlineStore
from recomatrix.stream.processor import StreamProcessor
from recomatrix.types import Event, EventType, Item, ItemId, UserId


def tiny_world(n_events: int = 200, n_items: int = 30, n_users: int = 8, seed: int = 1) -> World:
    """Random users engaging with random items, several events per second (so ties occur)."""
    rng = np.random.default_rng(seed)
    kinds: list[EventType] = ["impression", "click", "like", "skip", "complete", "view"]
    events = [
        Event(f"e{n}", f"u{rng.integers(n_users)}", f"i{rng.integers(n_items)}",
              kinds[int(rng.integers(len(kinds)))], float(n // 3))
        for n in range(n_events)
    ]  # fmt: skip
    items = [Item(f"i{i}", f"title {i}", created_at=-1.0) for i in range(n_items)]
    late = Item("late", "a late item", created_at=float(n_events // 3 - 5))
    events.append(Event("e-late", "u0", "late", "click", float(n_events // 3 - 4)))
    return World(name="tiny", items=items, users=[f"u{u}" for u in range(n_users)],
                 events=events, late_items=[late])  # fmt: skip


class Spy:
    """A system that records what it was fed and what it was asked, to audit the replay."""

    name = "spy"

    def __init__(self) -> None:
        self.fed: list[Event] = []
        self.published: list[tuple[float, ItemId]] = []
        self.asked: list[tuple[UserId, float, frozenset[ItemId], tuple[str, ...]]] = []

    def recommend(
        self, user_id: UserId, *, k: int, exclude: Set[ItemId], now: float
    ) -> list[ItemId]:
        self.asked.append((user_id, now, frozenset(exclude), tuple(e.event_id for e in self.fed)))
        return []

    def observe(self, event: Event) -> None:
        self.fed.append(event)

    def publish(self, items: Sequence[Item], *, now: float) -> None:
        self.published.extend((now, item.item_id) for item in items)


def test_metrics_match_hand_computed_values() -> None:
    scores = RankingScores(k=3)
    scores.add(["a", "b", "c", "d"], "a")  # rank 1: ndcg 1, rr 1
    scores.add(["a", "b", "c", "d"], "c")  # rank 3: ndcg 1/log2(4) = 0.5, rr 1/3
    scores.add(["a", "b", "c", "d"], "d")  # rank 4 is outside the top 3: a miss
    summary = scores.summary(catalogue_size=6)
    assert summary.hit_rate == pytest.approx(2 / 3)
    assert summary.ndcg == pytest.approx((1 + 0.5) / 3)
    assert summary.mrr == pytest.approx((1 + 1 / 3) / 3)
    assert summary.coverage == pytest.approx(3 / 6)  # only the top 3 count as recommended
    assert math.isclose(RankingScores(k=10).summary(catalogue_size=5).hit_rate, 0.0)


def test_split_leaves_exactly_the_last_fifth_of_the_log_for_test() -> None:
    world = tiny_world()
    split = split_by_time(world, test_fraction=0.2)
    cut = len(world.events) - round(0.2 * len(world.events))
    assert [e.event_id for e in split.test] == [e.event_id for e in world.events[cut:]]
    assert split.train.events == world.events[:cut]
    assert max(e.ts for e in split.train.events) <= min(e.ts for e in split.test)
    assert "late" not in {item.item_id for item in split.train.items}
    assert [a.item.item_id for a in split.arrivals] == ["late"]


def test_cold_start_items_are_absent_from_training_and_arrive_at_first_test_event() -> None:
    world = tiny_world(n_events=600)
    split = split_by_time(world, cold_start_share=0.2, seed=3)
    assert len(split.cold_items) == round(0.2 * 30)  # the late item is not eligible
    assert not split.cold_items & {e.item_id for e in split.train.events}
    assert not split.cold_items & {item.item_id for item in split.train.items}
    first_test = {}
    for event in split.test:
        first_test.setdefault(event.item_id, event.ts)
    arrived = {a.item.item_id: a.ts for a in split.arrivals if a.item.item_id in split.cold_items}
    assert arrived == {i: first_test[i] for i in split.cold_items if i in first_test}
    assert all(a.item.created_at == a.ts for a in split.arrivals if a.item.item_id in arrived)


def test_no_system_is_fed_a_test_event_before_it_is_scored() -> None:
    world = tiny_world(n_events=400)
    split = split_by_time(world)
    spy = Spy()
    result = replay(split, [spy], k=5)
    assert result.targets == len(spy.asked) > 10
    test_ids = [e.event_id for e in split.test]
    for user_id, now, _, fed in spy.asked:
        position = len(fed)
        assert fed == tuple(test_ids[:position])  # exactly the past, in order
        target = split.test[position]  # the event being scored comes right after
        assert (target.user_id, target.ts) == (user_id, now)
        assert target.type in ("click", "like", "complete")
    assert [e.event_id for e in spy.fed] == test_ids


def test_exclusions_are_every_item_the_user_touched_before_the_target() -> None:
    world = tiny_world(n_events=400)
    split = split_by_time(world)
    spy = Spy()
    replay(split, [spy], k=5)
    log = split.train.events + split.test
    for user_id, _, exclude, fed in spy.asked:
        past = log[: len(split.train.events) + len(fed)]
        touched = {e.item_id for e in past if e.user_id == user_id and e.type != "impression"}
        assert exclude == touched


def test_late_items_are_published_before_the_event_that_uses_them() -> None:
    split = split_by_time(tiny_world())
    spy = Spy()
    replay(split, [spy])
    (ts, item_id), = spy.published  # fmt: skip
    first_use = next(e for e in spy.fed if e.item_id == item_id)
    assert item_id == "late" and ts <= first_use.ts


def engaged(user: str, item: str, ts: float, kind: EventType = "click") -> Event:
    return Event(f"{user}-{item}-{ts}", user, item, kind, ts)


def test_baselines_never_return_excluded_items() -> None:
    train = [engaged(f"u{u}", f"i{i}", float(u * 10 + i)) for u in range(6) for i in range(u + 4)]
    exclude = frozenset({"i0", "i1", "i2"})  # the most popular items
    systems = [
        MostPopular(train=train),
        RecentPopular(train=train),
        ItemKNN(train=train),
        ALS(train=train, factors=4, iterations=3),
        RandomItems(items=[f"i{i}" for i in range(9)]),
    ]
    for system in systems:
        found = system.recommend("u1", k=4, exclude=exclude, now=100.0)
        assert len(found) == 4 and not exclude & set(found), system.name
        assert len(set(found)) == 4, system.name


def test_recent_popular_forgets_events_older_than_its_window() -> None:
    train = [engaged(f"u{n}", "old", float(n)) for n in range(5)] + [engaged("u9", "new", 50.0)]
    trending = RecentPopular(train=train, window_s=100.0)
    assert trending.recommend("x", k=1, exclude=frozenset(), now=60.0) == ["old"]
    trending.observe(engaged("u8", "new", 150.0))
    assert trending.recommend("x", k=1, exclude=frozenset(), now=150.0) == ["new"]


def test_item_knn_recommends_what_co_occurs_with_the_users_latest_items() -> None:
    train = [engaged(f"u{u}", item, float(u)) for u in range(5) for item in ("a", "b")]
    train += [engaged(f"v{u}", item, float(u)) for u in range(5) for item in ("c", "d")]
    train += [engaged(f"w{u}", "d", float(u)) for u in range(9)]  # d is the most popular
    knn = ItemKNN(train=train)
    knn.observe(engaged("new", "a", 10.0))
    assert knn.recommend("new", k=1, exclude=frozenset({"a"}), now=11.0) == ["b"]
    assert knn.recommend("stranger", k=1, exclude=frozenset(), now=11.0) == ["d"]


def test_frozen_snapshot_does_not_move_when_the_live_store_does() -> None:
    store = MemoryOnlineStore()
    processor = StreamProcessor(bus=open_bus("memory://"), store=store, item_vector=lambda i: None)
    processor.apply([engaged("u", "a", 1.0, "like")])
    snapshot = SnapshotStore.of(store, user_ids=["u"], item_ids=["a", "b"])
    processor.apply([engaged("u", "b", 2.0, "like")], copy_on_write=False)
    frozen_user = snapshot.get_users(["u"])[0]
    assert frozen_user is not None and frozen_user.recent_items == ["a"]
    assert snapshot.get_items(["b"]) == [None]
    assert [i for i, _ in snapshot.top_trending(5)] == ["a"]
    with pytest.raises(TypeError, match="read-only"):
        snapshot.put_users([frozen_user])


def test_interactions_loader_reads_a_headerless_tsv_with_named_columns(tmp_path: Path) -> None:
    ratings = tmp_path / "ratings.tsv"
    ratings.write_text("7\t42\t4.0\t200\n7\t43\t1.0\t100\n8\t42\t5.0\t300\n", encoding="utf-8")
    world = load_interactions(
        ratings, header=False, columns=["user_id", "item_id", "rating", "timestamp"]
    )
    assert [(e.user_id, e.item_id, e.type, e.ts) for e in world.events] == [
        ("7", "43", "skip", 100.0), ("7", "42", "like", 200.0), ("8", "42", "complete", 300.0),
    ]  # fmt: skip
    assert {item.item_id: item.created_at for item in world.items} == {"43": 99.0, "42": 199.0}
    kept = load_interactions(ratings, header=False, min_rating=3.5,
                             columns=["user_id", "item_id", "rating", "timestamp"])  # fmt: skip
    assert [e.item_id for e in kept.events] == ["42", "42"]


def test_interactions_loader_names_the_missing_column_and_the_file(tmp_path: Path) -> None:
    ratings = tmp_path / "ratings.tsv"
    ratings.write_text("7\t42\t4.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"ratings\.tsv: missing column 'timestamp'.*--columns"):
        load_interactions(ratings, header=False, columns=["user_id", "item_id", "rating"])
    csv_file = tmp_path / "log.csv"
    csv_file.write_text("userId,movieId,when\n1,2,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"log\.csv: missing column 'timestamp'"):
        load_interactions(csv_file)


def test_interactions_loader_joins_an_items_file_and_checks_every_item_is_in_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log.csv"
    log.write_text("userId,movieId,timestamp\n1,2,2024-01-01T00:00:00Z\n1,3,5\n", encoding="utf-8")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,genres\n2,Two,Drama|Comedy\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"items\.csv: no row for item_id '3'"):
        load_interactions(log, items_path=items)
    items.write_text("item_id,title,genres\n2,Two,Drama|Comedy\n3,Three,\n", encoding="utf-8")
    world = load_interactions(log, items_path=items)
    assert world.items_by_id()["2"].genres == ("drama", "comedy")
    assert [e.type for e in world.events] == ["click", "click"]
    assert world.events[-1].ts == 1_704_067_200.0


def test_validation_world_holds_only_the_log_before_the_test_split() -> None:
    world = tiny_world()
    split = split_by_time(world, test_fraction=0.2)
    before = validation_world(world, test_fraction=0.2)
    test_ids = {e.event_id for e in split.test}
    assert [e.event_id for e in before.events] == [e.event_id for e in split.train.events]
    assert not test_ids & {e.event_id for e in before.events}
    # Its own split (the validation slice) is cut from those events only.
    inner = split_by_time(before, test_fraction=0.15)
    assert {e.event_id for e in inner.test} <= {e.event_id for e in split.train.events}
    assert "late" not in {it.item_id for it in before.all_items}  # arrives after the split
