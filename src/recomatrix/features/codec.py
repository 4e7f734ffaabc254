"""Compact byte layouts of online state: msgpack for users, a packed binary blob for items.

The item blob is written inside Redis by the Lua script `ITEM_COUNT_LUA` (counters are
shared by every stream worker, so they change atomically in Redis, never in Python) and
read by `decode_item`; its layout:

    header  <dd21d3i   total_engaged, last_ts, 7 totals per window (5m, 1h, 24h) in
                       FIELDS order, then the number of bucket rows of each window
    rows    <i7f       per window, oldest bucket first: bucket index, 7 amounts (float32)

Totals are float64 sums of the rows. Counts are exact (float32 holds integers up to 2^24
per bucket); watch seconds keep float32 precision per bucket. After the 16-byte prefix this
is exactly `WindowCounts`' own packed layout (`windows.PACKED_LAYOUT`), so decoding an item
is a copy, and a user's windows travel inside its msgpack map as those same bytes.
"""

from __future__ import annotations

import struct
from dataclasses import fields
from string import Template
from typing import Any

import msgpack  # type: ignore[import-untyped]  # ships no type information
import numpy as np

from recomatrix.features.state import ItemState, SessionVector, UserState
from recomatrix.features.windows import FIELDS, ROW, WINDOWS, WindowCounts
from recomatrix.features.windows import HEADER as WINDOWS_HEADER
from recomatrix.types import ItemId

# An item blob is its total engagement and last event time, then its packed windows.
_ITEM_PREFIX = struct.Struct("<dd")
HEADER = struct.Struct("<dd" + WINDOWS_HEADER.format.lstrip("<"))

# msgpack extension codes for the few non-JSON values a user state holds.
_EXT_ARRAY, _EXT_WINDOWS, _EXT_SESSION = 1, 2, 3
_USER_FIELDS = frozenset(f.name for f in fields(UserState))


# Adds item counts atomically, skipping events the item has already counted.
# KEYS: item blob, counted-events set. ARGV: item TTL (ms), claim TTL (s), then five values
# per count: event id, field index, ts, amount, amount added to total_engaged.
ITEM_COUNT_LUA = Template("""
local NF, NW = $fields, $windows
local WIDTH, SPAN = {$widths}, {$spans}
local HEADER, ROW = '$header', '$row'
local HEADER_SIZE, ROW_SIZE = $header_size, $row_size
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
local total, last, rings = 0, 0, {}
for w = 1, NW do rings[w] = {} end
local blob = redis.call('GET', KEYS[1])
if blob then
  local h = {struct.unpack(HEADER, blob)}
  total, last = h[1], h[2]
  local pos = HEADER_SIZE + 1
  for w = 1, NW do
    for i = 1, h[2 + NF * NW + w] do
      local row = {struct.unpack(ROW, blob, pos)}
      row[NF + 2] = nil  -- struct.unpack also returns the next position
      rings[w][i] = row
      pos = pos + ROW_SIZE
    end
  end
end
local decided, changed = {}, false
for a = 3, #ARGV, 5 do
  local id = ARGV[a]
  if decided[id] == nil then
    decided[id] = redis.call('ZADD', KEYS[2], 'NX', now, id) == 1
  end
  if decided[id] then
    changed = true
    local field, ts = tonumber(ARGV[a + 1]) + 2, tonumber(ARGV[a + 2])
    local amount = tonumber(ARGV[a + 3])
    total = total + tonumber(ARGV[a + 4])
    if ts > last then last = ts end
    for w = 1, NW do
      local ring, bucket = rings[w], math.floor(ts / WIDTH[w])
      local i = #ring
      while i > 0 and ring[i][1] > bucket do i = i - 1 end
      if i == 0 or ring[i][1] ~= bucket then
        local row = {bucket}
        for f = 2, NF + 1 do row[f] = 0 end
        i = i + 1
        table.insert(ring, i, row)
      end
      ring[i][field] = ring[i][field] + amount
    end
  end
end
if not changed then return 0 end
-- Drop buckets that left their window; totals are sums of the rows as stored (float32).
local header, parts, counts = {total, last}, {}, {}
for w = 1, NW do
  local ring, sums, kept = rings[w], {}, 0
  local floor = ring[#ring][1] - SPAN[w]
  for f = 1, NF do sums[f] = 0 end
  for _, row in ipairs(ring) do
    if row[1] > floor then
      local bytes = struct.pack(ROW, unpack(row))
      local stored = {struct.unpack(ROW, bytes)}
      for f = 1, NF do sums[f] = sums[f] + stored[f + 1] end
      parts[#parts + 1] = bytes
      kept = kept + 1
    end
  end
  for f = 1, NF do header[#header + 1] = sums[f] end
  counts[w] = kept
end
for w = 1, NW do header[#header + 1] = counts[w] end
local packed = struct.pack(HEADER, unpack(header)) .. table.concat(parts)
redis.call('SET', KEYS[1], packed, 'PX', ARGV[1])
redis.call('PEXPIRE', KEYS[2], math.floor(tonumber(ARGV[2]) * 1000))
return 1
""").substitute(
    fields=len(FIELDS),
    windows=len(WINDOWS),
    widths=", ".join(str(w.bucket) for w in WINDOWS),
    spans=", ".join(str(w.n_buckets) for w in WINDOWS),
    header="<dd" + "d" * len(FIELDS) * len(WINDOWS) + "i4" * len(WINDOWS),
    row="<i4" + "f" * len(FIELDS),
    header_size=HEADER.size,
    row_size=ROW.size,
)


def decode_item(item_id: ItemId, blob: bytes) -> ItemState:
    """The `ItemState` held in a packed item blob."""
    total_engaged, last_ts = _ITEM_PREFIX.unpack_from(blob, 0)
    windows = WindowCounts(memoryview(blob)[_ITEM_PREFIX.size :])
    return ItemState(item_id, windows, total_engaged, last_ts)


def encode_user(state: UserState) -> bytes:
    """A user state as msgpack: a map of field name to value, so new fields stay readable."""
    values = {name: getattr(state, name) for name in _USER_FIELDS}
    packed: bytes = msgpack.packb(values, default=_to_ext)
    return packed


def decode_user(blob: bytes) -> UserState:
    """The inverse of `encode_user`; fields the stored blob lacks take their defaults."""
    values = msgpack.unpackb(blob, ext_hook=_from_ext, strict_map_key=False)
    return UserState(**{k: v for k, v in values.items() if k in _USER_FIELDS})


def _to_ext(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        payload = [value.dtype.str, list(value.shape), value.tobytes()]
        return msgpack.ExtType(_EXT_ARRAY, msgpack.packb(payload))
    if isinstance(value, WindowCounts):
        return msgpack.ExtType(_EXT_WINDOWS, value.to_bytes())
    if isinstance(value, SessionVector):
        payload = [value.vector, value.ts]
        return msgpack.ExtType(_EXT_SESSION, msgpack.packb(payload, default=_to_ext))
    if isinstance(value, np.generic):
        return value.item()  # msgpack packs the equivalent Python scalar
    raise TypeError(f"cannot store a {type(value).__name__} in the online store")


def _from_ext(code: int, data: bytes) -> Any:
    if code == _EXT_ARRAY:
        dtype, shape, raw = msgpack.unpackb(data)
        return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape)
    if code == _EXT_WINDOWS:
        return WindowCounts(data)
    if code == _EXT_SESSION:
        vector, ts = msgpack.unpackb(data, ext_hook=_from_ext)
        return SessionVector(vector, ts)
    return msgpack.ExtType(code, data)
