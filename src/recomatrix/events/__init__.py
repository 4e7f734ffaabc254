"""The event bus: where validated events wait for the stream processor."""

from __future__ import annotations

from collections.abc import Callable

from recomatrix.events.base import Delivery, EventBus
from recomatrix.events.memory import MemoryEventBus

# Backends by URL scheme; the Redis Streams tier registers here when it lands.
BACKENDS: dict[str, Callable[[str], EventBus]] = {
    "memory": lambda url: MemoryEventBus(),
}


def open_bus(url: str) -> EventBus:
    """Open an event bus by URL, e.g. `memory://`."""
    scheme = url.split("://", 1)[0]
    if scheme not in BACKENDS:
        raise ValueError(
            f"unknown event bus URL scheme {scheme!r} in {url!r}; use one of: "
            + ", ".join(f"{s}://" for s in BACKENDS)
        )
    return BACKENDS[scheme](url)


__all__ = ["BACKENDS", "Delivery", "EventBus", "MemoryEventBus", "open_bus"]
