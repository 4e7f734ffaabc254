"""MovieLens ml-latest-small, vendored in the package, loaded as a World."""

from __future__ import annotations

import csv
import itertools
from collections import Counter
from pathlib import Path

import pytest

from recomatrix.data import MOVIELENS_DIR, World, load_movielens, rating_event, stream_live_events


@pytest.fixture(scope="module")
def world() -> World:
    return load_movielens()


def test_dataset_is_vendored_with_its_licence_readme() -> None:
    for name in ("README.txt", "SOURCES.md", "movies.csv", "ratings.csv", "tags.csv"):
        assert (MOVIELENS_DIR / name).is_file(), name
    assert "GroupLens" in (MOVIELENS_DIR / "README.txt").read_text(encoding="utf-8")


def test_counts_match_ml_latest_small(world: World) -> None:
    assert world.name == "movielens"
    assert len(world.users) == 610
    assert len(world.items) == 9742
    assert len(world.events) == 100_836
    assert world.late_items == []


def test_ratings_map_to_engagement_by_level() -> None:
    assert rating_event(5.0) == ("complete", 5400.0)
    assert rating_event(4.5)[0] == "complete"
    assert rating_event(4.0) == ("like", 0.0)
    assert rating_event(3.0)[0] == "view" and rating_event(3.0)[1] > 0
    assert rating_event(2.0) == ("skip", 0.0)
    assert rating_event(0.5)[0] == "skip"


def test_rating_rows_become_events_with_stable_ids(world: World) -> None:
    by_id = {event.event_id: event for event in world.events}
    assert len(by_id) == len(world.events)
    toy_story = by_id["ml-1-1"]  # userId 1 rated Toy Story 4.0
    assert (toy_story.user_id, toy_story.item_id, toy_story.type) == ("1", "1", "like")
    assert toy_story.ts == 964982703
    seven = by_id["ml-1-47"]  # and Se7en 5.0
    assert (seven.type, seven.watch_seconds) == ("complete", 5400.0)
    kinds = Counter(event.type for event in world.events)
    assert set(kinds) == {"complete", "like", "view", "skip"}


def test_events_are_time_ordered_and_follow_their_items_creation(world: World) -> None:
    ts = [event.ts for event in world.events]
    assert ts == sorted(ts)
    created = {item.item_id: item.created_at for item in world.items}
    first_rated: dict[str, float] = {}
    for event in world.events:
        first_rated.setdefault(event.item_id, event.ts)
    assert all(created[item] == first - 1.0 for item, first in first_rated.items())
    unrated = [item for item in world.items if item.item_id not in first_rated]
    assert len(unrated) == 18 and all(item.created_at < ts[0] for item in unrated)


def test_items_carry_title_genres_tags_and_a_release_year_creator(world: World) -> None:
    items = world.items_by_id()
    toy_story = items["1"]
    assert toy_story.title == "Toy Story (1995)"
    assert toy_story.genres[0] == "adventure" and "animation" in toy_story.genres
    assert "pixar" in toy_story.tags and len(toy_story.tags) <= 5
    assert toy_story.creator_id == "year-1995"
    titled = {item.title: item for item in world.items}
    assert titled["Babylon 5"].creator_id == "year-unknown"
    assert titled["Death Note: Desu nôto (2006–2007)"].creator_id == "year-2006"
    assert sum(not item.genres for item in world.items) == 34
    assert "(no genres listed)" not in world.genres and "sci-fi" in world.genres


def test_min_rating_keeps_only_ratings_at_or_above_it() -> None:
    with (MOVIELENS_DIR / "ratings.csv").open(newline="") as handle:
        expected = sum(float(row["rating"]) >= 4.0 for row in csv.DictReader(handle))
    high = load_movielens(min_rating=4.0)
    assert len(high.events) == expected
    assert {event.type for event in high.events} == {"like", "complete"}
    assert len(high.items) == 9742 and len(high.users) <= 610


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def test_a_folder_without_tags_loads_and_ids_are_normalised(tmp_path: Path) -> None:
    _write(tmp_path, "movies.csv", "movieId,title,genres\n7,Seven (1995),Crime|Thriller\n")
    _write(tmp_path, "ratings.csv", "timestamp,userId,movieId,rating\n100,03,007,2.0\n")
    tiny = load_movielens(tmp_path)
    assert tiny.users == ["3"] and tiny.items[0].tags == ()
    assert tiny.events[0].event_id == "ml-3-7" and tiny.events[0].type == "skip"
    assert tiny.items[0].created_at == 99.0


def test_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    _write(tmp_path, "movies.csv", "movieId,title,genres\n1,A (2000),Drama\n")
    with pytest.raises(ValueError, match=r"ratings\.csv: file not found"):
        load_movielens(tmp_path)


def test_missing_column_is_reported_with_file_and_column(tmp_path: Path) -> None:
    _write(tmp_path, "movies.csv", "movieId,title,genres\n1,A (2000),Drama\n")
    _write(tmp_path, "ratings.csv", "userId,movieId,timestamp\n1,1,100\n")
    with pytest.raises(ValueError, match=r"ratings\.csv: missing column 'rating'"):
        load_movielens(tmp_path)


def test_bad_value_is_reported_with_line_and_column(tmp_path: Path) -> None:
    _write(tmp_path, "movies.csv", "movieId,title,genres\n1,A (2000),Drama\n")
    _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,100\n1,1,good,101\n")
    with pytest.raises(ValueError, match=r"line 3: column 'rating' must be a number"):
        load_movielens(tmp_path)


def test_rating_of_an_unknown_movie_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "movies.csv", "movieId,title,genres\n1,A (2000),Drama\n")
    _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.0,100\n")
    with pytest.raises(ValueError, match=r"movieId 2 is not in movies\.csv"):
        load_movielens(tmp_path)


def test_live_stream_runs_on_the_movielens_world(world: World) -> None:
    live = list(itertools.islice(stream_live_events(world, seed=1), 500))
    assert [e.ts for e in live] == sorted(e.ts for e in live)
    assert live[0].ts >= world.end_ts
    items, users = world.items_by_id(), set(world.users)
    assert all(e.item_id in items and e.user_id in users for e in live)
