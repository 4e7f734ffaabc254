"""The online feature store (live state per user and item) and the offline Parquet log."""

from __future__ import annotations

from collections.abc import Callable

from recomatrix.backends import open_by_url
from recomatrix.features.base import ItemCount, OnlineStore
from recomatrix.features.memory import MemoryOnlineStore
from recomatrix.features.profiles import UserProfiles
from recomatrix.features.state import ItemState, ItemStats, SessionVector, UserState
from recomatrix.features.windows import WINDOWS, Window, WindowCounts


def _open_redis(url: str) -> OnlineStore:
    from recomatrix.features.redis import RedisOnlineStore  # the `redis` extra, on demand

    return RedisOnlineStore.from_url(url)


# Backends by URL scheme.
BACKENDS: dict[str, Callable[[str], OnlineStore]] = {
    "memory": lambda url: MemoryOnlineStore(),
    "redis": _open_redis,
    "redis+cluster": _open_redis,
}


def open_store(url: str) -> OnlineStore:
    """Open an online store by URL, e.g. `memory://` or `redis://127.0.0.1:6379/0`."""
    return open_by_url("online store", BACKENDS, url)


__all__ = [
    "BACKENDS",
    "WINDOWS",
    "ItemCount",
    "ItemState",
    "ItemStats",
    "MemoryOnlineStore",
    "OnlineStore",
    "SessionVector",
    "UserProfiles",
    "UserState",
    "Window",
    "WindowCounts",
    "open_store",
]
