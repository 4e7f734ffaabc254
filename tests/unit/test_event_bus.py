"""The in-process event bus delivers at least once, in order, to every consumer group."""

from __future__ import annotations

import threading

import pytest

from recomatrix.events import MemoryEventBus, open_bus
from recomatrix.types import Event


def ev(i: int) -> Event:
    return Event(f"e{i}", "u1", "i1", "click", float(i))


def test_each_group_sees_every_event_in_order() -> None:
    bus = MemoryEventBus()
    bus.publish([ev(i) for i in range(5)])
    for group in ("a", "b"):
        got = bus.consume(group, "c1", max_events=10, block_s=0)
        assert [d.event.event_id for d in got] == [f"e{i}" for i in range(5)]


def test_unacknowledged_events_are_reclaimed_by_another_consumer() -> None:
    bus = MemoryEventBus()
    bus.publish([ev(1), ev(2)])
    first = bus.consume("g", "dies", max_events=10, block_s=0)
    bus.ack("g", [first[0].message_id])
    reclaimed = bus.reclaim("g", "survivor", min_idle_s=0.0)
    assert [d.event.event_id for d in reclaimed] == ["e2"]
    assert bus.lag("g") == 1
    bus.ack("g", [reclaimed[0].message_id])
    assert bus.lag("g") == 0


def test_consume_blocks_until_an_event_arrives() -> None:
    bus = MemoryEventBus()
    timer = threading.Timer(0.05, lambda: bus.publish([ev(1)]))
    timer.start()
    got = bus.consume("g", "c", max_events=10, block_s=5)
    assert [d.event.event_id for d in got] == ["e1"]


def test_full_bus_refuses_the_whole_batch() -> None:
    bus = MemoryEventBus(max_pending_log=3)
    bus.publish([ev(1), ev(2)])
    with pytest.raises(OverflowError):
        bus.publish([ev(3), ev(4)])
    assert [d.event.event_id for d in bus.consume("g", "c", max_events=9, block_s=0)] == [
        "e1",
        "e2",
    ]


def test_log_is_trimmed_once_acknowledged() -> None:
    bus = MemoryEventBus()
    bus.publish([ev(i) for i in range(10_000)])
    got = bus.consume("g", "c", max_events=10_000, block_s=0)
    bus.ack("g", [d.message_id for d in got])
    assert bus.lag("g") == 0
    assert len(bus._log) == 0


def test_unknown_url_scheme_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="memory://"):
        open_bus("kafka://broker")
