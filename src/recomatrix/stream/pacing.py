"""How hard a stream worker on a partitioned bus is loaded, and what it does about it.

A worker there adds its batches' item counts (and acknowledges them) at a flush every
`item_flush_s`, one counting script per item for many batches. Two readings of its load
change that:

- `merges_little`: the last interval's events averaged under `item_flush_merge_below` per
  distinct item (a light load, a long-tail catalogue). Waiting would save few scripts, so
  counts are added with every batch, and a click shows on its item at once.
- `paces`: a batch's users averaged at least `pace_events_per_user` events each, and the
  bus had no more. Most of a batch's cost is per user (its state updated, encoded and
  written), so a worker reading as fast as it can under hot users spends it again and
  again on a few events each; it waits instead until `item_flush_s` after its last read,
  writing each user once per interval (and flushing every such cycle).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from recomatrix.events.base import Delivery
from recomatrix.stream.settings import StreamSettings
from recomatrix.types import Event, ItemId


class LoadGauge:
    """Events per distinct item over intervals of `item_flush_s`, and the pacing rule."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        # Events and distinct items delivered in the current interval, and the events per
        # item of the last one; a worker starts out flushing with every batch, until an
        # interval says waiting would merge.
        self._started, self._events = time.monotonic(), 0
        self._items: set[ItemId] = set()
        self._per_item = 1.0

    def counted(self, events: Sequence[Event]) -> None:
        """Events whose items this worker counts; closes the interval once it is over."""
        self._items.update(event.item_id for event in events)
        self._events += len(events)
        if time.monotonic() - self._started >= self.settings.item_flush_s:
            self._per_item = self._events / max(1, len(self._items))
            self._started, self._events, self._items = time.monotonic(), 0, set()

    def merges_little(self) -> bool:
        return self._per_item < self.settings.item_flush_merge_below

    def paces(self, deliveries: Sequence[Delivery], *, full: bool, backlogged: bool) -> bool:
        """Whether to wait before reading again after this batch (`full`: it reached the
        batch size; `backlogged`: the bus says the read stopped at what it asked for)."""
        threshold = self.settings.pace_events_per_user
        if threshold <= 0 or not deliveries or full or backlogged or self.merges_little():
            return False
        return len(deliveries) >= threshold * len({d.event.user_id for d in deliveries})
