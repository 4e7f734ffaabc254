"""The in-process EventBus: a list-backed log with consumer-group offsets and pending entries."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from recomatrix.events.base import Delivery
from recomatrix.types import Event


@dataclass(slots=True)
class _Group:
    next_offset: int = 0
    # message offset -> (consumer, delivered at monotonic time)
    pending: dict[int, tuple[str, float]] = field(default_factory=dict)


class MemoryEventBus:
    """Satisfies `EventBus` inside one process; the log is trimmed once every group acked.

    >>> bus = MemoryEventBus()
    >>> bus.publish([Event("e1", "u1", "i1", "click", 1.0)])
    >>> [d.event.event_id for d in bus.consume("g", "c", max_events=10, block_s=0)]
    ['e1']
    >>> bus.lag("g")
    1
    """

    def __init__(self, *, max_pending_log: int = 1_000_000) -> None:
        self._log: list[Event] = []
        self._base = 0  # offset of self._log[0]
        self._groups: dict[str, _Group] = {}
        self._cond = threading.Condition()
        self._max_log = max_pending_log

    def publish(self, events: Sequence[Event]) -> None:
        with self._cond:
            if len(self._log) + len(events) > self._max_log:
                raise OverflowError(
                    f"event bus is full ({self._max_log} unacknowledged events); retry later"
                )
            self._log.extend(events)
            self._cond.notify_all()

    def consume(
        self, group: str, consumer: str, *, max_events: int, block_s: float
    ) -> list[Delivery]:
        deadline = time.monotonic() + block_s
        with self._cond:
            state = self._groups.setdefault(group, _Group(next_offset=self._base))
            while state.next_offset >= self._base + len(self._log):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            start = state.next_offset
            end = min(start + max_events, self._base + len(self._log))
            now = time.monotonic()
            for offset in range(start, end):
                state.pending[offset] = (consumer, now)
            state.next_offset = end
            return [Delivery(str(o), self._log[o - self._base]) for o in range(start, end)]

    def ack(self, group: str, message_ids: Sequence[str]) -> None:
        with self._cond:
            state = self._groups.setdefault(group, _Group(next_offset=self._base))
            for message_id in message_ids:
                state.pending.pop(int(message_id), None)
            self._trim()
            self._cond.notify_all()

    def reclaim(self, group: str, consumer: str, *, min_idle_s: float) -> list[Delivery]:
        with self._cond:
            state = self._groups.setdefault(group, _Group(next_offset=self._base))
            now = time.monotonic()
            stale = sorted(o for o, (_, at) in state.pending.items() if now - at >= min_idle_s)
            for offset in stale:
                state.pending[offset] = (consumer, now)
            return [Delivery(str(o), self._log[o - self._base]) for o in stale]

    def lag(self, group: str) -> int:
        with self._cond:
            state = self._groups.get(group)
            if state is None:
                return len(self._log)
            return self._base + len(self._log) - state.next_offset + len(state.pending)

    def wait_idle(self, group: str, *, timeout_s: float) -> bool:
        """Block until `group` has acknowledged everything published; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.lag(group) > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _trim(self) -> None:
        # Drop the prefix every group has read and acknowledged.
        if not self._groups:
            return
        floor = min(
            min(g.pending, default=g.next_offset) if g.pending else g.next_offset
            for g in self._groups.values()
        )
        drop = floor - self._base
        if drop > 4096 or (drop > 0 and drop == len(self._log)):
            del self._log[:drop]
            self._base = floor
