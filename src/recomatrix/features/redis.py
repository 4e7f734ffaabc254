"""The Redis OnlineStore of the server tier: every call is one round trip to Redis.

Keys (`rx` is the namespace; braces keep an item's keys in one Redis Cluster slot):

    rx:user:{user}               hash: user state field -> msgpack value
                                 (`codec.encode_user_fields`), and `stamp`: which store
                                 wrote it last, and which write; expires when idle
    rx:e:{shard}:<b>             set of applied event ids (shard: crc32 of the id % 8), put
                                 with the user states that applied them; b: time bucket
    rx:i:{item}                  packed item windows (`codec` layout), changed only by Lua
    rx:ic:<b>                    set of "<len>:<item><event id>" the items counted in bucket
                                 b (one server: one set for every item, fewer Lua calls)
    rx:i:{item}:counted:<b>      set of the event ids the item counted in time bucket b (a
                                 cluster: in the item's slot)
    rx:trending                  sorted set: item -> trending score, capped at `max_trending`

Event-id sets are per time bucket and expire whole, at least `claim_ttl_s` after the last
id they may take, so a batch adds its ids with one command per set instead of one key per
event. The bucket `b` is `f<10 s of the event's time>` for events near the clock, else one
of the time of applying (`features/markers.py`): a redelivered event is looked for in one
small set, not in every set of the claim TTL. Item counters are shared by every stream
worker, so they are never read-modified-written by Python: `ITEM_COUNT_LUA` adds a batch's
counts (summed per field and 10 s bucket) inside Redis, atomically per item, unless the
item counted one of its events already. Users are partitioned across workers by the bus,
so their states are put together with the applied-event ids by one script
(`PUT_USERS_LUA`), and only the fields a batch changed: a heavy user's watched and skipped
maps are not rewritten for an impression.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, cast

import msgpack  # type: ignore[import-untyped]  # ships no type information
import redis

from recomatrix.backends import split_url_options
from recomatrix.features.base import Fence, ItemCount, LeaseLost
from recomatrix.features.codec import decode_item, decode_user_fields
from recomatrix.features.markers import MarkerPlan
from recomatrix.features.redis_counts import CallMarkers, member_prefix, summed
from recomatrix.features.redis_lua import ITEM_COUNT_LUA, PUT_USERS_LUA, STAMP_FIELD
from recomatrix.features.redis_users import UserStamps, UserWrite
from recomatrix.features.resp import connect, key_namespace
from recomatrix.features.state import ItemState, UserState
from recomatrix.features.windows import FIELD_INDEX, FIELDS
from recomatrix.types import ItemId, UserId

_DAY_S = 86400.0
# Applied-event markers go to sets per (shard, time bucket, `features/markers.py`): one
# SADD per shard and bucket a batch, and a set expires whole, at least `claim_ttl_s` after
# the last marker it may take.
MARKER_SHARDS = 8  # sets per bucket: spreads the markers over a cluster's nodes
ITEMS_PER_SCRIPT = 32  # items per counting script: Redis serves other clients in between


class RedisOnlineStore:
    """Satisfies `OnlineStore` on one Redis server or a Redis Cluster.

    On a cluster a call is one round trip per node, and writes that span slots are not
    atomic: a worker dying between its user write and its event markers can count that
    batch's user windows twice (items stay exactly-once: their markers share their slot).

    With a `fence`, `put_users` writes only while the fence's holder still holds the lease
    of every written user's partition, else raises `LeaseLost` having written nothing: a
    worker that paused past its lease cannot overwrite what the new owner wrote since. On
    one server the check is part of the write's script; on a cluster the leases live in
    another slot, so they are read just before the write (a much narrower window, not none).

    Idle users and items expire after `user_ttl_s` / `item_ttl_s`; applied event ids after
    `claim_ttl_s` to ~1.25 x `claim_ttl_s` (up to ~2.3 x for events dated ahead of the
    clock, `features/markers.py`). Only a batch a worker applied but did not
    acknowledge before it died comes back applied, as soon as another worker takes its
    partition over (the bus lease) or it restarts, and a client retries a batch whose reply
    it lost; the ids must outlive both. A set member costs about 100 bytes (36-character
    ids), twice per event (user side, item side): 1 h at 1,000 events/s is about 0.7 GB.
    """

    def __init__(
        self,
        *,
        client: redis.Redis | redis.RedisCluster,
        namespace: str = "rx",
        user_ttl_s: float = 7 * _DAY_S,
        item_ttl_s: float = 7 * _DAY_S,
        claim_ttl_s: float = 3600.0,
        max_trending: int = 10_000,
        decoded_items: int = 10_000,
        fence: Fence | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client, self.namespace, self.fence = client, key_namespace(namespace), fence
        for name, value in (("user_ttl_s", user_ttl_s), ("item_ttl_s", item_ttl_s),
                            ("claim_ttl_s", claim_ttl_s)):  # fmt: skip
            if not value >= 0.001:  # PEXPIRE 0 would delete what was just written
                raise ValueError(f"online store option {name}={value}: must be at least "
                                 "0.001 (seconds)")  # fmt: skip
        self.user_ttl_ms, self.item_ttl_ms = int(user_ttl_s * 1000), int(item_ttl_s * 1000)
        self.claim_ttl_s, self.max_trending = claim_ttl_s, max_trending
        self._cluster = isinstance(client, redis.RedisCluster)
        self._count_sha = client.script_load(ITEM_COUNT_LUA)
        self._put_users_script = client.register_script(PUT_USERS_LUA)
        self._markers, self._clock = MarkerPlan(claim_ttl_s), clock
        # item -> (blob, decoded state): an unchanged item keeps its ItemStats cache. Keyed
        # by the item, not the blob: hashing 300 new ~1 KB blobs per fetch cost a quarter of
        # a millisecond, comparing each with the cached one (memcmp) a few microseconds.
        self._decoded: dict[ItemId, tuple[bytes, ItemState]] = {}
        self._decoded_max = decoded_items
        self._lock = threading.Lock()
        self._stamps = UserStamps()  # the last stamp this store wrote to each user

    @classmethod
    def from_url(cls, url: str, *, fence: Fence | None = None) -> RedisOnlineStore:
        """`redis://host:port/db?namespace=rx&user_ttl_s=604800&...` (any constructor option);
        `redis+cluster://host:port` for a Redis Cluster (any node)."""
        base, options = split_url_options("online store", url, URL_OPTIONS)
        return cls(client=connect(base), fence=fence, **options)

    def seen_events(
        self, event_ids: Sequence[str], times: Sequence[float | None] | None = None
    ) -> list[bool]:
        """With `times` (each event's time), the sets `put_users` with the same times wrote
        to (`MarkerPlan.lookup`); without, those of the time of applying."""
        if not event_ids:
            return []
        plan = self._markers.at(self._clock())
        by_key: dict[str, list[str]] = defaultdict(list)
        for k, event_id in enumerate(event_ids):
            shard = _shard(event_id)
            for suffix in plan.lookup(None if times is None else times[k]):
                by_key[self._marker_key(shard, suffix)].append(event_id)
        pipe = self.client.pipeline(transaction=False)
        for key, ids in by_key.items():
            pipe.smismember(key, ids)
        seen: set[str] = set()
        for ids, hits in zip(by_key.values(), pipe.execute(), strict=True):
            seen.update(i for i, hit in zip(ids, hits, strict=True) if hit)
        return [event_id in seen for event_id in event_ids]

    def get_users(self, user_ids: Sequence[UserId]) -> list[UserState | None]:
        if not user_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hgetall(self._user_key(user_id))
        stored = cast(list[dict[bytes, bytes]], pipe.execute())
        # A state just read is what the hash holds, whoever stamped it: a write of the
        # reader's changes to it expects no stamp of ours.
        self._stamps.forget(user_ids)
        return [
            decode_user_fields(user_id, fields) if fields else None
            for user_id, fields in zip(user_ids, stored, strict=True)
        ]

    def put_users(
        self,
        states: Sequence[UserState],
        *,
        applied_events: Sequence[str] = (),
        changed: Mapping[UserId, Collection[str]] | None = None,
        applied_times: Sequence[float | None] | None = None,
    ) -> None:
        """`applied_times`: each applied event's time, which places its marker
        (`seen_events` must be given the same)."""
        if not states and not applied_events:
            return
        stamp = self._stamps.next()
        users = [UserWrite(self._user_key(s.user_id), s, None if changed is None else
                           changed.get(s.user_id), stamp, self._stamps.last(s.user_id))
                 for s in states]  # fmt: skip
        users = [user for user in users if user.fields]
        self._stamps.remember([user.state.user_id for user in users], stamp)
        markers = self._markers_of(applied_events, applied_times)
        leases = self._leases(states)
        if self._cluster:
            self._put_users_pipelined(users, markers, leases)
            return
        keys = [user.key for user in users] + [key for key, _, _ in markers] + leases
        holder = "" if self.fence is None else self.fence.holder
        while True:  # one script: the users and their markers, atomically
            args: list[Any] = [self.user_ttl_ms, len(users), len(leases), holder]
            for user in users:
                args += (2 * len(user.fields), int(user.whole), user.expected or b"")
                for name, value in user.fields.items():
                    args += (name, value)
            for _, expire_at_ms, ids in markers:
                args += [expire_at_ms, len(ids), *ids]
            try:
                answer = self._put_users_script(keys=keys, args=args)
            except redis.exceptions.ResponseError as error:
                if str(error).startswith("FENCED"):
                    raise LeaseLost(str(error).removeprefix("FENCED ")) from None
                raise
            if not isinstance(answer, list):
                return
            if answer[0] == b"stale":  # written over by someone else: forget they are ours
                self._stamps.forget(users[int(p) - 1].state.user_id for p in answer[1:])
                return
            for position in answer:  # hashes gone since they were read: write them whole
                users[int(position) - 1].write_whole()

    def unchanged_since_written(self, user_ids: Sequence[UserId]) -> list[bool]:
        """Whether each user's stored stamp is the one this store's last write of it left
        (`RemembersUserWrites`): one HGET of a short field per user. A write by another
        worker or store stamps its own; a deleted, expired or restored hash has none or an
        older one. A write of some fields that finds another stamp than this store's last
        (someone wrote in between, before the writer's copy was checked) forgets the user:
        what the hash holds is then neither copy, and it must be read again. Only a change
        that bypasses `put_users` and keeps the stamp (an HSET by hand) goes unseen, and on
        a cluster a hash that expires between a write's EXISTS and its HSET."""
        mine = [self._stamps.last(user_id) for user_id in user_ids]
        known = [user_id for user_id, stamp in zip(user_ids, mine, strict=True) if stamp]
        if not known:
            return [False] * len(user_ids)
        pipe = self.client.pipeline(transaction=False)
        for user_id in known:
            pipe.hget(self._user_key(user_id), STAMP_FIELD)
        stored = dict(zip(known, cast(list[bytes | None], pipe.execute()), strict=True))
        return [stamp is not None and stored[user_id] == stamp
                for user_id, stamp in zip(user_ids, mine, strict=True)]  # fmt: skip

    def _markers_of(
        self, event_ids: Sequence[str], times: Sequence[float | None] | None
    ) -> list[tuple[str, int, list[str]]]:
        """(set key, its expiry in unix ms, ids) of the applied-event markers to write."""
        plan = self._markers.at(self._clock())
        by_key: dict[str, tuple[int, list[str]]] = {}
        for k, event_id in enumerate(event_ids):
            slot = plan.write(None if times is None else times[k])
            key = self._marker_key(_shard(event_id), slot.suffix)
            by_key.setdefault(key, (slot.expire_at_ms, []))[1].append(event_id)
        return [(key, expiry, ids) for key, (expiry, ids) in by_key.items()]

    def _leases(self, states: Sequence[UserState]) -> list[str]:
        """The lease keys the fence requires for writing these users (none without one)."""
        if self.fence is None:
            return []
        return sorted({self.fence.lease_key(state.user_id) for state in states})

    def _put_users_pipelined(
        self,
        users: list[UserWrite],
        markers: list[tuple[str, int, list[str]]],
        leases: list[str],
    ) -> None:
        """`put_users` on a cluster, where the keys sit in many slots: not atomic."""
        partial = [user for user in users if not user.whole]
        stale: list[UserWrite] = []
        if partial:
            pipe = self.client.pipeline(transaction=False)
            for user in partial:
                pipe.exists(user.key)
                pipe.hget(user.key, STAMP_FIELD)
            replies = pipe.execute()
            for user, exists, stamp in zip(partial, replies[::2], replies[1::2], strict=True):
                if not exists:
                    user.write_whole()
                elif user.expected is not None and stamp != user.expected:
                    stale.append(user)  # as on one server: written, but no longer ours
        if leases and self.fence is not None:  # one slot ({group}): one MGET, last thing
            holders = cast(list[bytes | None], self.client.mget(leases))
            for key, holder in zip(leases, holders, strict=True):
                if holder is None or holder.decode() != self.fence.holder:
                    raise LeaseLost(f"{key} is not held by {self.fence.holder}")
        pipe = self.client.pipeline(transaction=False)
        for user in users:
            pipe.hset(user.key, mapping=cast(Mapping[Any, Any], user.fields))
            pipe.pexpire(user.key, self.user_ttl_ms)
        for key, expire_at_ms, ids in markers:
            pipe.sadd(key, *ids)
            pipe.pexpireat(key, expire_at_ms)
        pipe.execute()
        self._stamps.forget(user.state.user_id for user in stale)

    def get_items(self, item_ids: Sequence[ItemId]) -> list[ItemState | None]:
        if not item_ids:
            return []
        blobs = self._mget([self._item_key(i) for i in item_ids])
        return [
            None if blob is None else self._decode_item(item_id, blob)
            for item_id, blob in zip(item_ids, blobs, strict=True)
        ]

    def add_item_counts(self, counts: Sequence[ItemCount]) -> None:
        by_item: dict[ItemId, list[ItemCount]] = defaultdict(list)
        for c in counts:
            if c.field not in FIELD_INDEX:
                raise ValueError(f"unknown item counter {c.field!r}; use one of {FIELDS}")
            by_item[c.item_id].append(c)
        for attempt in range(len(counts) + 2):  # each round drops at least one counted id
            if not by_item:
                return
            items = list(by_item)
            try:
                replies = self._count_items(items, by_item)
            except redis.exceptions.NoScriptError:
                # A server restarted or its script cache was flushed: load and redo. On
                # one server no call ran; on a cluster the other masters' calls did, and
                # their items now answer the ids they counted, changing nothing.
                if attempt:
                    raise
                self._count_sha = self.client.script_load(ITEM_COUNT_LUA)
                continue
            # An item answers the ids it had already counted, and changed nothing: send
            # it again without them.
            retry: dict[ItemId, list[ItemCount]] = {}
            for item_id, counted in zip(items, replies, strict=True):
                if counted:
                    old = {_text(e) for e in counted}
                    rest = [c for c in by_item[item_id] if c.event_id not in old]
                    if rest:
                        retry[item_id] = rest
            by_item = retry
        raise RuntimeError("item counts kept conflicting")  # unreachable: ids only shrink

    def _count_items(
        self, items: Sequence[ItemId], by_item: Mapping[ItemId, Sequence[ItemCount]]
    ) -> list[list[bytes]]:
        """ITEM_COUNT_LUA over the items, `ITEMS_PER_SCRIPT` a call, counts summed per
        (field, 10 s bucket); answers, per item, the event ids it had counted before.

        On one server a call's items share the counted-events sets `rx:ic:<b>`, their ids
        prefixed by the item (`_member_prefix`: an event counts once per item). On a cluster
        the items' keys sit in different slots: one item a call, with its own sets
        `rx:i:{item}:counted:<b>`. Which sets an id is looked for in and written to follows
        its event's time (`redis_counts.CallMarkers`).
        """
        plan = self._markers.at(self._clock())  # one for every call of this flush
        per_call = 1 if self._cluster else ITEMS_PER_SCRIPT
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(items), per_call):
            chunk = items[start : start + per_call]
            markers = CallMarkers(plan)
            batch = [summed(by_item[i], "" if self._cluster else member_prefix(i),
                            markers.group_of) for i in chunk]  # fmt: skip
            if self._cluster:
                own = self._item_key(chunk[0])
                keys = [f"{own}:counted:{suffix}" for suffix in markers.suffixes]
            else:
                keys = [self._counted_key(suffix) for suffix in markers.suffixes]
            sets = len(keys)
            keys += [self._item_key(item_id) for item_id in chunk]
            pipe.execute_command(  # not pipe.evalsha: cluster pipelines refuse that name
                "EVALSHA", self._count_sha, len(keys), *keys,
                self.item_ttl_ms, sets, msgpack.packb([markers.groups, batch]),
            )  # fmt: skip
        answers = [answer for call in pipe.execute() for answer in call]
        if self._cluster:
            return answers
        return [[member[len(member_prefix(item_id).encode()) :] for member in counted]
                for item_id, counted in zip(items, answers, strict=True)]  # fmt: skip

    def delete_items(self, item_ids: Sequence[ItemId]) -> None:
        """Drop the items' counters and trending score. The event ids they counted stay
        until their sets expire (`forget_counted_events` drops them all): counting an
        event again needs both."""
        if not item_ids:
            return
        pipe = self.client.pipeline(transaction=not self._cluster)
        for item_id in item_ids:
            pipe.delete(self._item_key(item_id))  # one key per call: cluster pipelines
        pipe.zrem(self._trending_key, *item_ids)
        pipe.execute()

    def forget_counted_events(self) -> None:
        """Forget which events the items counted: every counted-events set, found by SCAN
        (on a cluster, on every master). Only while nothing counts: a deploy that re-seeds
        every item's counters from the log counts the same event ids again."""
        if self._cluster:
            pattern = f"{self.namespace}:i:{{*}}:counted:*"
        else:
            pattern = self._counted_key("*")
        keys = list(self.client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[start : start + 1000]:
                pipe.delete(key)  # one key per call: cluster pipelines refuse several
            pipe.execute()

    def set_trending(self, scores: Mapping[ItemId, float]) -> None:
        hot = {item_id: score for item_id, score in scores.items() if score > 0}
        cold = [item_id for item_id, score in scores.items() if score <= 0]
        if not hot and not cold:
            return
        pipe = self.client.pipeline(transaction=False)
        if hot:
            pipe.zadd(self._trending_key, cast(Mapping[Any, Any], hot))
            pipe.zremrangebyrank(self._trending_key, 0, -self.max_trending - 1)
        if cold:
            pipe.zrem(self._trending_key, *cold)
        pipe.execute()

    def top_trending(self, k: int) -> list[tuple[ItemId, float]]:
        if k <= 0:
            return []
        rows = self.client.zrevrange(self._trending_key, 0, k - 1, withscores=True)
        return [(m.decode(), float(s)) for m, s in cast(list[tuple[bytes, float]], rows)]

    def close(self) -> None:
        self.client.close()

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        if isinstance(self.client, redis.RedisCluster):
            return cast(list[bytes | None], self.client.mget_nonatomic(keys))  # one MGET a slot
        return cast(list[bytes | None], self.client.mget(keys))

    def _decode_item(self, item_id: ItemId, blob: bytes) -> ItemState:
        cached = self._decoded.get(item_id)
        if cached is not None and cached[0] == blob:
            return cached[1]
        state = decode_item(item_id, blob)
        if self._decoded_max > 0:
            with self._lock:
                if len(self._decoded) >= self._decoded_max and item_id not in self._decoded:
                    self._decoded.clear()  # cheap bound; hot items come straight back
                self._decoded[item_id] = (blob, state)
        return state

    def _marker_key(self, shard: int, bucket: str) -> str:
        return f"{self.namespace}:e:{{{shard}}}:{bucket}"

    def _counted_key(self, bucket: str) -> str:
        """One server: the set of (item, event id) the items counted in time bucket b."""
        return f"{self.namespace}:ic:{bucket}"

    def _user_key(self, user_id: UserId) -> str:
        return f"{self.namespace}:user:{{{user_id}}}"

    def _item_key(self, item_id: ItemId) -> str:
        return f"{self.namespace}:i:{{{item_id}}}"

    @property
    def _trending_key(self) -> str:
        return f"{self.namespace}:trending"


URL_OPTIONS: dict[str, Any] = {
    "namespace": str,
    "user_ttl_s": float,
    "item_ttl_s": float,
    "claim_ttl_s": float,
    "max_trending": int,
    "decoded_items": int,
}


def _shard(event_id: str) -> int:
    """Which of the `MARKER_SHARDS` sets of a bucket an applied event's marker goes to."""
    return zlib.crc32(event_id.encode()) % MARKER_SHARDS


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
