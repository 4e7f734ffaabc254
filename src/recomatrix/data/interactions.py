"""Load any interactions file (CSV, TSV or Parquet) and an optional items file as a World.

Interactions need `user_id`, `item_id` and `timestamp` (epoch seconds or ISO 8601) and may
have `rating` (mapped to an event type like MovieLens ratings, see `rating_event`) or
`type` (one of the event types). Without either, every row is a click. Items may have
`title`, `description`, `genres` and `tags` (separated by `|`), `creator_id`, `created_at`.
Common spellings of the column names (`userId`, `movieId`, `ts`, ...) are accepted.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from recomatrix.data.movielens import rating_event
from recomatrix.data.world import World
from recomatrix.types import EVENT_TYPES, Event, EventType, Item

# Canonical column -> the names it may have in a file header.
ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "userId", "user", "uid"),
    "item_id": ("item_id", "itemId", "movieId", "item", "iid"),
    "timestamp": ("timestamp", "ts", "time"),
    "rating": ("rating", "score"),
    "type": ("type", "event_type"),
    "title": ("title", "name"),
    "description": ("description",),
    "genres": ("genres", "genre"),
    "tags": ("tags",),
    "creator_id": ("creator_id", "creator"),
    "created_at": ("created_at",),
}
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
Rows = Iterator[tuple[int, dict[str, str]]]  # (line number, canonical column -> text)


def load_interactions(
    path: Path,
    *,
    items_path: Path | None = None,
    sep: str | None = None,
    header: bool = True,
    columns: Sequence[str] | None = None,
    min_rating: float | None = None,
) -> World:
    """A World from an interactions file; see the module docstring for the columns.

    `sep` defaults to a tab for .tsv and a comma otherwise (any string: "::" works).
    `header=False` needs `columns`, the names of the file's columns in order (a name
    outside the known ones marks a column to ignore). Rows with a rating below
    `min_rating` are left out. An item's `created_at` defaults to one second before its
    first interaction.
    """
    if not header and not columns:
        raise ValueError(f"{path}: a file without a header needs --columns (e.g. "
                         "user_id,item_id,rating,timestamp)")  # fmt: skip
    rows = list(_read(path, sep=sep, names=None if header else list(columns or ()),
                      required=INTERACTION_COLUMNS))  # fmt: skip
    if min_rating is not None and rows and "rating" not in rows[0][1]:
        raise ValueError(f"{path}: --min-rating needs a rating column")
    events: list[Event] = []
    for line, row in rows:
        rating = _number(path, line, "rating", row["rating"]) if "rating" in row else None
        if min_rating is not None and rating is not None and rating < min_rating:
            continue
        kind, watch_s = _event_type(path, line, row, rating)
        user, item = row["user_id"].strip(), row["item_id"].strip()
        if not user or not item:
            raise ValueError(f"{path}, line {line}: empty user_id or item_id")
        ts = _timestamp(path, line, row["timestamp"])
        events.append(Event(f"{path.stem}-{line}", user, item, kind, ts, watch_s))
    if not events:
        raise ValueError(f"{path}: no interactions left to load")
    events.sort(key=lambda e: e.ts)  # stable: equal times keep file order
    first_seen: dict[str, float] = {}
    for event in events:
        first_seen.setdefault(event.item_id, event.ts)
    items = _items(items_path, first_seen, default_ts=events[0].ts)
    known = {item.item_id for item in items}
    missing = next((e for e in events if e.item_id not in known), None)
    if missing is not None:
        raise ValueError(f"{items_path}: no row for item_id {missing.item_id!r}, which "
                         f"{path} refers to")  # fmt: skip
    users = list(dict.fromkeys(e.user_id for e in events))
    genres = sorted({genre for item in items for genre in item.genres})
    return World(name=path.stem, items=items, users=users, events=events, genres=genres)


def _items(path: Path | None, first_seen: dict[str, float], *, default_ts: float) -> list[Item]:
    """Items from the items file, or a bare item per interacted id when there is none."""
    if path is None:
        return [
            Item(item_id=i, title=f"item {i}", created_at=ts - 1.0) for i, ts in first_seen.items()
        ]
    items = []
    for line, row in _read(path, sep=None, names=None, required=("item_id",)):
        item_id = row["item_id"].strip()
        created = row.get("created_at", "").strip()
        items.append(
            Item(
                item_id=item_id,
                title=row.get("title", "").strip() or f"item {item_id}",
                description=row.get("description", "").strip(),
                genres=_listed(row.get("genres", "")),
                tags=_listed(row.get("tags", "")),
                creator_id=row.get("creator_id", "").strip(),
                created_at=_timestamp(path, line, created, "created_at")
                if created
                else first_seen.get(item_id, default_ts) - 1.0,
            )
        )
    return items


def _read(path: Path, *, sep: str | None, names: list[str] | None, required: Sequence[str]) -> Rows:
    """Rows with canonical column names, after checking the required columns are there."""
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    if path.suffix.lower() == ".parquet":
        yield from _parquet_rows(path, required)
        return
    separator = sep or ("\t" if path.suffix.lower() == ".tsv" else ",")
    with path.open(encoding="utf-8", newline="") as handle:
        lines = (
            csv.reader(handle, delimiter=separator)
            if len(separator) == 1
            else (line.rstrip("\r\n").split(separator) for line in handle)
        )
        first_line, where = 1, "--columns"
        if names is None:
            names, first_line, where = next(lines, []), 2, "the header"
        index = _resolve(path, names, required, where)
        for line, row in enumerate(lines, start=first_line):
            if row and any(field.strip() for field in row):
                yield line, {name: row[i] if i < len(row) else "" for name, i in index.items()}


def _parquet_rows(path: Path, required: Sequence[str]) -> Rows:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    index = _resolve(path, table.column_names, required, "the schema")
    values = {name: table.column(i).to_pylist() for name, i in index.items()}
    for n in range(table.num_rows):
        yield n + 1, {name: _text(column[n]) for name, column in values.items()}


def _resolve(
    path: Path, names: Sequence[str], required: Sequence[str], where: str
) -> dict[str, int]:
    """Canonical column -> position in `names`, failing on a missing required column."""
    found = {}
    for canonical, spellings in ALIASES.items():
        position = next((names.index(s) for s in spellings if s in names), None)
        if position is not None:
            found[canonical] = position
    for column in required:
        if column not in found:
            raise ValueError(
                f"{path}: missing column {column!r} (columns are {','.join(names)}); "
                f"name it {column} in {where}"
            )
    return found


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _event_type(
    path: Path, line: int, row: dict[str, str], rating: float | None
) -> tuple[EventType, float]:
    if "type" in row:
        text = row["type"].strip()
        for kind in EVENT_TYPES:
            if kind == text:
                return kind, 0.0
        raise ValueError(f"{path}, line {line}: column 'type' must be one of "
                         f"{', '.join(EVENT_TYPES)}, got {text!r}")  # fmt: skip
    if rating is not None:
        return rating_event(rating)
    return "click", 0.0


def _number(path: Path, line: int, column: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path}, line {line}: column {column!r} must be a number, "
                         f"got {value!r}") from None  # fmt: skip


def _timestamp(path: Path, line: int, value: str, column: str = "timestamp") -> float:
    """Epoch seconds from a number or an ISO 8601 time (UTC when it names no zone)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{path}, line {line}: column {column!r} must be epoch seconds or "
                         f"an ISO 8601 time, got {value!r}") from None  # fmt: skip
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _listed(value: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in value.split("|") if part.strip())
