"""The EventBus seam: an append-only, per-partition ordered log read by consumer groups."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from recomatrix.features.base import ItemCount
from recomatrix.types import Event, ItemId


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event handed to a consumer; ack `message_id` once its effects are stored."""

    message_id: str
    event: Event


class EventBus(Protocol):
    """At-least-once delivery: an event stays pending for its group until acknowledged."""

    def publish(self, events: Sequence[Event]) -> None:
        """Append events to the log (all or nothing)."""
        ...

    def consume(
        self, group: str, consumer: str, *, max_events: int, block_s: float
    ) -> list[Delivery]:
        """Up to `max_events` new events for `group`, waiting up to `block_s` for the first."""
        ...

    def ack(self, group: str, message_ids: Sequence[str]) -> None:
        """Mark deliveries as processed by `group`."""
        ...

    def reclaim(self, group: str, consumer: str, *, min_idle_s: float) -> list[Delivery]:
        """Take over deliveries left pending longer than `min_idle_s` (a consumer died)."""
        ...

    def lag(self, group: str) -> int:
        """Events published but not yet applied by `group`: unacknowledged (on a bus with
        a count relay, plus its entries not yet counted by their holder). 0: all applied."""
        ...


@runtime_checkable
class OwnsPartitions(Protocol):
    """A bus that hands each user's events to one consumer of a group at a time (a lease on
    the user's partition), so that consumer is the only writer of the user's state."""

    def ownership_epoch(self, group: str, consumer: str) -> int:
        """A number that changes whenever `consumer` acquires a partition (at its first
        `consume`, or taking one over): what it cached about users before may be stale."""
        ...

    def lost_lease(self, group: str, consumer: str) -> None:
        """A write fenced by `consumer`'s leases was refused: at its next `consume` it learns
        again which partitions it holds and takes over what it left pending on them (which
        also changes its `ownership_epoch`)."""
        ...

    def backlogged(self, group: str, consumer: str) -> bool:
        """Whether `consumer`'s last `consume` stopped short of what was waiting: it read as
        many entries as it asked a stream for, or holds events read past `max_events`."""
        ...

    def held_partitions(self, group: str, consumer: str) -> frozenset[int]:
        """The partitions `consumer` held at its last `consume` (none before the first)."""
        ...


# Where a take ended, per partition: the last relay entry id it read.
Receipt = dict[int, bytes]


class CountRelay(Protocol):
    """Moves item counts to the consumer holding the items' partition."""

    def partition_of(self, item_id: ItemId) -> int:
        """The partition whose holder counts the item."""
        ...

    def forward(self, counts: Mapping[int, Sequence[ItemCount]]) -> None:
        """Append counts (by their items' partition) for those partitions' holders."""
        ...

    def take(self, partitions: Collection[int]) -> tuple[list[ItemCount], Receipt]:
        """The counts forwarded to `partitions` and not yet released, oldest first."""
        ...

    def release(self, receipt: Receipt) -> None:
        """Drop what a `take` returned, once counted."""
        ...
