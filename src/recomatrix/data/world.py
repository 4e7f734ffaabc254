"""A World: a catalogue, its users and their time-ordered interaction log, as one value.

Both the synthetic generator and the MovieLens loader produce one; demo, training and
evaluation consume it without caring where it came from.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from recomatrix.types import Event, Item, UserId


@dataclass(frozen=True, kw_only=True, slots=True)
class World:
    """Items, users and events of one dataset.

    `events` are sorted by `ts` ascending and have unique `event_id`s. `late_items` do
    not exist at the start of the log: each appears at its `created_at`, and no event
    refers to it earlier (the viral items of a synthetic world; empty for MovieLens).
    """

    name: str
    items: list[Item]
    users: list[UserId]
    events: list[Event]
    late_items: list[Item] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)

    @property
    def all_items(self) -> list[Item]:
        """The catalogue at the end of the log: `items` followed by `late_items`."""
        return [*self.items, *self.late_items]

    @property
    def start_ts(self) -> float:
        """Time of the first event (0.0 for a world without events)."""
        return self.events[0].ts if self.events else 0.0

    @property
    def end_ts(self) -> float:
        """Time of the last event (0.0 for a world without events)."""
        return self.events[-1].ts if self.events else 0.0

    def split_at(self, ts: float) -> tuple[list[Event], list[Event]]:
        """Split the log in time: events strictly before `ts`, and those at or after it.

        >>> from recomatrix.types import Event
        >>> log = [Event("a", "u", "i", "click", 1.0), Event("b", "u", "i", "click", 2.0)]
        >>> before, after = World(name="t", items=[], users=["u"], events=log).split_at(2.0)
        >>> [e.event_id for e in before], [e.event_id for e in after]
        (['a'], ['b'])
        """
        cut = bisect.bisect_left(self.events, ts, key=lambda event: event.ts)
        return self.events[:cut], self.events[cut:]

    def items_by_id(self) -> dict[str, Item]:
        """Every item of the world (late ones included), keyed by id."""
        return {item.item_id: item for item in self.all_items}
