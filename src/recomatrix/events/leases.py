"""Which partitions of the Redis Streams bus each consumer of a group holds.

A consumer holds a lease per partition it reads (`redis_lua.LEASE_LUA`: renewed on every
call, shared out evenly among the group's live consumers). This keeps, per (group,
consumer), what the last renewal said it holds, the partitions whose pending entries it
must take over at its next read (newly acquired ones, or all after it lost a lease or a
reply), and an epoch that changes whenever ownership may have changed, so a worker knows
when the user states it cached may be stale.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import cast

import redis

from recomatrix.events.redis_lua import LEASE_LUA
from recomatrix.features.base import Fence

Consumer = tuple[str, str]  # (group, consumer)


class PartitionLeases:
    """Lease bookkeeping of the consumers one `RedisStreamsBus` serves."""

    def __init__(
        self, client: redis.Redis | redis.RedisCluster, namespace: str, partitions: int,
        lease_ms: int,
    ) -> None:  # fmt: skip
        self.namespace, self.partitions, self.lease_ms = namespace, partitions, lease_ms
        self._script = client.register_script(LEASE_LUA)
        self._lock = threading.Lock()
        self._held: dict[Consumer, frozenset[int]] = {}  # as of the last renewal
        self._taking_over: dict[Consumer, set[int]] = {}  # to take over at the next read
        self._epochs: dict[Consumer, int] = defaultdict(int)

    def renew(self, group: str, consumer: str) -> tuple[list[int], list[int]]:
        """Renew the consumer's leases: the partitions it holds (sorted) and those it
        acquired with this call."""
        prefix = self._prefix(group)
        keys = [f"{prefix}:members"] + [f"{prefix}:{p}" for p in range(self.partitions)]
        owned, acquired = cast(
            list[list[int]], self._script(keys=keys, args=[consumer, self.lease_ms])
        )
        held = sorted(p - 1 for p in owned)
        with self._lock:
            self._held[(group, consumer)] = frozenset(held)
        return held, [p - 1 for p in acquired]

    def held(self, group: str, consumer: str) -> frozenset[int]:
        with self._lock:
            return self._held.get((group, consumer), frozenset())

    def take_over_later(self, group: str, consumer: str, partitions: Iterable[int]) -> None:
        """Mark `partitions` for taking over at the consumer's next read; a new epoch."""
        with self._lock:
            self._taking_over.setdefault((group, consumer), set()).update(partitions)
            self._epochs[(group, consumer)] += 1

    def due(self, group: str, consumer: str, owned: Iterable[int]) -> set[int]:
        """The marked partitions the consumer still holds (`owned`), unmarked."""
        with self._lock:
            return self._taking_over.pop((group, consumer), set()) & set(owned)

    def epoch(self, group: str, consumer: str) -> int:
        with self._lock:
            return self._epochs[(group, consumer)]

    def fence(self, group: str, consumer: str, partition_of: Callable[[str], int]) -> Fence:
        """A user may be written only while `consumer` holds its partition's lease."""
        prefix = self._prefix(group)
        return Fence(consumer, lambda user_id: f"{prefix}:{partition_of(user_id)}")

    def _prefix(self, group: str) -> str:
        return f"{self.namespace}:lease:{{{group}}}"
