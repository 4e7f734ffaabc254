"""What a stream worker applied since its last flush and has not stored yet.

On a partitioned bus (`OwnsPartitions`) a worker is the only writer of its users, so it need
not write a user after every batch: it keeps the states it changed here and writes them, with
the ids of the events applied to them, at its next flush (every `stream.item_flush_s`), in the
same call for all the batches applied since. Then it adds the batches' item counts and
acknowledges their deliveries, as it did for items alone before.

Under load a worker applies tens of small batches a second, and a user with events in each
was encoded and written each time (`bench/tier_steady.py`: the largest part of a worker's
CPU after reading the stream). The order of the writes keeps a crash safe exactly as with
one write per batch: nothing is acknowledged before the users and the items are stored, so
a crash before the flush leaves every batch since the last one pending on the bus, and its
events were not recorded as applied, so they are applied again, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from recomatrix.features.state import UserState
from recomatrix.types import Event, UserId


class PendingWrites:
    """Users changed, events applied, item counts and deliveries waiting for the flush."""

    __slots__ = ("applied", "deliveries", "fields", "items", "users")

    def __init__(self) -> None:
        self.users: dict[UserId, UserState] = {}  # the newest state of each changed user
        self.fields: dict[UserId, set[str]] = {}  # the fields changed since it was stored
        self.applied: dict[str, Event] = {}  # the events applied to `users`, by id, in order
        self.items: dict[str, Event] = {}  # events whose item counts wait, by event id
        self.deliveries: list[str] = []  # message ids to acknowledge once all is stored

    def applied_already(self, event_ids: Sequence[str]) -> list[bool]:
        """True for each event applied since the last flush (not yet recorded in the store)."""
        return [event_id in self.applied for event_id in event_ids]

    def held(self, user_ids: Iterable[UserId]) -> dict[UserId, UserState]:
        """The pending states of these users (to change further; none are copies)."""
        return {u: self.users[u] for u in user_ids if u in self.users}

    def add_users(
        self,
        states: Mapping[UserId, UserState],
        changed: Mapping[UserId, set[str]],
        applied: Iterable[Event],
    ) -> None:
        self.users.update(states)
        for user_id, names in changed.items():
            self.fields.setdefault(user_id, set()).update(names)
        self.applied.update((event.event_id, event) for event in applied)

    def add_deliveries(self, events: Iterable[Event], message_ids: Iterable[str]) -> None:
        """Every delivered event counts for its item, not only those new to the users: a batch
        delivered again after a crash between its user write and the flush finds its events
        "seen", but their items never counted them (items skip what they counted)."""
        for event in events:
            self.items.setdefault(event.event_id, event)
        self.deliveries += message_ids

    def users_stored(self) -> None:
        self.users, self.fields, self.applied = {}, {}, {}
