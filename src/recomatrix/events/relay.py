"""Item counts handed to the stream worker that owns the items (issue #5).

A partitioned bus gives each worker its own users, but every worker's events touch every
item: with two workers each item's counters were rewritten by both, at every item flush,
and rewriting an item (`ITEM_COUNT_LUA`) is most of what Redis does under load. Items are
therefore partitioned like users (crc32 of the id % partitions), and the worker holding a
partition's lease counts that partition's items. The others forward those items' counts
to the partition's relay stream `{rx:events:<p>}:items:<group>`, right after applying the
batch and before acknowledging it; the owner takes them at its next item flush, counts
them with its own, then trims what it took.

Ownership only saves work; counting stays correct without it: an item counts an event once
however often it is sent (`ItemCount`), and atomically. So counts forwarded twice (a worker
died between forwarding and acknowledging), taken by two workers (a lease changing hands),
or counted by a worker that has just lost the partition are still counted once, and a
forwarded count is trimmed only after it was counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from typing import cast

import msgspec

from recomatrix.events.base import Receipt
from recomatrix.events.redis import RedisStreamsBus
from recomatrix.features.base import ItemCount
from recomatrix.features.windows import FIELD_INDEX
from recomatrix.types import ItemId

log = logging.getLogger(__name__)

TAKE_ENTRIES = 1000  # relay entries a flush takes per partition at most (one per batch)
PARTITIONS_CACHED = 100_000  # item ids whose partition is remembered


class RedisCountRelay:
    """`CountRelay` on the bus's Redis: one stream per partition and consumer group, in
    the partition's cluster slot; an entry is one batch's counts for that partition."""

    def __init__(self, bus: RedisStreamsBus, group: str) -> None:
        self.client = bus.client
        self.keys = [bus.relay_key(p, group) for p in range(bus.partitions)]
        self._partition_of = bus.partition_of
        self._partitions: dict[ItemId, int] = {}  # a crc32 per event was a tenth of forwarding

    def partition_of(self, item_id: ItemId) -> int:
        partition = self._partitions.get(item_id)
        if partition is None:
            if len(self._partitions) >= PARTITIONS_CACHED:
                self._partitions.clear()
            partition = self._partitions[item_id] = self._partition_of(item_id)
        return partition

    def forward(self, counts: Mapping[int, Sequence[ItemCount]]) -> None:
        if not counts:
            return
        pipe = self.client.pipeline(transaction=False)
        for partition, rows in counts.items():
            pipe.xadd(self.keys[partition], {"c": _ENCODER.encode(rows)})
        pipe.execute()

    def take(self, partitions: Collection[int]) -> tuple[list[ItemCount], Receipt]:
        if not partitions:
            return [], {}
        held = sorted(partitions)
        pipe = self.client.pipeline(transaction=False)
        for partition in held:
            pipe.xrange(self.keys[partition], count=TAKE_ENTRIES)
        counts: list[ItemCount] = []
        receipt: Receipt = {}
        for partition, entries in zip(held, pipe.execute(), strict=True):
            for entry_id, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], entries):
                counts += _decoded(self.keys[partition], entry_id, fields)
                receipt[partition] = entry_id
        return counts, receipt

    def release(self, receipt: Receipt) -> None:
        if not receipt:
            return
        pipe = self.client.pipeline(transaction=False)
        for partition, last in receipt.items():
            # MINID drops entries older than the id: those this take read, and none added
            # since (ids only grow). Another taker's trim drops only what it read too.
            pipe.xtrim(self.keys[partition], minid=_after(last), approximate=False)
        pipe.execute()

    def pending(self) -> int:
        """Relay entries forwarded and not yet released (the bus's `lag` adds them)."""
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys:
            pipe.xlen(key)
        return sum(cast(list[int], pipe.execute()))


def _decoded(key: str, entry_id: bytes, fields: dict[bytes, bytes]) -> list[ItemCount]:
    """An entry's counts, without (logged) an entry or rows no worker of this version
    wrote: the store would refuse them at every flush of the partition's holder, which
    would then never acknowledge anything again."""
    try:
        counts = _DECODER.decode(fields[b"c"])
    except (KeyError, msgspec.DecodeError, msgspec.ValidationError) as error:
        log.error("relay %s: dropping entry %s, which holds no item counts (%s)", key,
                  entry_id.decode(), error)  # fmt: skip
        return []
    valid = [c for c in counts if c.field in FIELD_INDEX and c.event_id and c.item_id
             and math.isfinite(c.ts) and math.isfinite(c.amount)]  # fmt: skip
    if len(valid) < len(counts):
        log.error("relay %s: dropping %d rows of entry %s that no store can count", key,
                  len(counts) - len(valid), entry_id.decode())  # fmt: skip
    return valid


def _after(entry_id: bytes) -> str:
    """The smallest stream id above `entry_id` ("ms-seq")."""
    ms, seq = entry_id.decode().split("-")
    return f"{ms}-{int(seq) + 1}"


_ENCODER = msgspec.msgpack.Encoder()  # an ItemCount (a NamedTuple) goes as an array
_DECODER = msgspec.msgpack.Decoder(list[ItemCount])
