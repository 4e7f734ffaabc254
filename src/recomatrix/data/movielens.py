"""Load MovieLens ml-latest-small (vendored beside this module) as a World.

Each rating becomes one engagement event at the rating's timestamp; see `rating_event`.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

from recomatrix.data.world import World
from recomatrix.types import Event, EventType, Item

MOVIELENS_DIR = Path(__file__).parent / "movielens"
FULL_WATCH_S = 5400.0  # a feature film's length, credited to a top rating
PARTIAL_WATCH_S = 2700.0  # half a film, credited to a middling rating
MAX_TAGS = 5  # most frequent user tags kept per movie
_YEAR = re.compile(r"\((\d{4})(?:[–-]\d{4})?\)\s*$")
_NO_GENRES = "(no genres listed)"


def rating_event(rating: float) -> tuple[EventType, float]:
    """The (event type, watch seconds) a rating stands for: high ratings are positive.

    >>> [rating_event(r)[0] for r in (5.0, 4.5, 4.0, 3.5, 3.0, 2.5, 2.0, 0.5)]
    ['complete', 'complete', 'like', 'like', 'view', 'view', 'skip', 'skip']
    """
    if rating >= 4.5:
        return "complete", FULL_WATCH_S
    if rating >= 3.5:
        return "like", 0.0
    if rating >= 2.5:
        return "view", PARTIAL_WATCH_S
    return "skip", 0.0


def load_movielens(path: Path | None = None, *, min_rating: float = 0.0) -> World:
    """A World from a MovieLens folder holding movies.csv, ratings.csv and optionally tags.csv.

    `path` defaults to the vendored ml-latest-small. Ratings below `min_rating` are left
    out, and so are users left without ratings; every movie stays in the catalogue.
    Ids are MovieLens' own (`"1"`), genres lower-cased with the first listed as primary.
    MovieLens has no creators, so `creator_id` is the release year (`"year-1995"`, or
    `"year-unknown"`): per-creator caps then act as per-year caps. An item's `created_at`
    is one second before its first kept rating, so movies appear in the log when first
    rated (unrated ones one second before the log starts).
    """
    folder = MOVIELENS_DIR if path is None else Path(path)
    events = _read_ratings(folder / "ratings.csv", min_rating)
    events.sort(key=lambda e: (e.ts, int(e.user_id), int(e.item_id)))
    first_seen: dict[str, float] = {}
    for event in events:
        first_seen.setdefault(event.item_id, event.ts)
    tags = _read_tags(folder / "tags.csv")
    items = _read_movies(
        folder / "movies.csv", first_seen, tags, default_ts=events[0].ts if events else 0.0
    )
    known = {item.item_id for item in items}
    unknown = sorted({e.item_id for e in events} - known, key=int)
    if unknown:
        raise ValueError(f"{folder / 'ratings.csv'}: movieId {unknown[0]} is not in movies.csv")
    users = sorted({e.user_id for e in events}, key=int)
    genres = sorted({genre for item in items for genre in item.genres})
    return World(
        name="movielens", items=items, users=users, events=events, late_items=[], genres=genres
    )


def _read_table(file: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file as (line number, {column: value}), checking the header first."""
    if not file.is_file():
        raise ValueError(
            f"{file}: file not found (expected a MovieLens CSV with columns {', '.join(columns)})"
        )
    with file.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        for column in columns:
            if column not in header:
                raise ValueError(
                    f"{file}: missing column {column!r} (header is {','.join(header)})"
                )
        index = [header.index(column) for column in columns]
        return [
            (line, {column: row[i] for column, i in zip(columns, index, strict=True)})
            for line, row in enumerate(reader, start=2)
            if row
        ]


def _read_ratings(file: Path, min_rating: float) -> list[Event]:
    events = []
    for line, row in _read_table(file, ("userId", "movieId", "rating", "timestamp")):
        rating = _number(file, line, "rating", row["rating"])
        if rating < min_rating:
            continue
        kind, watch_s = rating_event(rating)
        user, movie = (
            _integer_id(file, line, "userId", row),
            _integer_id(file, line, "movieId", row),
        )
        ts = _number(file, line, "timestamp", row["timestamp"])
        events.append(Event(f"ml-{user}-{movie}", user, movie, kind, ts, watch_s))
    return events


def _read_tags(file: Path) -> dict[str, tuple[str, ...]]:
    """Each movie's most frequent tags, lower-cased; no tags.csv means no tags."""
    if not file.exists():
        return {}
    counts: dict[str, Counter[str]] = {}
    for line, row in _read_table(file, ("movieId", "tag")):
        movie = _integer_id(file, line, "movieId", row)
        tag = " ".join(row["tag"].lower().split())
        if tag:
            counts.setdefault(movie, Counter())[tag] += 1
    return {movie: tuple(tag for tag, _ in c.most_common(MAX_TAGS)) for movie, c in counts.items()}


def _read_movies(
    file: Path, first_seen: dict[str, float], tags: dict[str, tuple[str, ...]], *, default_ts: float
) -> list[Item]:
    items = []
    for line, row in _read_table(file, ("movieId", "title", "genres")):
        movie, title = _integer_id(file, line, "movieId", row), row["title"].strip()
        listed = [] if row["genres"] == _NO_GENRES else row["genres"].split("|")
        year = _YEAR.search(title)
        items.append(
            Item(
                item_id=movie,
                title=title,
                tags=tags.get(movie, ()),
                genres=tuple(genre.strip().lower() for genre in listed if genre.strip()),
                creator_id=f"year-{year.group(1) if year else 'unknown'}",
                created_at=first_seen.get(movie, default_ts) - 1.0,
            )
        )
    return items


def _number(file: Path, line: int, column: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"{file}, line {line}: column {column!r} must be a number, got {value!r}"
        ) from None


def _integer_id(file: Path, line: int, column: str, row: dict[str, str]) -> str:
    """A MovieLens id, normalised ("007" -> "7") so the same id always reads the same."""
    value = row[column].strip()
    if not value.isdigit():
        raise ValueError(
            f"{file}, line {line}: column {column!r} must be a whole number, got {value!r}"
        )
    return str(int(value))
