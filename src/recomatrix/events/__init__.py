"""The event bus: where validated events wait for the stream processor."""

from __future__ import annotations

from collections.abc import Callable

from recomatrix.backends import open_by_url
from recomatrix.events.base import Delivery, EventBus
from recomatrix.events.memory import MemoryEventBus


def _open_redis(url: str) -> EventBus:
    from recomatrix.events.redis import RedisStreamsBus  # the `redis` extra, on demand

    return RedisStreamsBus.from_url(url)


# Backends by URL scheme.
BACKENDS: dict[str, Callable[[str], EventBus]] = {
    "memory": lambda url: MemoryEventBus(),
    "redis": _open_redis,
    "redis+cluster": _open_redis,
}


def open_bus(url: str) -> EventBus:
    """Open an event bus by URL, e.g. `memory://` or `redis://127.0.0.1:6379/0?partitions=8`."""
    return open_by_url("event bus", BACKENDS, url)


__all__ = ["BACKENDS", "Delivery", "EventBus", "MemoryEventBus", "open_bus"]
