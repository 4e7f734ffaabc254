"""Stored user fields: their msgpack layout, and watched / skipped maps written as changes."""

from __future__ import annotations

import doctest
import random
from typing import cast

import msgpack  # type: ignore[import-untyped]  # ships no type information
import numpy as np

from recomatrix.features import codec
from recomatrix.features.codec import decode_user_fields, encode_user_fields
from recomatrix.features.state import SeenMap, SessionVector, UserState
from recomatrix.features.windows import WindowCounts
from recomatrix.stream.settings import StreamSettings
from recomatrix.stream.updates import update_user
from recomatrix.types import Event


def _heavy_user() -> UserState:
    rng = np.random.default_rng(3)
    windows = WindowCounts()
    windows.add_amounts({"click": 2.0, "watch_seconds": 41.5}, ts=1_700_000_000.0)
    return UserState(
        "u1", windows=windows,
        session=SessionVector(rng.standard_normal(8).astype(np.float32), 1_700_000_001.0),
        long_term=rng.standard_normal(8).astype(np.float32),
        recent_items=["i2", "i1"], history=[f"i{k}" for k in range(200)],
        watched={f"i{k}": 1_700_000_000.0 + k / 3 for k in range(800)},
        skipped={"i9": 1_700_000_000.25}, last_ts=1_700_000_001.0,
    )  # fmt: skip


def test_every_user_field_round_trips_exactly() -> None:
    user = _heavy_user()
    stored = {name.encode(): blob for name, blob in encode_user_fields(user).items()}
    back = decode_user_fields("u1", stored)
    assert back.watched == user.watched and list(back.watched) == list(user.watched)
    assert (back.history, back.recent_items, back.skipped, back.last_ts) == (
        user.history, user.recent_items, user.skipped, user.last_ts)  # fmt: skip
    assert back.long_term is not None and user.long_term is not None
    assert back.long_term.tobytes() == user.long_term.tobytes()
    assert back.session.vector is not None and user.session.vector is not None
    assert back.session.vector.tobytes() == user.session.vector.tobytes()
    assert back.session.ts == user.session.ts
    assert back.windows.to_bytes() == user.windows.to_bytes()


def test_plain_fields_are_the_bytes_msgpack_writes() -> None:
    user = _heavy_user()
    fields = encode_user_fields(user, ["history", "recent_items", "last_ts", "skipped"])
    for name in ("history", "recent_items", "last_ts", "skipped"):
        assert fields[name] == msgpack.packb(getattr(user, name)), name


def test_fields_are_plain_msgpack_with_float64_times_and_extension_types() -> None:
    """Stored by one version, read by another: the session, vectors and windows are
    msgpack extension types 3, 1 and 2, never maps; times keep float64 precision."""
    fields = encode_user_fields(_heavy_user())
    watched = msgpack.unpackb(fields["watched"])
    assert watched["i1"] == 1_700_000_000.0 + 1 / 3
    kinds = {name: msgpack.unpackb(fields[name]) for name in ("session", "long_term", "windows")}
    assert {name: value.code for name, value in kinds.items()} == {
        "session": 3, "long_term": 1, "windows": 2}  # fmt: skip


def test_a_tracked_map_is_written_as_its_changes_and_reads_back_as_it_is_live() -> None:
    """Writes of a heavy user's watched map send the entries changed since it was last
    written whole (items re-watched, new ones, expired ones as removals), and a read merges
    them in order of last touch; past `_delta_limit` changes it is written whole again."""
    settings, rng = StreamSettings(watched_retention_s=3000.0), random.Random(5)
    user, stored = UserState("u1"), {}  # stored: the user's Redis hash (HSET semantics)
    sizes = []
    for batch in range(120):
        ts = 1_700_000_000.0 + batch * 30.0
        events = [Event(f"e{batch}-{k}", "u1", f"i{rng.randrange(600)}", "complete", ts + k)
                  for k in range(rng.randrange(1, 8))]  # fmt: skip
        update_user(user, events, settings, lambda _: None)
        fields = encode_user_fields(user, ["watched"])
        sizes.append(sum(len(blob) for blob in fields.values()))
        stored.update({name.encode(): blob for name, blob in fields.items()})
        back = decode_user_fields("u1", stored).watched
        assert list(back.items()) == list(user.watched.items()), f"batch {batch}"
        if batch % 40 == 39:  # a worker that reads the user back goes on from the store
            user = decode_user_fields("u1", stored)
    assert len(user.watched) > 256 and min(user.watched.values()) > 1_700_000_000.0 + 600
    assert sorted(sizes)[len(sizes) // 2] * 4 < max(sizes)  # most writes are a few entries


def test_an_untracked_map_and_a_whole_write_store_the_map_whole() -> None:
    user = _heavy_user()  # plain dicts: nothing tracks their changes
    fields = encode_user_fields(user, ["watched", "last_ts"])
    assert msgpack.unpackb(fields["watched"]) == user.watched and fields["watched+"] == b"\x80"
    stored = {name.encode(): blob for name, blob in encode_user_fields(user).items()}
    back = decode_user_fields("u1", stored)
    back.watched.touch("i5", 1_800_000_000.0)
    assert set(encode_user_fields(back, ["watched"])) == {"watched+"}
    assert set(encode_user_fields(back)) >= {"watched", "watched+", "skipped", "skipped+"}


def test_a_large_map_is_written_whole_after_sqrt_4n_changes() -> None:
    """A 2,000-entry map carries at most 89 changes (sqrt(4 x 2,000)) as a delta: past
    that, a write of it costs less on average written whole (`codec._delta_limit`)."""
    base = {f"i{k}": 1_700_000_000.0 + k for k in range(2000)}
    user = UserState("u1", watched=SeenMap(base, changed={}))
    watched = cast(SeenMap, user.watched)
    for k in range(89):  # watched again: the map keeps its size
        watched.touch(f"i{k}", 1_800_000_000.0 + k)
    assert set(encode_user_fields(user, ["watched"])) == {"watched+"}
    watched.touch("i89", 1_800_000_089.0)
    fields = encode_user_fields(user, ["watched"])
    assert set(fields) == {"watched", "watched+"} and fields["watched+"] == b"\x80"
    assert len(msgpack.unpackb(fields["watched"])) == 2000 and watched.changed == {}


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(codec)
    assert result.attempted > 0 and result.failed == 0
