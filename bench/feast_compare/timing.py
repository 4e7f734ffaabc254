"""One online feature fetch, 1 user + 300 items, timed the same way for recomatrix's
RedisOnlineStore and for Feast's Redis online store (`compare.py`).

Each call draws its user and items from the same seeded generator, so both stores are
asked for exactly the same keys in the same order. Two figures per store: the fetch as
the store's API returns it, and the fetch plus reading every value into Python (what a
caller then has in hand: for ours, the 1 h counters of each item; for Feast, `to_dict()`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from recomatrix.bench.common import percentiles
from recomatrix.features.redis import RedisOnlineStore

WARMUP = 100
Fetch = Callable[[str, list[str]], Callable[[], object]]  # (user, items) -> read the values


def requests(
    users: Sequence[str], items: Sequence[str], *, calls: int, per_call: int, seed: int = 0
) -> Iterator[tuple[str, list[str]]]:
    """The (user, items) of each call, warm-up calls first."""
    rng = random.Random(seed)
    for _ in range(calls + WARMUP):
        yield rng.choice(users), rng.sample(list(items), per_call)


def sample_calls(
    fetch: Fetch, users: Sequence[str], items: Sequence[str], *, calls: int, per_call: int,
    seed: int = 0,
) -> dict[str, list[float]]:  # fmt: skip
    """Milliseconds of `fetch(user, items)` alone and followed by the read it returns."""
    fetch_ms, read_ms = [], []
    chosen_calls = requests(users, items, calls=calls, per_call=per_call, seed=seed)
    for k, (user, chosen) in enumerate(chosen_calls):
        started = time.perf_counter()
        read = fetch(user, chosen)
        fetched = time.perf_counter()
        read()
        done = time.perf_counter()
        if k >= WARMUP:
            fetch_ms.append((fetched - started) * 1000)
            read_ms.append((done - started) * 1000)
    return {"fetch_ms": fetch_ms, "fetch_and_read_ms": read_ms}


def time_calls(
    fetch: Fetch, users: Sequence[str], items: Sequence[str], *, calls: int, per_call: int
) -> dict[str, Any]:
    """p50/p99 of `sample_calls`."""
    samples = sample_calls(fetch, users, items, calls=calls, per_call=per_call)
    return {"calls": calls, "items_per_call": per_call,
            **{key: percentiles(values) for key, values in samples.items()}}  # fmt: skip


def ours(store: RedisOnlineStore) -> Fetch:
    """get_users([user]) + get_items(items): two MGETs; then the 1 h counters of each item."""

    def fetch(user: str, items: list[str]) -> Callable[[], object]:
        store.get_users([user])
        states = store.get_items(items)

        def read() -> object:
            now = time.time()
            return [None if s is None else s.windows.get("1h", now=now) for s in states]

        return read

    return fetch
