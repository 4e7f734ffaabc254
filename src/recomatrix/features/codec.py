"""Compact byte layouts of online state: msgpack per user field, a packed binary blob for items.

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
from collections.abc import Collection, Mapping
from dataclasses import fields
from string import Template
from typing import Any

import msgspec
import numpy as np

from recomatrix.features.state import ItemState, SeenMap, SessionVector, UserState
from recomatrix.features.windows import FIELDS, ROW, WINDOWS, WindowCounts
from recomatrix.features.windows import HEADER as WINDOWS_HEADER
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
SEEN_DELTA_MIN = 64  # changes a map may carry before it is written whole again
_EMPTY_MAP = b"\x80"  # msgpack {}


# Adds counts to a few items, each atomically and all or nothing: if any of an item's
# event ids is in one of the call's counted-events sets, that item is left unchanged and
# answers those ids (the caller sends the rest again); otherwise its ids are recorded and
# its counts added. Only the rows the counts land in and the rows that left their window
# are decoded; the other rows are copied as bytes. KEYS: the S counted-events sets still
# alive, the current one (which takes the ids) first, then per item its blob. The sets
# are shared by the call's items (one check per set for all their ids: a Redis call from
# Lua costs about a microsecond), so ids must name their item where a call has several.
# ARGV: item TTL (ms), the current set's expiry (unix ms), S, then msgpack of a list with,
# per item: amount added to total_engaged, newest event time, ids, and a flat list of
# (field index, event time, amount) per count. Answers, per item, the ids counted before.
ITEM_COUNT_LUA = Template("""
local NF, NW = $fields, $windows
local WIDTH, SPAN = {$widths}, {$spans}
local HEADER, ROW = '$header', '$row'
local HEADER_SIZE, ROW_SIZE = $header_size, $row_size
local CHUNK = 2000  -- arguments per variadic call, well under Lua's stack limit
local TTL, EXPIRE_AT, SETS = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function f32(x) return (struct.unpack('<f', struct.pack('<f', x))) end

local function already_counted(sets, ids)
  local counted = {}
  for s = 1, #ids, CHUNK do
    local chunk = {unpack(ids, s, math.min(#ids, s + CHUNK - 1))}
    for _, set in ipairs(sets) do
      for i, hit in ipairs(redis.call('SMISMEMBER', set, unpack(chunk))) do
        if hit == 1 then counted[chunk[i]] = true end
      end
    end
  end
  return counted
end

-- window -> bucket -> row index of the field -> amount
local function by_bucket(values)
  local adds = {}
  for w = 1, NW do adds[w] = {} end
  for a = 1, #values, 3 do
    local field, ts, amount = values[a] + 2, values[a + 1], values[a + 2]
    for w = 1, NW do
      local bucket = math.floor(ts / WIDTH[w])
      local row = adds[w][bucket] or {}
      row[field] = (row[field] or 0) + amount
      adds[w][bucket] = row
    end
  end
  return adds
end

local function unpack_row(blob, at)
  local row = {struct.unpack(ROW, blob, at)}
  row[NF + 2] = nil  -- struct.unpack also returns the next position
  return row
end

-- Adds a bucket's amounts (row index -> amount) to a row of window w; the header's totals
-- follow the float32 values stored.
local function add_to_row(row, amounts, h, w)
  local total = 2 + (w - 1) * NF
  for f, amount in pairs(amounts) do
    local old = row[f]
    row[f] = f32(old + amount)
    h[total + f - 1] = h[total + f - 1] + row[f] - old
  end
end

-- The usual case under load: each window's counts all land in its newest stored row. No
-- row is added, so none leaves its window either (that depends on the newest row only):
-- only the header and those rows change, read and written in place (GETRANGE, SETRANGE).
-- Reading and writing the whole ~3 KB blob cost more: Redis's Lua hashes every byte of
-- every string it makes (the blob read, its pieces, the one written), about 4 cycles a
-- byte. False when the counts need the general merge below (nothing written).
local function add_in_place(key, engaged, newest, adds)
  local head = redis.call('GETRANGE', key, 0, HEADER_SIZE - 1)
  if #head < HEADER_SIZE then return false end
  local h = {struct.unpack(HEADER, head)}
  h[#h] = nil
  local rows, at = {}, HEADER_SIZE
  for w = 1, NW do
    local n, only = h[2 + NF * NW + w], next(adds[w])
    at = at + n * ROW_SIZE
    if n == 0 or next(adds[w], only) ~= nil then return false end
    local row = {struct.unpack(ROW, redis.call('GETRANGE', key, at - ROW_SIZE, at - 1))}
    row[NF + 2] = nil
    if row[1] ~= only then return false end
    rows[w] = {at - ROW_SIZE, row}
  end
  h[1] = h[1] + engaged
  h[2] = math.max(h[2], newest)
  for w = 1, NW do
    local offset, row = rows[w][1], rows[w][2]
    add_to_row(row, adds[w][row[1]], h, w)
    redis.call('SETRANGE', key, offset, struct.pack(ROW, unpack(row)))
  end
  redis.call('SETRANGE', key, 0, struct.pack(HEADER, unpack(h)))
  redis.call('PEXPIRE', key, TTL)
  return true
end

local function add_counts(key, engaged, newest, values)
  local adds = by_bucket(values)
  if add_in_place(key, engaged, newest, adds) then return end
  local blob = redis.call('GET', key) or ''
  local h = {0, 0}
  if blob ~= '' then
    h = {struct.unpack(HEADER, blob)}
    h[#h] = nil
  else
    for i = 1, NF * NW + NW do h[2 + i] = 0 end
  end
  h[1] = h[1] + engaged
  h[2] = math.max(h[2], newest)
  local parts, at = {}, HEADER_SIZE + 1
  for w = 1, NW do
    local n, total = h[2 + NF * NW + w], 2 + (w - 1) * NF
    local first, cut = at, at + n * ROW_SIZE
    at = cut
    local buckets = {}
    for bucket in pairs(adds[w]) do buckets[#buckets + 1] = bucket end
    table.sort(buckets)
    -- Decode the stored rows at or after the oldest bucket counted into (the last few).
    local tail = {}
    while cut > first and struct.unpack('<i4', blob, cut - ROW_SIZE) >= buckets[1] do
      cut = cut - ROW_SIZE
      table.insert(tail, 1, unpack_row(blob, cut))
    end
    -- Merge the counts into them, bucket order.
    local rows, t = {}, 1
    for _, bucket in ipairs(buckets) do
      while t <= #tail and tail[t][1] < bucket do rows[#rows + 1] = tail[t]; t = t + 1 end
      local row = tail[t]
      if row and row[1] == bucket then t = t + 1 else
        row = {bucket}
        for f = 2, NF + 1 do row[f] = 0 end
      end
      add_to_row(row, adds[w][bucket], h, w)
      rows[#rows + 1] = row
    end
    while t <= #tail do rows[#rows + 1] = tail[t]; t = t + 1 end
    -- Drop rows that left the window: the oldest stored ones, or counts that came too late.
    local floor = rows[#rows][1] - SPAN[w]
    local function drop(row)
      for f = 2, NF + 1 do h[total + f - 1] = h[total + f - 1] - row[f] end
    end
    n = n - #tail
    while first < cut and struct.unpack('<i4', blob, first) <= floor do
      drop(unpack_row(blob, first))
      first, n = first + ROW_SIZE, n - 1
    end
    parts[#parts + 1] = string.sub(blob, first, cut - 1)
    for _, row in ipairs(rows) do
      if row[1] > floor then
        parts[#parts + 1] = struct.pack(ROW, unpack(row))
        n = n + 1
      else
        drop(row)
      end
    end
    h[2 + NF * NW + w] = n
  end
  redis.call('SET', key, struct.pack(HEADER, unpack(h)) .. table.concat(parts), 'PX', TTL)
end

local items, sets = cmsgpack.unpack(ARGV[4]), {unpack(KEYS, 1, SETS)}
local ids = {}
for _, item in ipairs(items) do
  for _, id in ipairs(item[3]) do ids[#ids + 1] = id end
end
-- An item whose counting fails (a corrupt blob, a key of another type) is left unchanged
-- and its ids unrecorded; the others' ids are recorded with their counts, then the call
-- fails (a script's writes are not rolled back): a retry counts only what is missing.
local seen, answers, fresh, failed = already_counted(sets, ids), {}, {}, nil
for i, item in ipairs(items) do
  local counted = {}
  for _, id in ipairs(item[3]) do
    if seen[id] then counted[#counted + 1] = id end
  end
  if #counted == 0 then
    local ok, err = pcall(add_counts, KEYS[SETS + i], item[1], item[2], item[4])
    if ok then
      for _, id in ipairs(item[3]) do fresh[#fresh + 1] = id end
    else
      if type(err) == 'table' then err = err.err end
      failed = failed or (KEYS[SETS + i] .. ': ' .. tostring(err))
    end
  end
  answers[i] = counted
end
for s = 1, #fresh, CHUNK do
  redis.call('SADD', sets[1], unpack(fresh, s, math.min(#fresh, s + CHUNK - 1)))
end
if #fresh > 0 then redis.call('PEXPIREAT', sets[1], EXPIRE_AT) end
if failed then return redis.error_reply('ITEM COUNT FAILED ' .. failed) end
return answers
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


def encode_user_fields(state: UserState, names: Collection[str] | None = None) -> dict[str, bytes]:
    """A user state's fields (all of them, or `names`), each as its own msgpack value: the
    Redis tier stores a user as a hash of these, so a write sends only what changed.

    A watched or skipped map is a base value (`watched`) and the entries changed since it
    was written (`watched+`, item -> time or nil for removed, in order): a map that tracks
    its changes (`SeenMap.changed`) writes only those, until they pass an eighth of it (at
    least `SEEN_DELTA_MIN`); then, or for all fields, it is written whole with an empty
    delta, and tracks the changes since. An encoded state must be stored or discarded."""
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
    if not whole and changed is not None and len(changed) <= max(SEEN_DELTA_MIN, len(seen) // 8):
        return {name + "+": _pack(changed)}
    if isinstance(seen, SeenMap):
        seen.changed = {}
    return {name: _pack(seen), name + "+": _EMPTY_MAP}


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
