"""The Lua scripts of the Redis online store (`features.redis`): item counters change only
inside Redis, atomically per item; a batch's users are put with their applied events.

The item blob layout they write is `codec`'s (`decode_item` reads it).
"""

from __future__ import annotations

from string import Template

from recomatrix.features.codec import HEADER
from recomatrix.features.windows import FIELDS, ROW, WINDOWS

# Adds counts to a few items, each atomically and all or nothing: if any of an item's
# event ids is in the counted-events sets looked in for it, that item is left unchanged and
# answers those ids (the caller sends the rest again); otherwise its ids are recorded and
# its counts added. Only the rows the counts land in and the rows that left their window
# are decoded; the other rows are copied as bytes. KEYS: the S counted-events sets the
# call reads or writes, then per item its blob. The sets are shared by the call's items
# (one check per set for all their ids: a Redis call from Lua costs about a microsecond),
# so ids must name their item where a call has several. Each id belongs to a group (the
# ids of one 10 s of event time, `features/markers.py`): the set it is recorded in, that
# set's expiry (unix ms) and the sets it is looked for in. ARGV: item TTL (ms), S, then
# msgpack of [groups, items]: per group [set index, expiry, [set indices]]; per item:
# amount added to total_engaged, newest event time, ids, a flat list of (field index,
# event time, amount) per count, and each id's group. Answers, per item, the ids counted
# before.
ITEM_COUNT_LUA = Template("""
local NF, NW = $fields, $windows
local WIDTH, SPAN = {$widths}, {$spans}
local HEADER, ROW = '$header', '$row'
local HEADER_SIZE, ROW_SIZE = $header_size, $row_size
local CHUNK = 2000  -- arguments per variadic call, well under Lua's stack limit
local TTL, SETS = ARGV[1], tonumber(ARGV[2])
-- An update in place pushes the expiry back only when it moves the item's newest event
-- time into a new tenth of the TTL, or not forward at all (see `add_in_place`).
local REFRESH_S = tonumber(TTL) / 10000
local call, pack, unpack_struct, mfloor = redis.call, struct.pack, struct.unpack, math.floor

-- A float32 sum: what the row stores. Whole sums below 2^24 are float32 already (counts),
-- so only fractional ones (watch seconds) are rounded, through struct.
local function f32(x)
  if x % 1 == 0 and x < 16777216 and x > -16777216 then return x end
  return (unpack_struct('<f', pack('<f', x)))
end

-- Marks in `counted` the ids of `ids` that the set holds.
local function look_up(set, ids, counted)
  for s = 1, #ids, CHUNK do
    local chunk = {unpack(ids, s, math.min(#ids, s + CHUNK - 1))}
    for i, hit in ipairs(call('SMISMEMBER', set, unpack(chunk))) do
      if hit == 1 then counted[chunk[i]] = true end
    end
  end
end

-- group -> list of ids, from per-item id lists and their parallel group lists
local function by_group(lists)
  local grouped = {}
  for _, pair in ipairs(lists) do
    local ids, groups = pair[1], pair[2]
    for j, id in ipairs(ids) do
      local g = groups[j]
      local list = grouped[g]
      if not list then list = {}; grouped[g] = list end
      list[#list + 1] = id
    end
  end
  return grouped
end

-- window -> bucket -> row index of the field -> amount
local function by_bucket(values)
  local adds = {}
  for w = 1, NW do adds[w] = {} end
  for a = 1, #values, 3 do
    local field, ts, amount = values[a] + 2, values[a + 1], values[a + 2]
    for w = 1, NW do
      local bucket = mfloor(ts / WIDTH[w])
      local row = adds[w][bucket] or {}
      row[field] = (row[field] or 0) + amount
      adds[w][bucket] = row
    end
  end
  return adds
end

local function unpack_row(blob, at)
  local row = {unpack_struct(ROW, blob, at)}
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
-- only the header and those rows change, written back in place (SETRANGE). Rewriting the
-- whole ~3 KB blob cost more: Redis's Lua hashes every byte of every string it makes (the
-- blob's pieces, the blob written), about 4 cycles a byte. The blob is still read whole:
-- one GET cost less than a GETRANGE per row (bench/item_count_script.py: 34-38 us of Redis
-- an item, against 42-45 with GETRANGEs and 46-51 rewriting it). `h`: the header, its
-- total and newest time already updated. False when the counts need the general merge
-- below (nothing written, `h` unchanged). The expiry is pushed back only when the newest
-- event time enters a new tenth of the TTL or does not move forward (`last`: the newest
-- time before): a live item opens a new 10 s row, a SET with the TTL, every 10 s anyway,
-- and one PEXPIRE per update was a tenth of the script's time.
local function add_in_place(key, blob, h, adds, last)
  local rows, at = {}, HEADER_SIZE
  for w = 1, NW do
    local n, only = h[2 + NF * NW + w], next(adds[w])
    at = at + n * ROW_SIZE
    if n == 0 or next(adds[w], only) ~= nil then return false end
    local row = unpack_row(blob, at - ROW_SIZE + 1)
    if row[1] ~= only then return false end
    rows[w] = {at - ROW_SIZE, row}
  end
  for w = 1, NW do
    local offset, row = rows[w][1], rows[w][2]
    add_to_row(row, adds[w][row[1]], h, w)
    call('SETRANGE', key, offset, pack(ROW, unpack(row)))
  end
  call('SETRANGE', key, 0, pack(HEADER, unpack(h)))
  if h[2] <= last or mfloor(h[2] / REFRESH_S) ~= mfloor(last / REFRESH_S) then
    call('PEXPIRE', key, TTL)
  end
  return true
end

local function add_counts(key, engaged, newest, values)
  local blob = call('GET', key) or ''
  local h = {0, 0}
  if blob ~= '' then
    h = {unpack_struct(HEADER, blob)}
    h[#h] = nil
  else
    for i = 1, NF * NW + NW do h[2 + i] = 0 end
  end
  local last = h[2]
  h[1] = h[1] + engaged
  h[2] = math.max(last, newest)
  local adds = by_bucket(values)
  if blob ~= '' and add_in_place(key, blob, h, adds, last) then return end
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

local call_data = cmsgpack.unpack(ARGV[3])
local groups, items = call_data[1], call_data[2]
local all = {}
for i, item in ipairs(items) do all[i] = {item[3], item[5]} end
local seen = {}
for g, ids in pairs(by_group(all)) do
  for _, s in ipairs(groups[g][3]) do look_up(KEYS[s], ids, seen) end
end
-- An item whose counting fails (a corrupt blob, a key of another type) is left unchanged
-- and its ids unrecorded; the others' ids are recorded with their counts, then the call
-- fails (a script's writes are not rolled back): a retry counts only what is missing.
local answers, fresh, failed = {}, {}, nil
for i, item in ipairs(items) do
  local counted = {}
  for _, id in ipairs(item[3]) do
    if seen[id] then counted[#counted + 1] = id end
  end
  if #counted == 0 then
    local ok, err = pcall(add_counts, KEYS[SETS + i], item[1], item[2], item[4])
    if ok then
      fresh[#fresh + 1] = {item[3], item[5]}
    else
      if type(err) == 'table' then err = err.err end
      failed = failed or (KEYS[SETS + i] .. ': ' .. tostring(err))
    end
  end
  answers[i] = counted
end
for g, ids in pairs(by_group(fresh)) do
  local set = KEYS[groups[g][1]]
  for s = 1, #ids, CHUNK do
    call('SADD', set, unpack(ids, s, math.min(#ids, s + CHUNK - 1)))
  end
  call('PEXPIREAT', set, string.format('%d', groups[g][2]))
end
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


# The hash field stamping a user write: which store wrote it, and which of its writes
# (`RedisOnlineStore.unchanged_since_written`). Not a `UserState` field: readers skip it.
STAMP_FIELD = "stamp"

# Puts user state fields and records their batch's applied events, in one atomic script.
# KEYS: user keys, then marker sets, then f lease keys (the fence). ARGV: user TTL (ms),
# number of users n, f, the fence's holder, then per user: the number of values m, 1 if
# they are all its fields (else 0), the stamp the writer expects the hash to hold ('' for
# none), m values (field, value pairs, the new stamp among them); then per marker set:
# its expiry (unix ms), the number of ids, the ids.
# A lease not held by the holder fails the script before it writes anything (FENCED).
# Some fields of a user whose hash is gone (evicted, deleted) would leave a hash of just
# those: then it writes nothing and answers those users' positions (1-based), for the
# caller to send them whole. Some fields of a user whose hash holds another stamp than
# expected (written by someone else since) are written, but the answer is 'stale' and
# those users' positions: the writer's copy is not what the hash holds now. Otherwise it
# answers n.
PUT_USERS_LUA = Template("""
local n, f, first = tonumber(ARGV[2]), tonumber(ARGV[3]), 5
for k = #KEYS - f + 1, #KEYS do
  if redis.call('GET', KEYS[k]) ~= ARGV[4] then
    return redis.error_reply('FENCED ' .. KEYS[k] .. ' is not held by ' .. ARGV[4])
  end
end
local missing, a = {}, first
for i = 1, n do
  if ARGV[a + 1] == '0' and redis.call('EXISTS', KEYS[i]) == 0 then
    missing[#missing + 1] = i
  end
  a = a + tonumber(ARGV[a]) + 3
end
if #missing > 0 then return missing end
local stale, a = {'stale'}, first
for i = 1, n do
  local count, expected = tonumber(ARGV[a]), ARGV[a + 2]
  if ARGV[a + 1] == '0' and expected ~= ''
      and redis.call('HGET', KEYS[i], '$stamp') ~= expected then
    stale[#stale + 1] = i
  end
  redis.call('HSET', KEYS[i], unpack(ARGV, a + 3, a + count + 2))
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
  a = a + count + 3
end
for k = n + 1, #KEYS - f do
  local expire_at, count = ARGV[a], tonumber(ARGV[a + 1])
  for s = a + 2, a + count + 1, 2000 do
    redis.call('SADD', KEYS[k], unpack(ARGV, s, math.min(a + count + 1, s + 1999)))
  end
  redis.call('PEXPIREAT', KEYS[k], expire_at)
  a = a + count + 2
end
if #stale > 1 then return stale end
return n
""").substitute(stamp=STAMP_FIELD)
