"""The Lua scripts of the Redis Streams bus (`events.redis`).

A partition is a stream `rx:events:<p>` whose entries each hold a batch of events (fields
`n`: how many, `e`: a JSON array of them), and a hash `{rx:events:<p>}:counts` in the
same Redis Cluster slot: `total`, events in the stream; `g:<group>`, events the group has
not acknowledged. Counting events, not entries, keeps `lag` and the backlog bound in
events while an entry carries a whole publish (one XADD per partition instead of one per
event: a fifth of the Redis time and of the consumers' parsing per event). A group's
events acknowledged in an entry not yet wholly acknowledged wait in the hash
`{rx:events:<p>}:acked:<group>` (entry id -> their indices); the entry is XACKed once all
of its events are.
"""

from __future__ import annotations

# Appends every entry or none: refuses the call when a partition would then hold more than
# ARGV[1] events some group has not acknowledged, and trims what every group has
# acknowledged (counting the events trimmed). KEYS: per partition its stream, then its
# counts hash. ARGV: max backlog, then per partition: m entries, then m x (n events, payload).
PUBLISH_LUA = """
local function before(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, bm = tonumber(am), tonumber(bm)
  return am < bm or (am == bm and tonumber(as) < tonumber(bs))
end
-- Where what every group acknowledged ends: {id, true} up to and with id, {id, false}
-- up to id but not it; the earlier of two.
local function earlier(a, b)
  if a[1] == b[1] then return b[2] and not a[2] end
  return before(a[1], b[1])
end
local CHUNK = 100  -- entries trimmed per call at most (each up to 128 events, read into Lua);
-- the rest go with the next publishes
local function trim(stream, counts, upto)
  local last = upto[2] and upto[1] or ('(' .. upto[1])
  if last == '(0-0' then return end
  local entries = redis.call('XRANGE', stream, '-', last, 'COUNT', CHUNK)
  if #entries == 0 then return end
  local gone, ids = 0, {}
  for _, entry in ipairs(entries) do
    ids[#ids + 1] = entry[1]
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'n' then gone = gone + tonumber(fields[i + 1]) end
    end
  end
  redis.call('XDEL', stream, unpack(ids))
  if gone > 0 then redis.call('HINCRBY', counts, 'total', -gone) end
end
local max, a, plans, added_all = tonumber(ARGV[1]), 2, {}, 0
for k = 1, #KEYS, 2 do
  local stream, counts = KEYS[k], KEYS[k + 1]
  local entries, added = {}, 0
  for _ = 1, tonumber(ARGV[a]) do
    entries[#entries + 1] = {ARGV[a + 1], ARGV[a + 2]}
    added = added + tonumber(ARGV[a + 1])
    a = a + 2
  end
  a = a + 1
  local groups, names, acked = {}, {}, nil
  if redis.call('EXISTS', stream) == 1 then groups = redis.call('XINFO', 'GROUPS', stream) end
  local waiting = #groups > 0 and 0 or tonumber(redis.call('HGET', counts, 'total') or '0')
  for _, g in ipairs(groups) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    local upto = {info['last-delivered-id'], true}
    if info['pending'] > 0 then upto = {redis.call('XPENDING', stream, info['name'])[2], false} end
    if acked == nil or earlier(upto, acked) then acked = upto end
    local unacked = redis.call('HGET', counts, 'g:' .. info['name'])
    if unacked then
      waiting = math.max(waiting, tonumber(unacked))
      names[#names + 1] = info['name']
    else  -- a group made elsewhere, uncounted: its entries stand for events
      local length = redis.call('XLEN', stream)
      waiting = math.max(waiting, (info['lag'] or length) + info['pending'])
    end
  end
  if waiting + added > max then
    return redis.error_reply('OVERFLOW ' .. stream .. ' holds ' .. waiting ..
      ' unacknowledged events; at most ' .. max .. ' may wait: retry later')
  end
  plans[#plans + 1] = {stream, counts, entries, added, names, acked}
  added_all = added_all + added
end
for _, plan in ipairs(plans) do
  local stream, counts, entries, added, names, acked = unpack(plan)
  if acked ~= nil then trim(stream, counts, acked) end
  for _, entry in ipairs(entries) do
    redis.call('XADD', stream, '*', 'n', entry[1], 'e', entry[2])
  end
  redis.call('HINCRBY', counts, 'total', added)
  for _, name in ipairs(names) do redis.call('HINCRBY', counts, 'g:' .. name, added) end
end
return added_all
"""

# Acknowledges events of one partition for a group: an entry is XACKed once all its events
# are, and only events not acknowledged before lower the group's count. KEYS: stream, counts
# hash, the group's acked hash. ARGV: group, then per entry: id, n (its events), k, k indices.
ACK_LUA = """
local stream, counts, partial, group = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local acked, a = 0, 2
while a <= #ARGV do
  local id, n, k = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local fresh, seen = {}, {}
  for i = a + 3, a + 2 + k do
    if not seen[ARGV[i]] then seen[ARGV[i]] = true; fresh[#fresh + 1] = ARGV[i] end
  end
  a = a + 3 + k
  local before = redis.call('HGET', partial, id)
  if not before and #fresh == n then  -- the usual case: a whole entry at once
    acked = acked + n * redis.call('XACK', stream, group, id)
  elseif #redis.call('XPENDING', stream, group, id, id, 1) == 1 then
    local have, count = {}, 0
    if before then
      for index in string.gmatch(before, '%d+') do have[index] = true; count = count + 1 end
    end
    for _, index in ipairs(fresh) do
      if not have[index] then
        have[index] = true
        count, acked = count + 1, acked + 1
        before = before and (before .. ',' .. index) or index
      end
    end
    if count >= n then
      redis.call('XACK', stream, group, id)
      redis.call('HDEL', partial, id)
    else
      redis.call('HSET', partial, id, before)
    end
  end
end
-- A group this bus did not make (an older version's, or by hand) has no count to lower.
if acked > 0 and redis.call('HEXISTS', counts, 'g:' .. group) == 1 then
  redis.call('HINCRBY', counts, 'g:' .. group, -acked)
end
return acked
"""

# Creates a group reading a partition from its start; its count starts at the events the
# stream holds. KEYS: stream, counts hash. ARGV: group. Answers 1, or 0 if it existed.
GROUP_LUA = """
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if not ok then
  local text = type(err) == 'table' and err.err or tostring(err)
  if string.find(text, 'BUSYGROUP') then return 0 end
  return redis.error_reply(text)
end
redis.call('HSET', KEYS[2], 'g:' .. ARGV[1], redis.call('HGET', KEYS[2], 'total') or 0)
return 1
"""

# Renews this consumer's partition leases and evens them out among live consumers.
# KEYS: members (consumer -> last seen ms), one lease per partition. ARGV: consumer, lease ms.
# Returns the owned and the newly acquired partitions (1-based).
LEASE_LUA = """
local me, ttl = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, me)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
local n = #KEYS - 1
local share = math.ceil(n / redis.call('ZCARD', KEYS[1]))
local owned, free, acquired = {}, {}, {}
for p = 1, n do
  local holder = redis.call('GET', KEYS[p + 1])
  if holder == me then owned[#owned + 1] = p elseif not holder then free[#free + 1] = p end
end
while #owned > share do redis.call('DEL', KEYS[table.remove(owned) + 1]) end
for _, p in ipairs(free) do
  if #owned >= share then break end
  owned[#owned + 1] = p
  acquired[#acquired + 1] = p
end
for _, p in ipairs(owned) do redis.call('SET', KEYS[p + 1], me, 'PX', ttl) end
return {owned, acquired}
"""
