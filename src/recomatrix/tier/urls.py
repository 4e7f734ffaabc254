"""The server tier's one Redis URL: each part gets the query options it reads.

`--redis-url redis://host:6379/0?claim_ttl_s=600&partitions=16` reaches the online store
(options `features.redis.URL_OPTIONS`), the event bus (`events.redis.URL_OPTIONS`) and the
item feed (`tier.broadcast.URL_OPTIONS`); an option several read (`namespace`) goes to each
of them, so deployments under two namespaces share nothing. An option no part reads is an
error that names the valid ones.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from recomatrix.events.redis import URL_OPTIONS as BUS_OPTIONS
from recomatrix.features.redis import URL_OPTIONS as STORE_OPTIONS
from recomatrix.features.resp import key_namespace
from recomatrix.tier.broadcast import URL_OPTIONS as FEED_OPTIONS

Part = Literal["store", "bus", "feed"]
_READS: dict[Part, frozenset[str]] = {
    "store": frozenset(STORE_OPTIONS),
    "bus": frozenset(BUS_OPTIONS),
    "feed": frozenset(FEED_OPTIONS),
}


def part_url(url: str, part: Part) -> str:
    """`url` with only the options `part` reads.

    >>> part_url("redis://h:1/0?claim_ttl_s=600&partitions=16", "bus")
    'redis://h:1/0?partitions=16'
    >>> part_url("redis://h:1/0?claim_ttl_s=600&namespace=eu", "feed")
    'redis://h:1/0?namespace=eu'
    """
    parts, options = _split(url)
    mine = [(name, value) for name, value in options if name in _READS[part]]
    return urlunsplit(parts._replace(query=urlencode(mine)))


def bare_url(url: str) -> str:
    """`url` without its options (what redis-py connects to), once every option is one a
    part reads and the namespace one the tier takes (`key_namespace`).

    >>> bare_url("redis://h:1/0?claim_ttl_s=600&namespace=eu")
    'redis://h:1/0'
    """
    parts, options = _split(url)
    for name, value in options:
        if name == "namespace":
            key_namespace(value)
    return urlunsplit(parts._replace(query=""))


def _split(url: str) -> tuple[SplitResult, list[tuple[str, str]]]:
    """The URL's parts and its options; an option no part reads is an error naming them."""
    parts = urlsplit(url)
    options = parse_qsl(parts.query)
    known = _READS["store"] | _READS["bus"] | _READS["feed"]
    unknown = sorted({name for name, _ in options} - known)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} in the Redis URL {url!r}; "
                         f"use: {', '.join(sorted(known))}")  # fmt: skip
    return parts, options
