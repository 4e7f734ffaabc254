"""The synthetic world: sizes, determinism, text, popularity, sessions, viral items, live stream."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pytest

from recomatrix.data import World, generate_world, stream_live_events
from recomatrix.data.behaviour import BehaviourModel, popularity_index, simulate_sessions
from recomatrix.data.catalogue import GENRE_WORDS
from recomatrix.types import EVENT_TYPES, Event

END = 1_750_000_000.0


def _small_world(seed: int) -> World:
    return generate_world(
        n_items=2000, n_users=800, n_events=30_000, n_viral=3, days=2.0, end_ts=END, seed=seed
    )


@pytest.fixture(scope="module")
def world() -> World:
    return _small_world(seed=11)


def test_same_seed_gives_an_identical_world_and_another_seed_a_different_one(world: World) -> None:
    assert _small_world(seed=11) == world
    other = _small_world(seed=12)
    assert other.events != world.events
    assert other.items != world.items


def test_world_has_the_requested_sizes(world: World) -> None:
    assert world.name == "synthetic"
    assert len(world.items) == 2000
    assert len(world.late_items) == 3
    assert len(world.users) == 800
    assert len(world.events) == 30_000
    assert len(world.genres) >= 15
    assert {"drama", "comedy", "thriller", "documentary", "sci-fi"} <= set(world.genres)
    assert len({item.item_id for item in world.all_items}) == 2003


def test_events_are_ordered_unique_valid_and_inside_the_time_span(world: World) -> None:
    ts = [event.ts for event in world.events]
    assert ts == sorted(ts)
    assert END - 2.0 * 86_400 <= ts[0] and ts[-1] <= END
    assert len({event.event_id for event in world.events}) == len(world.events)
    items, users = world.items_by_id(), set(world.users)
    for event in world.events:
        assert event.type in EVENT_TYPES
        assert event.item_id in items and event.user_id in users
        if event.type in ("view", "complete"):
            assert event.watch_seconds > 0


def test_no_event_precedes_the_creation_of_its_item(world: World) -> None:
    items = world.items_by_id()
    assert all(event.ts >= items[event.item_id].created_at for event in world.events)
    assert any(END - item.created_at < 7 * 86_400 for item in world.items), "some items are new"


def test_late_items_appear_in_the_last_third_and_are_used_only_after_appearing(
    world: World,
) -> None:
    start = END - 2.0 * 86_400
    late = {item.item_id: item.created_at for item in world.late_items}
    assert all(start + 2 / 3 * (END - start) <= at < END for at in late.values())
    late_events = [event for event in world.events if event.item_id in late]
    assert len(late_events) > 30
    assert all(event.ts >= late[event.item_id] for event in late_events)


def test_viral_items_rank_among_the_most_engaged_items_once_they_appear(world: World) -> None:
    for viral in world.late_items:
        since = Counter(e.item_id for e in world.events if e.ts >= viral.created_at)
        ranking = [item_id for item_id, _ in since.most_common()]
        assert ranking.index(viral.item_id) < 0.05 * len(world.items)


def test_viral_items_take_off_within_the_first_hour() -> None:
    world = generate_world(
        n_items=1000, n_users=500, n_events=60_000, n_viral=3, days=1.0, end_ts=END, seed=3
    )
    appeared = {item.item_id: item.created_at for item in world.late_items}
    ages = np.array([e.ts - appeared[e.item_id] for e in world.events if e.item_id in appeared])
    first_quarter_hour = np.sum(ages < 900)
    after_an_hour = np.sum((ages >= 3600) & (ages < 4500))
    assert after_an_hour > 2 * first_quarter_hour


def test_item_text_carries_its_genre(world: World) -> None:
    thriller_words = set(GENRE_WORDS["thriller"])

    def thriller_word_count(text: str) -> int:
        return sum(word.strip(".,") in thriller_words for word in text.lower().split())

    thrillers = [thriller_word_count(i.text()) for i in world.items if i.genre == "thriller"]
    others = [thriller_word_count(i.text()) for i in world.items if "thriller" not in i.genres]
    assert len(thrillers) > 50
    assert np.mean(thrillers) > 3 and np.mean(others) < 0.1


def test_items_have_tags_a_primary_genre_creators_with_home_genres_and_few_sponsored(
    world: World,
) -> None:
    assert all(2 <= len(item.tags) <= 4 and item.genres for item in world.all_items)
    assert all(len(set(item.genres)) == len(item.genres) <= 2 for item in world.all_items)
    assert 5 <= sum(item.sponsored for item in world.items) <= 50
    genres_by_creator: dict[str, list[str]] = defaultdict(list)
    for item in world.items:
        genres_by_creator[item.creator_id].append(item.genre)
    at_home = sum(Counter(g).most_common(1)[0][1] for g in genres_by_creator.values())
    assert at_home / len(world.items) > 0.75


def test_item_popularity_is_heavy_tailed(world: World) -> None:
    per_item = sorted(Counter(e.item_id for e in world.events).values(), reverse=True)
    top_one_percent = sum(per_item[: len(world.items) // 100])
    assert top_one_percent / len(world.events) > 0.15


def test_impressions_dominate_and_click_through_rate_is_realistic(world: World) -> None:
    kinds = Counter(event.type for event in world.events)
    assert set(kinds) == set(EVENT_TYPES)
    assert kinds["impression"] / len(world.events) > 0.6
    assert 0.05 <= kinds["click"] / kinds["impression"] <= 0.15


def test_every_click_follows_an_impression_and_every_outcome_follows_a_click(
    world: World,
) -> None:
    last_seen: dict[tuple[str, str, str], float] = {}
    for event in world.events:
        pair = (event.user_id, event.item_id)
        if event.type == "click":
            assert (*pair, "impression") in last_seen
        elif event.type != "impression":
            assert (*pair, "click") in last_seen
        last_seen[(*pair, event.type)] = event.ts


def _two_genre_model(*, n_users: int, shift_at: float) -> BehaviourModel:
    """Two items, one per genre; every user likes genre 0; half of them move to genre 1."""
    genre = np.array([0, 1])
    items, cum = popularity_index(genre, np.ones(2), eligible=np.ones(2, dtype=bool))
    return BehaviourModel(
        item_ids=["likeable", "other"],
        item_genre=genre,
        item_genre2=np.array([-1, -1]),
        item_appeal=np.ones(2),
        item_duration_s=np.full(2, 300.0),
        genre_prior=np.array([0.5, 0.5]),
        popular_items=items,
        popular_cum=cum,
        user_ids=[f"u{u}" for u in range(n_users)],
        user_activity_cum=np.arange(1.0, n_users + 1),
        taste=np.tile([1.0, 0.0], (n_users, 1)),
        shift_genre=np.ones(n_users, dtype=np.int64),
        shift_at=np.where(np.arange(n_users) % 2 == 0, shift_at, np.inf),
        viral_items=np.array([], dtype=np.int64),
        viral_at=np.array([]),
    )


def _rate(events: Counter[tuple[str, int]], kind: str, item: int, of: str) -> float:
    return events[(kind, item)] / events[(of, item)]


def test_matched_items_are_clicked_and_completed_more_and_skipped_less() -> None:
    model = _two_genre_model(n_users=200, shift_at=np.inf)
    rng = np.random.default_rng(0)
    users = rng.integers(0, 200, 4000)
    log = simulate_sessions(model, rng, users, rng.uniform(0, 1000, 4000))
    counts = Counter(zip((EVENT_TYPES[k] for k in log.kind), log.item.tolist(), strict=True))
    assert _rate(counts, "click", 0, "impression") > 4 * _rate(counts, "click", 1, "impression")
    assert _rate(counts, "complete", 0, "click") > 1.5 * _rate(counts, "complete", 1, "click")
    assert _rate(counts, "skip", 0, "click") < 0.5 * _rate(counts, "skip", 1, "click")


def test_a_slate_never_shows_the_same_item_twice() -> None:
    model = _two_genre_model(n_users=10, shift_at=np.inf)
    rng = np.random.default_rng(2)
    log = simulate_sessions(model, rng, rng.integers(0, 10, 300), rng.uniform(0, 1000, 300))
    shown = log.take(log.kind == EVENT_TYPES.index("impression"))
    pairs = set(zip(shown.session.tolist(), shown.item.tolist(), strict=True))
    assert len(pairs) == len(shown)
    assert len(set(shown.session.tolist())) == 300


def test_users_who_shift_click_their_new_genre_more_after_the_shift() -> None:
    model = _two_genre_model(n_users=200, shift_at=5000.0)
    rng = np.random.default_rng(1)
    users = rng.integers(0, 200, 8000)
    log = simulate_sessions(model, rng, users, rng.uniform(0, 10_000, 8000))
    clicks = log.take(log.kind == EVENT_TYPES.index("click"))
    shifted_after = (clicks.user % 2 == 0) & (clicks.ts > 5000 + 600)
    steady = clicks.user % 2 == 1
    assert np.mean(clicks.item[shifted_after] == 1) > 0.55
    assert np.mean(clicks.item[steady] == 1) < 0.2


def test_live_stream_continues_the_world_in_time_order_at_a_realistic_rate(world: World) -> None:
    live = list(itertools.islice(stream_live_events(world, seed=5, start_ts=END), 4000))
    assert live == list(itertools.islice(stream_live_events(world, seed=5, start_ts=END), 4000))
    ts = [event.ts for event in live]
    assert ts == sorted(ts) and ts[0] >= END
    assert 50 <= len(live) / (ts[-1] - ts[0]) <= 500
    items, users = world.items_by_id(), set(world.users)
    assert all(e.item_id in items and e.user_id in users for e in live)
    world_ids = {event.event_id for event in world.events}
    assert len({e.event_id for e in live} - world_ids) == len(live)
    kinds = Counter(event.type for event in live)
    assert kinds["impression"] > 0.6 * len(live) and kinds["click"] > 0


def test_live_stream_defaults_to_starting_after_the_last_event(world: World) -> None:
    first: Event = next(stream_live_events(world, seed=0))
    assert first.ts >= world.end_ts


def test_split_at_separates_the_log_in_time(world: World) -> None:
    cut = world.events[12_345].ts
    before, after = world.split_at(cut)
    assert before + after == world.events
    assert all(e.ts < cut for e in before) and all(e.ts >= cut for e in after)


@pytest.mark.parametrize(
    "bad", [{"n_items": 0}, {"n_users": -1}, {"n_events": 0}, {"days": 0.0}, {"n_viral": -1}]
)
def test_invalid_sizes_are_rejected_naming_the_argument(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        generate_world(**bad)


def test_the_default_demo_world_is_generated_at_full_size() -> None:
    world = generate_world(end_ts=END)
    assert (len(world.items), len(world.users), len(world.events)) == (50_000, 20_000, 400_000)
    assert len(world.late_items) == 5
    assert len({item.creator_id for item in world.items}) > 1500
