"""A stream worker under hot users reads once per item interval (`StreamSettings.
pace_events_per_user`), and at once otherwise; on real Redis (a partitioned bus)."""

from __future__ import annotations

import time
from typing import Any

from test_redis_tier import ITEM_VECTORS

from recomatrix.events.base import Delivery
from recomatrix.events.redis import RedisStreamsBus
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.stream import StreamProcessor, StreamSettings
from recomatrix.types import Event

INTERVAL_S = 0.4


class ReadCountingBus(RedisStreamsBus):
    reads: list[float]

    def consume(self, group: str, consumer: str, **options: Any) -> list[Delivery]:
        self.reads.append(time.monotonic())
        return super().consume(group, consumer, **options)


def reads_while_publishing(
    url: str, *, users: int, pace: float, tag: str
) -> tuple[int, int, float]:
    """(reads of the bus, events applied, seconds it took) by a running worker while 20
    batches of 40 events spread over `users` users are published, one every 0.1 s."""
    url = f"{url}?namespace=rx-{tag}"  # streams and leases of its own
    bus = ReadCountingBus.from_url(url)
    assert isinstance(bus, ReadCountingBus)
    bus.reads = []
    settings = StreamSettings(item_flush_s=INTERVAL_S, pace_events_per_user=pace)
    worker = StreamProcessor(bus=bus, store=RedisOnlineStore.from_url(url),
                             item_vector=ITEM_VECTORS.get, settings=settings,
                             consumer=f"w-{tag}")  # fmt: skip
    worker.start()
    try:
        time.sleep(0.3)  # started: its first reads find nothing
        before, began = len(bus.reads), time.monotonic()
        for tick in range(20):
            bus.publish([Event(f"{tag}-{tick}-{k}", f"{tag}-u{k % users}", f"i{k % 7}", "view",
                               1_700_000_000.0 + tick) for k in range(40)])  # fmt: skip
            time.sleep(0.1)
        reads, seconds = len(bus.reads) - before, time.monotonic() - began
        deadline = time.monotonic() + 10
        while worker.applied < 800 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    return reads, worker.applied, seconds


def test_hot_users_are_read_once_per_interval_and_cold_ones_at_once(redis_url: str) -> None:
    hot_reads, hot_applied, seconds = reads_while_publishing(redis_url, users=4, pace=2.0,
                                                             tag="hot")  # fmt: skip
    cold_reads, cold_applied, _ = reads_while_publishing(redis_url, users=40, pace=2.0,
                                                         tag="cold")  # fmt: skip
    eager_reads, _, _ = reads_while_publishing(redis_url, users=4, pace=0.0, tag="eager")
    assert hot_applied == cold_applied == 800  # waiting loses nothing
    # 10 events per user and batch: a read per batch until the first interval (0.4 s)
    # shows a load, then one every 0.4 s at most (and one at the end)
    assert hot_reads <= INTERVAL_S / 0.1 + seconds / INTERVAL_S + 2, (hot_reads, seconds)
    # one event per user and batch, or pacing off: a read per batch at least
    assert cold_reads >= 18 and eager_reads >= 18, (cold_reads, eager_reads)


def test_a_read_that_stops_at_what_it_asked_for_reports_a_backlog(redis_url: str) -> None:
    """A hot user's partition holding more than one read asks for: the worker must not
    wait between those reads, so the bus says when a read may have left events."""
    bus = RedisStreamsBus.from_url(f"{redis_url}?namespace=rx-backlog&partitions=2")
    bus.publish([Event(f"b{k}", "u1", f"i{k % 7}", "view", 1_700_000_000.0 + k)
                 for k in range(3000)])  # fmt: skip
    reads = []
    while deliveries := bus.consume("g", "w", max_events=2000, block_s=0):
        reads.append((len(deliveries), bus.backlogged("g", "w")))
        bus.ack("g", [d.message_id for d in deliveries])
    assert sum(n for n, _ in reads) == 3000
    assert all(backlogged for _, backlogged in reads[:-1]) and not reads[-1][1], reads
    assert not bus.backlogged("g", "w")  # the empty read
