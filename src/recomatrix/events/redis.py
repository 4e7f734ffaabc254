"""The Redis Streams EventBus of the server tier: partitioned streams read by consumer groups.

An event goes to stream `rx:events:<p>` with p = crc32(user_id) % partitions, so each user's
events stay in order. A publish appends one entry per partition holding that partition's
events (`entries`; up to `ENTRY_EVENTS` each), and counts events, not entries, for `lag`
and the backlog bound (`redis_lua`). Each partition is read by one consumer of a group at a
time: a consumer holds a lease on the partitions it reads (renewed on every call, shared
out evenly among the group's live consumers), so a user's state is only ever updated by one
stream worker. A consumer that takes over a partition first takes over what its previous
owner left unacknowledged. A batch must be processed within `lease_s`, or another
consumer may take the partition over and apply it again (idempotently).

Each event is delivered on its own (message ids: `entries`). An event that cannot be
decoded goes to the dead-letter stream `rx:events:dead` with the reason, and is acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

import redis

from recomatrix.backends import split_url_options
from recomatrix.events.base import Delivery
from recomatrix.events.entries import ENTRY_EVENTS, Entry, by_entry, payloads, read_entries
from recomatrix.events.leases import Consumer, PartitionLeases
from recomatrix.events.redis_lua import ACK_LUA, GROUP_LUA, PUBLISH_LUA
from recomatrix.features.base import Fence
from recomatrix.features.resp import connect, key_namespace
from recomatrix.types import Event

log = logging.getLogger(__name__)

# A read asks for entries making about `max_events`, from the events per entry read lately,
# but never for more than could hold this many times `max_events` (what it reads past
# `max_events` waits in memory for the next calls).
READ_ENTRIES_MAX = 16


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
        self.client, self.partitions = client, partitions
        self.namespace = namespace = key_namespace(namespace)
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
        self.leases = PartitionLeases(client, namespace, partitions, self.lease_ms)
        self._group = client.register_script(GROUP_LUA)
        self._ack_sha = client.script_load(ACK_LUA)  # on every cluster master, for pipelines
        client.script_load(PUBLISH_LUA)
        # Events per entry read lately: `consume` asks for as many entries as make about
        # `max_events` (starting from full entries, so a first read never overshoots).
        self._per_entry = float(ENTRY_EVENTS)
        self._lock = threading.Lock()
        self._groups: set[str] = set()
        self._started: set[Consumer] = set()  # seen by consume
        # (group, consumer) -> deliveries read past `max_events`, returned by the next call
        self._surplus: dict[Consumer, list[Delivery]] = {}
        self._backlogged: set[Consumer] = set()  # see `backlogged`
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
        base, options = split_url_options("event bus", url, URL_OPTIONS)
        return cls(client=_connect(base), **options)

    def partition_of(self, user_id: str) -> int:
        return zlib.crc32(user_id.encode()) % self.partitions

    def publish(self, events: Sequence[Event]) -> None:
        """Append all events in one atomic script (on one server), or none of them: an entry
        per partition (`ENTRY_EVENTS` events at most each)."""
        by_partition: dict[int, list[Event]] = defaultdict(list)
        for event in events:
            by_partition[self.partition_of(event.user_id)].append(event)
        # Encoded first: a bad event fails before anything is sent.
        entries = {p: payloads(batch) for p, batch in by_partition.items()}
        if not entries:
            return
        try:
            if not self._cluster:
                keys: list[str] = []
                args: list[Any] = [self.max_backlog]
                for p, chunks in entries.items():
                    keys += (self.streams[p], self._counts_key(p))
                    args.append(len(chunks))
                    for n, payload in chunks:
                        args += (n, payload)
                self._publish(keys=keys, args=args)
            else:
                self._publish_per_partition(entries)
        except redis.exceptions.ResponseError as error:
            if "OVERFLOW" in str(error):
                raise OverflowError(f"event bus is full: {error}") from None
            raise

    def _publish_per_partition(self, entries: dict[int, list[tuple[int, bytes]]]) -> None:
        """A cluster's publish: a script's keys must share a slot, so one script per
        partition, each atomic on its own. A master that lost its scripts (restarted, failed
        over to a replica that never loaded them) refuses its partitions' scripts; the
        script is loaded again on every master and just those partitions are sent again
        (the others were appended: sending them again would repeat them)."""
        for attempt in range(2):
            sent = list(entries.items())
            pipe = self.client.pipeline(transaction=False)
            for p, chunks in sent:
                flat = [x for chunk in chunks for x in chunk]
                pipe.execute_command("EVALSHA", self._publish.sha, 2, self.streams[p],
                                     self._counts_key(p), self.max_backlog, len(chunks),
                                     *flat)  # fmt: skip
            replies = pipe.execute(raise_on_error=False)
            lost = [p for (p, _), reply in zip(sent, replies, strict=True)
                    if isinstance(reply, redis.exceptions.NoScriptError)]  # fmt: skip
            failed = [reply for reply in replies if isinstance(reply, Exception)
                      and not isinstance(reply, redis.exceptions.NoScriptError)]  # fmt: skip
            if failed:
                raise failed[0]
            if not lost:
                return
            if attempt:
                raise redis.exceptions.NoScriptError(f"partitions {lost}: script not loaded")
            self.client.script_load(PUBLISH_LUA)  # on every master
            entries = {p: entries[p] for p in lost}

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
        whole, parts = by_entry(message_ids)
        if not whole and not parts:
            return
        for attempt in range(2):  # again after a restarted server lost the script
            pipe = self.client.pipeline(transaction=False)
            for partition, entry_ids in whole.items():
                pipe.xack(self.streams[partition], group, *entry_ids)
            for partition, entries in parts.items():
                args: list[Any] = [group]
                for entry_id, (n, *indices) in entries.items():
                    args += (entry_id, n, len(indices), *indices)
                pipe.execute_command("EVALSHA", self._ack_sha, 3, self.streams[partition],
                                     self._counts_key(partition),
                                     self._acked_key(partition, group), *args)  # fmt: skip
            try:
                pipe.execute()
                return
            except redis.exceptions.NoScriptError:
                # A server lost the script: load it and send all of it again. On one server
                # nothing ran; on a cluster the other masters' acks did, and acknowledging
                # again changes nothing (XACK and ACK_LUA skip what is acknowledged).
                if attempt:
                    raise
                self._ack_sha = self.client.script_load(ACK_LUA)

    def reclaim(self, group: str, consumer: str, *, min_idle_s: float) -> list[Delivery]:
        """Take over deliveries idle for `min_idle_s` on the partitions this consumer holds."""
        deliveries: list[Delivery] = []
        owned = self._rebalance(group, consumer)
        if min_idle_s <= 0:  # everything pending is claimed below
            self.leases.due(group, consumer, owned)
        for partition in owned:
            deliveries += self._autoclaim(group, consumer, partition, min_idle_s)
        with self._lock:  # read already and held for the next consume: not twice
            held = {d.message_id for d in self._surplus.get((group, consumer), [])}
        return [d for d in deliveries if d.message_id not in held] if held else deliveries

    def lag(self, group: str) -> int:
        """Events not yet acknowledged by `group`, plus the batches of item counts its
        consumers forwarded to a partition's holder that it has not counted yet (`relay`):
        0 once everything published is applied."""
        self._ensure_group(group)
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.hget(self._counts_key(p), f"g:{group}")
            pipe.xlen(self.relay_key(p, group))
        replies = pipe.execute()
        counted = cast(list[bytes | None], replies[::2])
        waiting = sum(int(count) for count in counted if count is not None)
        waiting += sum(cast(list[int], replies[1::2]))  # relay entries
        uncounted = [p for p, count in enumerate(counted) if count is None]
        if uncounted:  # a group made elsewhere (or by an older version): entries, not events
            pipe = self.client.pipeline(transaction=False)
            for p in uncounted:
                pipe.xinfo_groups(self.streams[p])
                pipe.xlen(self.streams[p])
            replies = pipe.execute()
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
        with self._lock:  # what an earlier call read past its max_events, still held
            held = [d for d in self._surplus.pop((group, consumer), [])
                    if _partition_of(d) in owned]  # fmt: skip
        deliveries = held + taken  # other partitions than each other's: no order between
        more = False  # a read stopped at what it asked for
        if not deliveries and not owned:
            time.sleep(block_s)  # more consumers than partitions: wait for a lease
        while not deliveries and owned:  # until a read finds nothing or not only poison
            # Entries of one event make the estimate small; full ones may follow (a bulk
            # publish, a backlog): at most READ_ENTRIES_MAX x max_events read at once.
            most = max(1, READ_ENTRIES_MAX * max_events // (len(owned) * ENTRY_EVENTS))
            count = min(most, max(1, int(max_events / len(owned) / self._per_entry)))
            deliveries, read, more = self._read(group, consumer, owned, count, block_s)
            if not read:
                break
            block_s = 0.0
        # Held or taken over: no read looked at the streams, which may hold more.
        more = more or bool(held or taken) or len(deliveries) > max_events
        with self._lock:
            if len(deliveries) > max_events:  # an entry holds many events: keep the rest
                self._surplus[(group, consumer)] = deliveries[max_events:]
                deliveries = deliveries[:max_events]
            if more:
                self._backlogged.add((group, consumer))
            else:
                self._backlogged.discard((group, consumer))
        return deliveries

    def backlogged(self, group: str, consumer: str) -> bool:
        with self._lock:
            return (group, consumer) in self._backlogged

    def _read(
        self, group: str, consumer: str, owned: list[int], count: int, block_s: float
    ) -> tuple[list[Delivery], int, bool]:
        """One XREADGROUP of `count` new entries a stream: their deliveries, how many
        entries it read, and whether a stream gave all `count` (it may hold more)."""
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
        read, more = 0, False
        for stream, entries in cast(list[tuple[bytes, list[Entry]]], replies or []):
            deliveries += self._deliveries(group, self.streams.index(stream.decode()), entries)
            read += len(entries)
            more = more or len(entries) >= count
        if read:
            self._per_entry = max(1.0, 0.5 * self._per_entry + 0.5 * len(deliveries) / read)
        return deliveries, read, more

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
        for p, stream in enumerate(self.streams):
            pipe.execute_command("EVALSHA", self._group.sha, 2, stream, self._counts_key(p), group)
        try:
            pipe.execute()
        except redis.exceptions.NoScriptError:
            for p, stream in enumerate(self.streams):
                self._group(keys=[stream, self._counts_key(p)], args=[group])
        self._groups.add(group)

    def _counts_key(self, partition: int) -> str:
        """The partition's event counts (`redis_lua`), in its stream's cluster slot."""
        return f"{{{self.streams[partition]}}}:counts"

    def relay_key(self, partition: int, group: str) -> str:
        """The stream of item counts forwarded to the holder of `partition` in `group`
        (`relay.RedisCountRelay`), in the partition stream's cluster slot."""
        return f"{{{self.streams[partition]}}}:items:{group}"

    def _acked_key(self, partition: int, group: str) -> str:
        """The group's events acknowledged in entries not yet wholly acknowledged."""
        return f"{{{self.streams[partition]}}}:acked:{group}"

    def _rebalance(self, group: str, consumer: str) -> list[int]:
        """The partitions `consumer` holds now; newly acquired ones are marked for take-over."""
        self._ensure_group(group)
        held, acquired = self.leases.renew(group, consumer)
        self._take_over_later(group, consumer, acquired)
        return held

    def held_partitions(self, group: str, consumer: str) -> frozenset[int]:
        return self.leases.held(group, consumer)

    def lost_lease(self, group: str, consumer: str) -> None:
        self._take_over_later(group, consumer, range(self.partitions))

    def fence(self, group: str, consumer: str) -> Fence:
        """The fence for stores written by `consumer` of `group`: a user may be written only
        while `consumer` holds the lease of the user's partition."""
        return self.leases.fence(group, consumer, self.partition_of)

    def ownership_epoch(self, group: str, consumer: str) -> int:
        return self.leases.epoch(group, consumer)

    def _take_over_later(self, group: str, consumer: str, partitions: Sequence[int]) -> None:
        """Claim what is pending on `partitions` at the consumer's next call."""
        if partitions:
            # Held deliveries of these partitions are pending: taken over with the rest.
            # Dropped before the partitions are marked, so no read between the two steps
            # can return them both held and claimed.
            with self._lock:
                held = set(partitions)
                self._surplus[(group, consumer)] = [
                    d for d in self._surplus.get((group, consumer), [])
                    if _partition_of(d) not in held
                ]  # fmt: skip
            self.leases.take_over_later(group, consumer, partitions)

    def _take_over(self, group: str, consumer: str, owned: Sequence[int]) -> list[Delivery]:
        """What the previous owners of newly acquired partitions left unacknowledged
        (at most the batch each was applying when it died), or what a read whose reply
        was lost left pending, oldest first; only on partitions `consumer` still holds."""
        partitions = self.leases.due(group, consumer, owned)
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
            claimed = cast(list[Entry], reply[1])
            deliveries += self._deliveries(group, partition, claimed, claimed=True)
            if len(reply) > 2 and reply[2]:
                log.error("partition %d: %d pending events were trimmed", partition, len(reply[2]))
            if cursor == "0-0":
                return deliveries

    def _deliveries(
        self, group: str, partition: int, entries: list[Entry], *, claimed: bool = False
    ) -> list[Delivery]:
        """The events of `entries`, each its own delivery. `claimed`: entries delivered
        before, whose events acknowledged since are left out. Poison goes to the dead
        letters, acknowledged."""
        done = self._acked_in(group, partition, entries) if claimed else {}
        deliveries, poison = read_entries(partition, entries, done)
        if poison:
            stream = self.streams[partition]
            pipe = self.client.pipeline(transaction=False)
            for entry_id, reason, payload, _ in poison:
                log.warning("dead-lettering %s %s: %s", stream, _text(entry_id), reason)
                letter = {"stream": stream, "id": entry_id, "group": group, "reason": reason,
                          "payload": payload}  # fmt: skip
                pipe.xadd(self.dead_letters, letter, maxlen=self.dead_letter_maxlen)  # type: ignore[arg-type]
            pipe.execute()
            self.ack(group, [message_id for *_, acks in poison for message_id in acks])
        return deliveries

    def _acked_in(self, group: str, partition: int, entries: list[Entry]) -> dict[str, set[int]]:
        """Entry id -> indices of its events the group acknowledged (entries not wholly so)."""
        if not entries:
            return {}
        ids = [entry_id.decode() for entry_id, _ in entries]
        found = cast(list[bytes | None], self.client.hmget(self._acked_key(partition, group), ids))
        return {entry: {int(k) for k in raw.split(b",")}
                for entry, raw in zip(ids, found, strict=True) if raw}  # fmt: skip


def _partition_of(delivery: Delivery) -> int:
    """The partition a delivery came from (its message id's first field)."""
    return int(delivery.message_id.split(":", 1)[0])


def _raw(response: Any, **_: Any) -> Any:
    return response


def _connect(url: str) -> redis.Redis | redis.RedisCluster:
    # XREADGROUP BLOCK waits on the socket: its timeout must outlast any `consume` block.
    return connect(url, socket_timeout_s=10.0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


URL_OPTIONS: dict[str, Any] = {
    "namespace": str,
    "partitions": int,
    "max_backlog": int,
    "lease_s": float,
    "dead_letter_maxlen": int,
}
