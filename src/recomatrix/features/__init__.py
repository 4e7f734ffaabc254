"""The online feature store (live state per user and item) and the offline Parquet log."""

from __future__ import annotations

from collections.abc import Callable

from recomatrix.features.base import OnlineStore
from recomatrix.features.memory import MemoryOnlineStore
from recomatrix.features.state import ItemState, ItemStats, SessionVector, UserState
from recomatrix.features.windows import WINDOWS, Window, WindowCounts

# Backends by URL scheme; the Redis tier registers here when it lands.
BACKENDS: dict[str, Callable[[str], OnlineStore]] = {
    "memory": lambda url: MemoryOnlineStore(),
}


def open_store(url: str) -> OnlineStore:
    """Open an online store by URL, e.g. `memory://`."""
    scheme = url.split("://", 1)[0]
    if scheme not in BACKENDS:
        raise ValueError(
            f"unknown online store URL scheme {scheme!r} in {url!r}; use one of: "
            + ", ".join(f"{s}://" for s in BACKENDS)
        )
    return BACKENDS[scheme](url)


__all__ = [
    "WINDOWS",
    "ItemState",
    "ItemStats",
    "MemoryOnlineStore",
    "OnlineStore",
    "SessionVector",
    "UserState",
    "Window",
    "WindowCounts",
    "open_store",
]
