"""redis-py clients for the server tier (`connect`), whose commands hiredis packs in one C call.

redis-py's hiredis packer still runs Python over every argument (a memoryview check and its
`Encoder.encode`) before handing them to `hiredis.pack_command`: ~5 ms for one SADD of
10,000 event ids, against 0.76 ms for hiredis alone with the same bytes out. A stream
worker's batch sends ~65,000 arguments (event ids to record and acknowledge, item count
sums), so that pass was ~17 % of its CPU (cProfile of `bench/tier_apply.py`).
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class PackedConnection(redis.Connection):
    """A `redis.Connection` (plain TCP) that packs commands with `HiredisPacker`."""

    def _construct_command_packer(self, packer: Any) -> Any:
        default = super()._construct_command_packer(packer)  # type: ignore[no-untyped-call]
        return HiredisPacker(fallback=default)


class HiredisPacker:
    """Packs a command's arguments in one `hiredis.pack_command` call. Arguments hiredis
    does not take (bytearray, memoryview) go through redis-py's own packer, and so do bad
    ones (None, bool), which it refuses with its usual DataError."""

    def __init__(self, *, fallback: Any) -> None:
        self._fallback = fallback

    def pack(self, *args: Any) -> list[bytes]:
        head = args[0]
        # As redis-py does: a command name with spaces ("CLUSTER INFO") is several words.
        if isinstance(head, str):
            args = (*head.encode().split(), *args[1:])
        elif b" " in head:
            args = (*head.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return list(self._fallback.pack(*args))


def key_namespace(namespace: str) -> str:
    """`namespace`, checked as the prefix of every key a part of the Redis tier writes.

    Braces are refused: Redis Cluster hashes only what the first `{...}` of a key holds,
    and the keys put their own braces after the prefix (`rx:user:{u1}`, `{rx:events:3}:
    counts`) so that what one script touches shares a slot; a brace in the prefix would
    move those tags and split them over slots (CROSSSLOT) or pile every key on one node.

    >>> key_namespace("shop-eu")
    'shop-eu'
    """
    if not namespace or any(c in namespace for c in "{} \t\r\n"):
        raise ValueError(f"namespace {namespace!r}: use a non-empty prefix without braces or "
                         "whitespace, such as 'rx' or 'shop-eu'")  # fmt: skip
    return namespace


def connect(url: str, *, socket_timeout_s: float = 2.0) -> redis.Redis | redis.RedisCluster:
    """A client for `redis://...` (one server) or `redis+cluster://...` (any cluster node).

    It fails fast when Redis is unreachable, so the request path degrades instead of
    hanging: a 1 s connect timeout, and one immediate retry on a new connection (a restarted
    server leaves the pool's sockets dead) instead of redis-py's retries with backoff, which
    hold a call for seconds. A cluster keeps redis-py's retries: they ride out a failover.
    """
    options: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_timeout": socket_timeout_s}
    if url.startswith(("redis://", "redis+cluster://")):  # plain TCP (not rediss://, unix://)
        options["connection_class"] = PackedConnection
    if url.startswith("redis+cluster://"):
        base = "redis://" + url.removeprefix("redis+cluster://")
        return redis.RedisCluster.from_url(base, **options)
    retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
    return redis.Redis.from_url(url, retry=retry, **options)
