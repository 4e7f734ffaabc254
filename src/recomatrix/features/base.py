"""The OnlineStore seam: live per-user and per-item state, read in one batch call per stage."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from recomatrix.features.state import ItemState, UserState
from recomatrix.types import ItemId, UserId


class ItemCount(NamedTuple):
    """Add `amount` of `field` (an event type or `watch_seconds`) at event time `ts`.

    Counted at most once per (`event_id`, `item_id`), however often it is sent again.
    A tuple, not a dataclass: the stream processor makes one or two per event.
    """

    event_id: str
    item_id: ItemId
    field: str
    ts: float
    amount: float = 1.0
    ts_given: bool = True  # the event's `Event.ts_given`: whether `ts` places its record


def distinct_counts(counts: Sequence[ItemCount]) -> list[ItemCount]:
    """The counts with a row repeated in the same call (same event, item and field: the
    same count sent twice, as forwarded counts can be) kept once, the first."""
    unique: dict[tuple[str, ItemId, str], ItemCount] = {}
    for count in counts:
        unique.setdefault((count.event_id, count.item_id, count.field), count)
    return list(unique.values()) if len(unique) < len(counts) else list(counts)


class LeaseLost(RuntimeError):
    """A fenced user write found its writer no longer holding a user's partition (another
    worker took it over, say after a pause longer than the lease): nothing was written."""


@dataclass(frozen=True, slots=True)
class Fence:
    """Who may write users: a store that takes a fence writes a user only while the lease
    `lease_key(user_id)` names `holder`, checked atomically with the write where it can."""

    holder: str
    lease_key: Callable[[UserId], str]


class OnlineStore(Protocol):
    """Where the stream processor writes and the request path reads.

    Reads and writes are batches: one call (one round trip) per request stage, never one
    per item. A user is written by one stream worker at a time (the bus partitions events
    by user), so users are read, changed and put back; items are touched by every worker,
    so their counters only ever grow through atomic `add_item_counts`.
    """

    def seen_events(
        self, event_ids: Sequence[str], times: Sequence[float | None] | None = None
    ) -> list[bool]:
        """True for each event id already recorded by `put_users(applied_events=...)`.
        `times`: each event's time, as given to `put_users(applied_times=...)` (a store may
        place an id's record by it; give both or neither; None for an event whose time a
        retry would not repeat)."""
        ...

    def get_users(self, user_ids: Sequence[UserId]) -> list[UserState | None]:
        """The state of each user, None for a user the store has never seen (or forgot)."""
        ...

    def put_users(
        self,
        states: Sequence[UserState],
        *,
        applied_events: Sequence[str] = (),
        changed: Mapping[UserId, Collection[str]] | None = None,
        applied_times: Sequence[float | None] | None = None,
    ) -> None:
        """Store user states and record `applied_events` as applied, in one atomic write.

        `changed` (user id -> field names) says which fields of a state changed since it was
        read; a store may write only those. Users it does not name are written whole.
        `applied_times`: the applied events' times (see `seen_events`)."""
        ...

    def get_items(self, item_ids: Sequence[ItemId]) -> list[ItemState | None]:
        """The live counters of each item, None for an item without events."""
        ...

    def add_item_counts(self, counts: Sequence[ItemCount]) -> None:
        """Add to item windows atomically; an engaged type also adds to `total_engaged`."""
        ...

    def delete_items(self, item_ids: Sequence[ItemId]) -> None:
        """Forget items: their counters and their trending entries."""
        ...

    def set_trending(self, scores: Mapping[ItemId, float]) -> None:
        """Update trending scores; a score <= 0 removes the item from the table."""
        ...

    def top_trending(self, k: int) -> list[tuple[ItemId, float]]:
        """The k items with the highest trending score, best first."""
        ...


@runtime_checkable
class RemembersUserWrites(Protocol):
    """A store that stamps every user it writes, and can tell whether a user's stored state
    is still the one it last wrote (nothing wrote, deleted or restored it since): a stream
    worker then keeps its cached copy instead of reading and decoding the whole state again
    (`stream.user_cache`)."""

    def unchanged_since_written(self, user_ids: Sequence[UserId]) -> list[bool]:
        """True for each user whose stored state carries this store's last stamp for it;
        False for one it never wrote (or forgot), and for one written by anything since."""
        ...
