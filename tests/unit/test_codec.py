"""The msgpack layout of stored user fields: what one version writes, any msgpack reader reads."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]  # ships no type information
import numpy as np

from recomatrix.features.codec import decode_user_fields, encode_user_fields
from recomatrix.features.state import SessionVector, UserState
from recomatrix.features.windows import WindowCounts


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


def test_fields_are_plain_msgpack_with_float64_times_and_extension_types() -> None:
    """Stored by one version, read by another: the session, vectors and windows are
    msgpack extension types 3, 1 and 2, never maps; times keep float64 precision."""
    fields = encode_user_fields(_heavy_user())
    watched = msgpack.unpackb(fields["watched"])
    assert watched["i1"] == 1_700_000_000.0 + 1 / 3
    kinds = {name: msgpack.unpackb(fields[name]) for name in ("session", "long_term", "windows")}
    assert {name: value.code for name, value in kinds.items()} == {
        "session": 3, "long_term": 1, "windows": 2}  # fmt: skip
