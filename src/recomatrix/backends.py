"""Opening a backend by URL: one registry dict per seam, one lookup shared by all of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

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


def split_url_options(
    seam: str, url: str, allowed: Mapping[str, Callable[[str], Any]]
) -> tuple[str, dict[str, Any]]:
    """(`url` without its query, the query's options parsed by `allowed`'s converters).

    >>> split_url_options("bus", "redis://h:1/0?partitions=8", {"partitions": int})
    ('redis://h:1/0', {'partitions': 8})
    """
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query):
        if key not in allowed:
            raise ValueError(
                f"unknown option {key!r} in {seam} URL {url!r}; use: " + ", ".join(sorted(allowed))
            )
        options[key] = allowed[key](value)
    return urlunsplit(parts._replace(query="")), options
