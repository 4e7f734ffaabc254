"""Compact byte layouts of online state: msgpack per user field, a packed binary blob for items.

The item blob is written inside Redis by the Lua script `redis_lua.ITEM_COUNT_LUA`
(counters are shared by every stream worker, so they change atomically in Redis, never in
Python) and read by `decode_item`; its layout:

    header  <dd21d3i   total_engaged, last_ts, 7 totals per window (5m, 1h, 24h) in
                       FIELDS order, then the number of bucket rows of each window
    rows    <i7f       per window, oldest bucket first: bucket index, 7 amounts (float32)

Totals are float64 sums of the rows. Counts are exact (float32 holds integers up to 2^24
per bucket); watch seconds keep float32 precision per bucket. After the 16-byte prefix this
is exactly `WindowCounts`' own packed layout (`windows.PACKED_LAYOUT`), so decoding an item
is a copy, and a user's windows travel inside its msgpack map as those same bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Mapping
from dataclasses import fields
from typing import Any

import msgspec
import numpy as np

from recomatrix.features.state import ItemState, SeenMap, SessionVector, UserState
from recomatrix.features.windows import HEADER as WINDOWS_HEADER
from recomatrix.features.windows import WindowCounts
from recomatrix.types import ItemId, UserId

# An item blob is its total engagement and last event time, then its packed windows.
_ITEM_PREFIX = struct.Struct("<dd")
HEADER = struct.Struct("<dd" + WINDOWS_HEADER.format.lstrip("<"))

# msgpack extension codes for the few non-JSON values a user state holds.
_EXT_ARRAY, _EXT_WINDOWS, _EXT_SESSION = 1, 2, 3
# What a stored user holds: every `UserState` field but its id (the key names the user).
USER_FIELDS = frozenset(f.name for f in fields(UserState)) - {"user_id"}
# Maps stored as a base and the changes since (`encode_user_fields`).
SEEN_FIELDS = frozenset({"watched", "skipped"})
SEEN_DELTA_MIN = 64  # changes a map may carry before it is written whole again, at least
_EMPTY_MAP = b"\x80"  # msgpack {}


def decode_item(item_id: ItemId, blob: bytes) -> ItemState:
    """The `ItemState` held in a packed item blob."""
    total_engaged, last_ts = _ITEM_PREFIX.unpack_from(blob, 0)
    windows = WindowCounts(memoryview(blob)[_ITEM_PREFIX.size :])
    return ItemState(item_id, windows, total_engaged, last_ts)


def encode_user_fields(state: UserState, names: Collection[str] | None = None) -> dict[str, bytes]:
    """A user state's fields (all of them, or `names`), each as its own msgpack value: the
    Redis tier stores a user as a hash of these, so a write sends only what changed.

    A watched or skipped map is a base value (`watched`) and the entries changed since it
    was written (`watched+`, item -> time or nil for removed, in order): a map that tracks
    its changes (`SeenMap.changed`) writes only those, until they pass `_delta_limit` of
    its size; then, or for all fields, it is written whole with an empty delta, and tracks
    the changes since. An encoded state must be stored or discarded."""
    whole = names is None
    if names is None:
        names = USER_FIELDS
    elif not USER_FIELDS.issuperset(names):
        unknown = sorted(set(names) - USER_FIELDS)
        raise ValueError(f"unknown user state fields {unknown}; use some of {sorted(USER_FIELDS)}")
    fields = {}
    for name in names:
        value = getattr(state, name)
        if name in SEEN_FIELDS:
            fields.update(_encode_seen(name, value, whole))
        else:
            fields[name] = _pack(value)
    return fields


def decode_user_fields(user_id: UserId, stored: Mapping[bytes, bytes]) -> UserState:
    """The inverse of `encode_user_fields`; fields not stored take their defaults, and
    fields this version does not know are ignored."""
    values: dict[str, Any] = {}
    deltas: dict[str, dict[ItemId, float | None]] = {}
    for key, blob in stored.items():
        name = key.decode()
        if name in USER_FIELDS:
            values[name] = _DECODER.decode(blob)
        elif name.endswith("+") and name[:-1] in SEEN_FIELDS:
            deltas[name[:-1]] = _DECODER.decode(blob)
    for name in SEEN_FIELDS:
        delta = deltas.get(name) or {}
        seen = SeenMap(values.get(name) or {}, changed=delta)  # decoded here: ours alone
        for item_id, ts in delta.items():  # later touches go last, as they did live
            seen.pop(item_id, None)
            if ts is not None:
                seen[item_id] = ts
        values[name] = seen
    return UserState(user_id, **values)


def _encode_seen(name: str, seen: dict[ItemId, float], whole: bool) -> dict[str, bytes]:
    """A watched / skipped map as its changes since its base, or whole (see above)."""
    changed = seen.changed if isinstance(seen, SeenMap) else None
    if not whole and changed is not None and len(changed) <= _delta_limit(len(seen)):
        return {name + "+": _pack(changed)}
    if isinstance(seen, SeenMap):
        seen.changed = {}
    return {name: _pack(seen), name + "+": _EMPTY_MAP}


def _delta_limit(size: int) -> int:
    """How many changes a map of `size` entries carries before it is written whole again.

    Each write of a map sends its delta, which grows by the c entries a write changes, so
    it averages T/2 entries with a limit T; every T/c writes the whole map goes too. Per
    write that is T/2 + size x c / T entries, least at T = sqrt(2 x size x c). c is about
    2 for a user sending 50 events/s, written every 0.25 s (a sixth of events are
    completes, a sixth skips), so T = sqrt(4 x size): 89 for 2,000 entries, where an
    eighth of the map (250, until stop 24) wrote ~60 % more entries per write.

    >>> _delta_limit(100), _delta_limit(2000)
    (64, 89)
    """
    return max(SEEN_DELTA_MIN, math.isqrt(4 * size))


def _pack(value: Any) -> bytes:
    """msgpack with our extension types. msgspec's encoder writes the same bytes as
    msgpack's packer (float64 floats, smallest ints) about three times as fast on a heavy
    user's watched map, and encoders are safe to share between threads."""
    if isinstance(value, SessionVector):  # a dataclass: msgspec would write it as a map
        value = _to_ext(value)
    return _ENCODER.encode(value)


def _to_ext(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        payload = [value.dtype.str, list(value.shape), value.tobytes()]
        return msgspec.msgpack.Ext(_EXT_ARRAY, _pack(payload))
    if isinstance(value, WindowCounts):
        return msgspec.msgpack.Ext(_EXT_WINDOWS, value.to_bytes())
    if isinstance(value, SessionVector):
        payload = [value.vector, value.ts]
        return msgspec.msgpack.Ext(_EXT_SESSION, _pack(payload))
    if isinstance(value, np.generic):
        return value.item()  # msgpack packs the equivalent Python scalar
    raise TypeError(f"cannot store a {type(value).__name__} in the online store")


_ENCODER = msgspec.msgpack.Encoder(enc_hook=_to_ext)


def _from_ext(code: int, data: memoryview) -> Any:
    if code == _EXT_ARRAY:
        dtype, shape, raw = _DECODER.decode(data)
        return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape)
    if code == _EXT_WINDOWS:
        return WindowCounts(data)  # copies
    if code == _EXT_SESSION:
        vector, ts = _DECODER.decode(data)
        return SessionVector(vector, ts)
    return msgspec.msgpack.Ext(code, bytes(data))


# Decodes what `_ENCODER` wrote (and what msgpack's packer wrote before it). msgspec reads
# a heavy user's watched map (800 entries) in ~2/3 of the time msgpack takes.
_DECODER = msgspec.msgpack.Decoder(ext_hook=_from_ext)
