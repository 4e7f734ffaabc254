"""The arguments of the Redis store's item counting script (`redis_lua.ITEM_COUNT_LUA`):
per call, the counted-events sets it looks in and writes to, and per item its counts summed
per field and 10 s bucket, with each event id's group of marker sets (`features/markers.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from recomatrix.features.base import ItemCount, distinct_counts
from recomatrix.features.markers import FINE_S, PlanAt
from recomatrix.features.state import ENGAGED
from recomatrix.features.windows import FIELD_INDEX, WINDOWS
from recomatrix.types import ItemId


class CallMarkers:
    """The counted-events sets one ITEM_COUNT_LUA call looks in and writes to (`suffixes`,
    in KEYS order), and its groups: the ids of events in one 10 s of event time share them
    (`groups`, 1-based: [the set written, its expiry in unix ms, the sets looked in])."""

    def __init__(self, plan: PlanAt) -> None:
        self.plan = plan
        self.suffixes: dict[str, int] = {}
        self.groups: list[list[Any]] = []
        self._group_of_bucket: dict[int | None, int] = {}  # None: placed by the clock
        self._group_of_sets: dict[tuple[str, tuple[str, ...]], int] = {}

    def group_of(self, ts: float, ts_given: bool = True) -> int:
        placing = ts if ts_given else None
        bucket = None if placing is None else int(placing // FINE_S)
        group = self._group_of_bucket.get(bucket)
        if group is None:
            slot, looked = self.plan.write(placing), self.plan.lookup(placing)
            # Far from the clock, events of many 10 s share the sets of the time of applying.
            sets = (slot.suffix, tuple(looked))
            group = self._group_of_sets.get(sets)
            if group is None:
                indices = [self._index(suffix) for suffix in looked]
                self.groups.append([self._index(slot.suffix), slot.expire_at_ms, indices])
                group = self._group_of_sets[sets] = len(self.groups)
            self._group_of_bucket[bucket] = group
        return group

    def _index(self, suffix: str) -> int:
        return self.suffixes.setdefault(suffix, len(self.suffixes) + 1)


def summed(
    counts: Sequence[ItemCount], prefix: str, group_of: Callable[[float, bool], int]
) -> list[Any]:
    """One item's counts for ITEM_COUNT_LUA: total engaged, newest time, its event ids
    (after `prefix`), (field, time, amount) per field and 10 s bucket (a bucket of every
    wider window too), and each id's group of marker sets (`group_of` its event's time)."""
    groups: dict[str, int] = {}
    for c in counts:
        member = prefix + c.event_id
        if member not in groups:
            groups[member] = group_of(c.ts, c.ts_given)
    ids = list(groups)
    if len(ids) < len(counts):  # watch time shares its event's id, or a row came twice
        counts = distinct_counts(counts)
    finest = WINDOWS[0]
    sums: dict[tuple[int, int], list[float]] = {}  # (field, bucket) -> [amount, a time in it]
    for c in counts:
        entry = sums.setdefault((FIELD_INDEX[c.field], finest.bucket_of(c.ts)), [0.0, c.ts])
        entry[0] += c.amount
    values: list[float] = []
    for (field, _), (amount, ts) in sums.items():
        values += [field, ts, amount]
    engaged = sum(c.amount for c in counts if c.field in ENGAGED)
    return [engaged, max(c.ts for c in counts), ids, values, list(groups.values())]


def member_prefix(item_id: ItemId) -> str:
    """What precedes an event id in a shared counted-events set: the item id's length in
    bytes, then the item id, so no (item, event) pair can spell another."""
    return f"{len(item_id.encode())}:{item_id}"
