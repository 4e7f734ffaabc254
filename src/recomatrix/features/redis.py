"""The Redis OnlineStore of the server tier: every call is one round trip to Redis.

Keys (`rx` is the namespace; braces keep an item's two keys in one Redis Cluster slot):

    rx:u:{user}            msgpack user state (`codec.encode_user`), expires when idle
    rx:e:<event id>        "applied" marker, written with the user states that applied it
    rx:i:{item}            packed item windows (`codec` layout), changed only by Lua
    rx:i:{item}:counted    sorted set: event id -> time counted, pruned past the claim TTL
    rx:trending            sorted set: item -> trending score, capped at `max_trending`

Item counters are shared by every stream worker, so they are never read-modified-written
by Python: `ITEM_COUNT_LUA` adds counts inside Redis, atomically per item, and skips an
event the item has already counted. Users are partitioned across workers by the bus, so
their states are put whole, together with the applied-event markers, in one MULTI.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from recomatrix.backends import split_url_options
from recomatrix.features.base import ItemCount
from recomatrix.features.codec import ITEM_COUNT_LUA, decode_item, decode_user, encode_user
from recomatrix.features.state import ENGAGED, ItemState, UserState
from recomatrix.features.windows import FIELD_INDEX, FIELDS
from recomatrix.types import ItemId, UserId

_DAY_S = 86400.0


class RedisOnlineStore:
    """Satisfies `OnlineStore` on one Redis server or a Redis Cluster.

    On a cluster a call is one round trip per node, and writes that span slots are not
    atomic: a worker dying between its user write and its event markers can count that
    batch's user windows twice (items stay exactly-once: their markers share their slot).

    Idle users and items expire after `user_ttl_s` / `item_ttl_s`; applied-event markers
    after `claim_ttl_s`. Only a batch a worker applied but did not acknowledge before it died
    comes back applied, as soon as another worker takes its partition over (the bus lease)
    or it restarts; markers must outlive that. They cost about 300 bytes per event (user
    side and item side, 36-character ids): 1 h at 1,000 events/s is about 1 GB.
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
    ) -> None:
        self.client, self.namespace = client, namespace
        self.user_ttl_ms, self.item_ttl_ms = int(user_ttl_s * 1000), int(item_ttl_s * 1000)
        self.claim_ttl_s, self.max_trending = claim_ttl_s, max_trending
        self._cluster = isinstance(client, redis.RedisCluster)
        self._count_sha = client.script_load(ITEM_COUNT_LUA)
        # (item, blob) -> decoded state: an unchanged item keeps its ItemStats cache.
        self._decoded: dict[tuple[ItemId, bytes], ItemState] = {}
        self._decoded_max = decoded_items
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> RedisOnlineStore:
        """`redis://host:port/db?namespace=rx&user_ttl_s=604800&...` (any constructor option);
        `redis+cluster://host:port` for a Redis Cluster (any node)."""
        base, options = split_url_options("online store", url, _URL_OPTIONS)
        return cls(client=connect(base), **options)

    def seen_events(self, event_ids: Sequence[str]) -> list[bool]:
        if not event_ids:
            return []
        return [m is not None for m in self._mget([self._event_key(e) for e in event_ids])]

    def get_users(self, user_ids: Sequence[UserId]) -> list[UserState | None]:
        if not user_ids:
            return []
        blobs = self._mget([self._user_key(u) for u in user_ids])
        return [None if b is None else decode_user(b) for b in blobs]

    def put_users(self, states: Sequence[UserState], *, applied_events: Sequence[str] = ()) -> None:
        if not states and not applied_events:
            return
        pipe = self.client.pipeline(transaction=not self._cluster)
        for state in states:
            pipe.set(self._user_key(state.user_id), encode_user(state), px=self.user_ttl_ms)
        claim_ms = int(self.claim_ttl_s * 1000)
        for event_id in applied_events:
            pipe.set(self._event_key(event_id), b"1", px=claim_ms)
        pipe.execute()

    def get_items(self, item_ids: Sequence[ItemId]) -> list[ItemState | None]:
        if not item_ids:
            return []
        blobs = self._mget([self._item_key(i) for i in item_ids])
        return [
            None if blob is None else self._decode_item(item_id, blob)
            for item_id, blob in zip(item_ids, blobs, strict=True)
        ]

    def add_item_counts(self, counts: Sequence[ItemCount]) -> None:
        by_item: dict[ItemId, list[str | float]] = defaultdict(list)
        for c in counts:
            if c.field not in FIELD_INDEX:
                raise ValueError(f"unknown item counter {c.field!r}; use one of {FIELDS}")
            engaged = c.amount if c.field in ENGAGED else 0.0
            by_item[c.item_id] += [c.event_id, FIELD_INDEX[c.field], c.ts, c.amount, engaged]
        if not by_item:
            return
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for item_id, args in by_item.items():
                key = self._item_key(item_id)
                pipe.execute_command(  # not pipe.evalsha: cluster pipelines refuse that name
                    "EVALSHA", self._count_sha, 2, key, key + ":counted",
                    self.item_ttl_ms, self.claim_ttl_s, *args,
                )  # fmt: skip
            try:
                pipe.execute()
                return
            except redis.exceptions.NoScriptError:
                # The server restarted or its script cache was flushed: no count was
                # applied (every call in the pipeline failed alike), so load and redo.
                if attempt:
                    raise
                self._count_sha = self.client.script_load(ITEM_COUNT_LUA)

    def delete_items(self, item_ids: Sequence[ItemId]) -> None:
        if not item_ids:
            return
        pipe = self.client.pipeline(transaction=not self._cluster)
        for item_id in item_ids:
            key = self._item_key(item_id)
            pipe.delete(key)  # one key per call: cluster pipelines refuse several
            pipe.delete(key + ":counted")
        pipe.zrem(self._trending_key, *item_ids)
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
        key = (item_id, blob)
        state = self._decoded.get(key)
        if state is None:
            state = decode_item(item_id, blob)
            with self._lock:
                if len(self._decoded) >= self._decoded_max:
                    self._decoded.clear()  # cheap bound; hot items come straight back
                self._decoded[key] = state
        return state

    def _user_key(self, user_id: UserId) -> str:
        return f"{self.namespace}:u:{{{user_id}}}"

    def _item_key(self, item_id: ItemId) -> str:
        return f"{self.namespace}:i:{{{item_id}}}"

    def _event_key(self, event_id: str) -> str:
        return f"{self.namespace}:e:{event_id}"

    @property
    def _trending_key(self) -> str:
        return f"{self.namespace}:trending"


_URL_OPTIONS: dict[str, Any] = {
    "namespace": str,
    "user_ttl_s": float,
    "item_ttl_s": float,
    "claim_ttl_s": float,
    "max_trending": int,
    "decoded_items": int,
}


def connect(url: str, *, socket_timeout_s: float = 2.0) -> redis.Redis | redis.RedisCluster:
    """A client for `redis://...` (one server) or `redis+cluster://...` (any cluster node).

    It fails fast when Redis is unreachable, so the request path degrades instead of
    hanging: a 1 s connect timeout, and one immediate retry on a new connection (a restarted
    server leaves the pool's sockets dead) instead of redis-py's retries with backoff, which
    hold a call for seconds. A cluster keeps redis-py's retries: they ride out a failover.
    """
    timeouts = {"socket_connect_timeout": 1.0, "socket_timeout": socket_timeout_s}
    if url.startswith("redis+cluster://"):
        base = "redis://" + url.removeprefix("redis+cluster://")
        return redis.RedisCluster.from_url(base, **timeouts)
    retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
    return redis.Redis.from_url(url, retry=retry, **timeouts)
