"""Opening a backend by URL: one registry dict per seam, one lookup shared by all of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


def open_by_url(seam: str, backends: Mapping[str, Callable[[str], T]], url: str) -> T:
    """The backend registered for `url`'s scheme; an unknown scheme names the valid ones.

    >>> open_by_url("event bus", {"memory": lambda url: "bus"}, "memory://")
    'bus'
    """
    scheme = url.split("://", 1)[0]
    if scheme not in backends:
        raise ValueError(
            f"unknown {seam} URL scheme {scheme!r} in {url!r}; use one of: "
            + ", ".join(f"{s}://" for s in backends)
        )
    return backends[scheme](url)
