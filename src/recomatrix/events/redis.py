"""The Redis Streams EventBus of the server tier: partitioned streams read by consumer groups.

An event goes to stream `rx:events:<p>` with p = crc32(user_id) % partitions, so each user's
events stay in order. Each partition is read by one consumer of a group at a time: a
consumer holds a lease on the partitions it reads (renewed on every call, shared out
evenly among the group's live consumers), so a user's state is only ever updated by one
stream worker. A consumer that takes over a partition first takes over what its previous
owner left unacknowledged. A batch must be processed within `lease_s`, or another
consumer may take the partition over and apply it again (idempotently).

Message ids are "<partition>:<stream entry id>". An entry that cannot be decoded goes to
the dead-letter stream `rx:events:dead` with the reason, and is acknowledged.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

import msgspec
import orjson
import redis

from recomatrix.backends import split_url_options
from recomatrix.events.base import Delivery
from recomatrix.features.base import Fence
from recomatrix.features.redis import connect
from recomatrix.types import Event

log = logging.getLogger(__name__)

# Appends every event or none: refuses the batch when a partition would then hold more
# than ARGV[1] events some group has not acknowledged, and trims what every group has.
# KEYS: partition streams. ARGV: max backlog, events per key, then payloads in key order.
PUBLISH_LUA = """
local function before(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, bm = tonumber(am), tonumber(bm)
  return am < bm or (am == bm and tonumber(as) < tonumber(bs))
end
local max = tonumber(ARGV[1])
for k, key in ipairs(KEYS) do
  local length, floor, groups = redis.call('XLEN', key), nil, {}
  if redis.call('EXISTS', key) == 1 then groups = redis.call('XINFO', 'GROUPS', key) end
  local waiting = #groups > 0 and 0 or length
  for _, g in ipairs(groups) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    local first = info['last-delivered-id']
    if info['pending'] > 0 then first = redis.call('XPENDING', key, info['name'])[2] end
    if floor == nil or before(first, floor) then floor = first end
    waiting = math.max(waiting, (info['lag'] or length) + info['pending'])
  end
  if waiting + tonumber(ARGV[1 + k]) > max then
    return redis.error_reply('OVERFLOW ' .. key .. ' holds ' .. waiting ..
      ' unacknowledged events; at most ' .. max .. ' may wait: retry later')
  end
  if floor ~= nil then redis.call('XTRIM', key, 'MINID', '~', floor) end
end
local a = 2 + #KEYS
for k, key in ipairs(KEYS) do
  for _ = 1, tonumber(ARGV[1 + k]) do
    redis.call('XADD', key, '*', 'e', ARGV[a])
    a = a + 1
  end
end
return #ARGV - 1 - #KEYS
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

# A stream entry: its id and its fields, as redis-py's dict or (XREADGROUP on one server,
# read raw: see `RedisStreamsBus.__init__`) Redis's flat [name, value, ...] list.
Entry = tuple[bytes, "dict[bytes, bytes] | list[bytes]"]


class RedisStreamsBus:
    """Satisfies `EventBus` with `partitions` streams on one Redis server or a Redis Cluster.

    On a cluster, a publish is atomic per partition only, and `consume` polls the streams it
    holds (one round trip per node every 10 ms while it waits) instead of blocking on them.

    `max_backlog` bounds each partition: a publish that would leave more than that many
    events unacknowledged by some group is refused whole (OverflowError). A group that is
    no longer read keeps its events: delete it (XGROUP DESTROY) to release them.
    """

    def __init__(
        self,
        *,
        client: redis.Redis | redis.RedisCluster,
        namespace: str = "rx",
        partitions: int = 8,
        max_backlog: int = 1_000_000,
        lease_s: float = 15.0,
        dead_letter_maxlen: int = 100_000,
    ) -> None:
        self.client, self.namespace, self.partitions = client, namespace, partitions
        self._cluster = isinstance(client, redis.RedisCluster)
        self.max_backlog, self.lease_ms = max_backlog, max(1, int(lease_s * 1000))
        self.dead_letter_maxlen = dead_letter_maxlen
        self.streams = [f"{namespace}:events:{p}" for p in range(partitions)]
        self.dead_letters = f"{namespace}:events:dead"
        if not self._cluster:
            # Keep XREADGROUP's reply as Redis sends it: redis-py would turn each entry's
            # fields into a dict, a third of what reading 10,000 entries costs.
            client.set_response_callback("XREADGROUP", _raw)
        self._publish = client.register_script(PUBLISH_LUA)
        self._lease = client.register_script(LEASE_LUA)
        client.script_load(PUBLISH_LUA)  # on every cluster master, for pipelined EVALSHA
        self._lock = threading.Lock()
        self._groups: set[str] = set()
        # (group, consumer) -> partitions just acquired, whose pending entries it takes over
        self._taking_over: dict[tuple[str, str], set[int]] = {}
        self._started: set[tuple[str, str]] = set()  # (group, consumer) seen by consume
        self._epochs: dict[tuple[str, str], int] = defaultdict(int)  # see ownership_epoch
        meta = f"{namespace}:events:partitions"
        client.set(meta, partitions, nx=True)
        stored = int(cast(bytes, client.get(meta)))
        if stored != partitions:
            raise ValueError(
                f"the event streams under {namespace!r} have {stored} partitions, not "
                f"{partitions}: open the bus with partitions={stored}"
            )

    @classmethod
    def from_url(cls, url: str) -> RedisStreamsBus:
        """`redis://host:port/db?partitions=8&lease_s=15&...` (any constructor option);
        `redis+cluster://host:port?...` for a Redis Cluster (any node)."""
        base, options = split_url_options("event bus", url, _URL_OPTIONS)
        return cls(client=_connect(base), **options)

    def partition_of(self, user_id: str) -> int:
        return zlib.crc32(user_id.encode()) % self.partitions

    def publish(self, events: Sequence[Event]) -> None:
        """Append all events in one atomic script (on one server), or none of them."""
        by_partition: dict[int, list[bytes]] = defaultdict(list)
        for event in events:  # encode first: a bad event fails before anything is sent
            by_partition[self.partition_of(event.user_id)].append(_encode(event))
        if not by_partition:
            return
        keys = [self.streams[p] for p in by_partition]
        counts = [len(payloads) for payloads in by_partition.values()]
        payloads = [payload for batch in by_partition.values() for payload in batch]
        try:
            if not self._cluster:
                self._publish(keys=keys, args=[self.max_backlog, *counts, *payloads])
            else:  # a script's keys must share a slot: one script per partition
                pipe = self.client.pipeline(transaction=False)
                for key, count, batch in zip(keys, counts, by_partition.values(), strict=True):
                    args = (self.max_backlog, count, *batch)
                    pipe.execute_command("EVALSHA", self._publish.sha, 1, key, *args)
                pipe.execute()
        except redis.exceptions.ResponseError as error:
            if "OVERFLOW" in str(error):
                raise OverflowError(f"event bus is full: {error}") from None
            raise

    def consume(
        self, group: str, consumer: str, *, max_events: int, block_s: float
    ) -> list[Delivery]:
        if (group, consumer) not in self._started:
            # A consumer restarted under its old name (a supervised worker) keeps its
            # leases, so nothing marks its partitions as newly acquired: take over what its
            # previous incarnation left pending on them at this first call.
            self._started.add((group, consumer))
            self._take_over_later(group, consumer, range(self.partitions))
        try:
            return self._consume(group, consumer, max_events, block_s)
        except redis.exceptions.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self._groups.discard(group)  # the server lost its streams (restart, flush)
            return []
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            # Redis may have delivered entries and lost the reply (it died, the socket timed
            # out): they wait in this consumer's pending list, which ">" never reads again.
            self._take_over_later(group, consumer, range(self.partitions))
            raise

    def ack(self, group: str, message_ids: Sequence[str]) -> None:
        by_partition: dict[int, list[str]] = defaultdict(list)
        for message_id in message_ids:
            index, entry_id = message_id.split(":", 1)
            by_partition[int(index)].append(entry_id)
        if not by_partition:
            return
        pipe = self.client.pipeline(transaction=False)
        for partition, entry_ids in by_partition.items():
            pipe.xack(self.streams[partition], group, *entry_ids)
        pipe.execute()

    def reclaim(self, group: str, consumer: str, *, min_idle_s: float) -> list[Delivery]:
        """Take over deliveries idle for `min_idle_s` on the partitions this consumer holds."""
        deliveries: list[Delivery] = []
        owned = self._rebalance(group, consumer)
        if min_idle_s <= 0:
            with self._lock:  # everything pending is claimed below
                self._taking_over.pop((group, consumer), None)
        for partition in owned:
            deliveries += self._autoclaim(group, consumer, partition, min_idle_s)
        return deliveries

    def lag(self, group: str) -> int:
        self._ensure_group(group)
        pipe = self.client.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xinfo_groups(stream)
            pipe.xlen(stream)
        replies = pipe.execute()
        waiting = 0
        for groups, length in zip(replies[::2], replies[1::2], strict=True):
            for info in cast(list[dict[str, Any]], groups):
                if _text(info["name"]) == group:
                    lag = info.get("lag")
                    waiting += int(info["pending"]) + (int(length) if lag is None else int(lag))
        return waiting

    def close(self) -> None:
        self.client.close()

    def _consume(
        self, group: str, consumer: str, max_events: int, block_s: float
    ) -> list[Delivery]:
        owned = self._rebalance(group, consumer)
        taken = self._take_over(group, consumer, owned)
        if taken or not owned:
            if not taken:
                time.sleep(block_s)  # more consumers than partitions: wait for a lease
            return taken
        count = max(1, max_events // len(owned))
        replies: Any
        if self._cluster:
            replies = self._poll(group, consumer, owned, count, block_s)
        else:
            block = max(1, int(block_s * 1000)) if block_s > 0 else None  # BLOCK 0: forever
            streams: dict[Any, Any] = {self.streams[p]: ">" for p in owned}
            replies = self.client.xreadgroup(group, consumer, streams, count=count, block=block)
        deliveries: list[Delivery] = []
        if isinstance(replies, dict):  # read raw: {stream: entries}
            replies = replies.items()
        for stream, entries in cast(list[tuple[bytes, list[Entry]]], replies or []):
            deliveries += self._deliveries(group, self.streams.index(stream.decode()), entries)
        return deliveries

    def _poll(
        self, group: str, consumer: str, owned: list[int], count: int, block_s: float
    ) -> list[Any]:
        """XREADGROUP each held stream (streams in different slots cannot share one call)."""
        deadline = time.monotonic() + block_s
        while True:
            pipe = self.client.pipeline(transaction=False)
            for p in owned:
                pipe.xreadgroup(group, consumer, {self.streams[p]: ">"}, count=count)
            replies = [reply for stream in pipe.execute() for reply in stream or []]
            if replies or time.monotonic() >= deadline:
                return replies
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def _ensure_group(self, group: str) -> None:
        if group in self._groups:
            return
        pipe = self.client.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xgroup_create(stream, group, id="0", mkstream=True)
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply
        self._groups.add(group)

    def _rebalance(self, group: str, consumer: str) -> list[int]:
        """The partitions `consumer` holds now; newly acquired ones are marked for take-over."""
        self._ensure_group(group)
        lease = f"{self.namespace}:lease:{{{group}}}"
        keys = [f"{lease}:members"] + [f"{lease}:{p}" for p in range(self.partitions)]
        owned, acquired = cast(
            list[list[int]], self._lease(keys=keys, args=[consumer, self.lease_ms])
        )
        self._take_over_later(group, consumer, [p - 1 for p in acquired])
        return sorted(p - 1 for p in owned)

    def lost_lease(self, group: str, consumer: str) -> None:
        self._take_over_later(group, consumer, range(self.partitions))

    def fence(self, group: str, consumer: str) -> Fence:
        """The fence for stores written by `consumer` of `group`: a user may be written only
        while `consumer` holds the lease of the user's partition."""
        lease = f"{self.namespace}:lease:{{{group}}}"
        return Fence(consumer, lambda user_id: f"{lease}:{self.partition_of(user_id)}")

    def ownership_epoch(self, group: str, consumer: str) -> int:
        with self._lock:
            return self._epochs[(group, consumer)]

    def _take_over_later(self, group: str, consumer: str, partitions: Sequence[int]) -> None:
        """Claim what is pending on `partitions` at the consumer's next call."""
        if partitions:
            with self._lock:
                self._taking_over.setdefault((group, consumer), set()).update(partitions)
                self._epochs[(group, consumer)] += 1

    def _take_over(self, group: str, consumer: str, owned: Sequence[int]) -> list[Delivery]:
        """What the previous owners of newly acquired partitions left unacknowledged
        (at most the batch each was applying when it died), or what a read whose reply
        was lost left pending, oldest first; only on partitions `consumer` still holds."""
        with self._lock:
            partitions = self._taking_over.pop((group, consumer), set()) & set(owned)
        return [d for p in sorted(partitions) for d in self._autoclaim(group, consumer, p, 0.0)]

    def _autoclaim(
        self, group: str, consumer: str, partition: int, min_idle_s: float
    ) -> list[Delivery]:
        """XAUTOCLAIM every entry of a partition idle for `min_idle_s`."""
        cursor, deliveries = "0-0", []
        while True:
            reply = self.client.xautoclaim(
                self.streams[partition], group, consumer, int(min_idle_s * 1000),
                start_id=cursor, count=1000,
            )  # fmt: skip
            cursor = _text(reply[0])
            deliveries += self._deliveries(group, partition, cast(list[Entry], reply[1]))
            if len(reply) > 2 and reply[2]:
                log.error("partition %d: %d pending events were trimmed", partition, len(reply[2]))
            if cursor == "0-0":
                return deliveries

    def _deliveries(self, group: str, partition: int, entries: list[Entry]) -> list[Delivery]:
        deliveries, poison, prefix = [], [], f"{partition}:"
        for entry_id, fields in entries:
            try:
                payload = _payload(fields)
                deliveries.append(Delivery(prefix + entry_id.decode(), _decode(payload)))
            except (ValueError, TypeError, KeyError) as error:
                poison.append((entry_id, fields, f"{type(error).__name__}: {error}"))
        if poison:
            stream = self.streams[partition]
            pipe = self.client.pipeline(transaction=not self._cluster)
            for entry_id, fields, reason in poison:
                log.warning("dead-lettering %s %s: %s", stream, _text(entry_id), reason)
                letter = {"stream": stream, "id": entry_id, "group": group, "reason": reason,
                          "payload": _payload(fields, missing=b"")}  # fmt: skip
                pipe.xadd(self.dead_letters, letter, maxlen=self.dead_letter_maxlen)  # type: ignore[arg-type]
                pipe.xack(stream, group, entry_id)
            pipe.execute()
        return deliveries


def _encode(event: Event) -> bytes:
    fields = {"event_id": event.event_id, "user_id": event.user_id, "item_id": event.item_id,
              "type": event.type, "ts": event.ts, "watch_seconds": event.watch_seconds,
              "context": None if event.context is None else dict(event.context)}  # fmt: skip
    return orjson.dumps(fields)


def _raw(response: Any, **_: Any) -> Any:
    return response


def _payload(
    fields: dict[bytes, bytes] | list[bytes] | None, missing: bytes | None = None
) -> bytes:
    """The `e` field of an entry's fields (a dict, or Redis's flat name, value list)."""
    if not fields:
        found = missing
    elif isinstance(fields, dict):
        found = fields.get(b"e", missing)
    else:
        names = fields[::2]
        found = fields[2 * names.index(b"e") + 1] if b"e" in names else missing
    if found is None:
        raise KeyError("the entry has no field 'e'")
    return found


def _decode(payload: bytes) -> Event:
    """The event in an entry's payload, checked: field types, the event type, non-empty ids
    (msgspec decodes and checks in one pass, several times faster than loading a dict and
    checking it in Python: a worker decodes every event)."""
    try:
        event = _EVENT_DECODER.decode(payload)
    except msgspec.DecodeError as error:  # its ValidationError too: names the field
        raise ValueError(str(error)) from None
    for name in ("event_id", "user_id", "item_id"):
        if not getattr(event, name):
            raise ValueError(f"{name} must be a non-empty string")
    # Interned: every user's history, recent items and watched map then share one string
    # per item instead of one per event, which saves memory and, in a worker with grown
    # states, made encoding those lists a third faster (fewer cache lines to walk).
    _set_field(event, "item_id", sys.intern(event.item_id))
    return event


_EVENT_DECODER = msgspec.json.Decoder(Event)
_set_field = object.__setattr__  # Event is frozen; the decoded one is ours alone yet


def _connect(url: str) -> redis.Redis | redis.RedisCluster:
    # XREADGROUP BLOCK waits on the socket: its timeout must outlast any `consume` block.
    return connect(url, socket_timeout_s=10.0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_URL_OPTIONS: dict[str, Any] = {
    "namespace": str,
    "partitions": int,
    "max_backlog": int,
    "lease_s": float,
    "dead_letter_maxlen": int,
}
