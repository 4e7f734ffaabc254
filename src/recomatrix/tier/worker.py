"""A stream worker of the server tier: consumes the event bus group, applies events to Redis.

Several can run, on several machines: the bus shares its partitions among the live
workers and hands a dead one's unacknowledged batch to the next owner of its partitions.
Session vectors need item vectors: the snapshot's, memory-mapped, overlaid by the items
the API processes publish on the item feed after it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recomatrix.config import Settings
from recomatrix.events.redis import RedisStreamsBus
from recomatrix.events.relay import RedisCountRelay
from recomatrix.features.offline import ParquetLog
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.stream.processor import StreamProcessor
from recomatrix.tier.broadcast import ItemChange, ItemFeed
from recomatrix.tier.snapshot import Snapshot, latest_snapshot
from recomatrix.tier.urls import part_url
from recomatrix.types import ItemId

log = logging.getLogger(__name__)

GROUP = "stream"  # the stream workers' consumer group


class ItemVectors:
    """Item id -> retrieval vector: the snapshot's rows, overlaid by the item feed's changes."""

    def __init__(self, snapshot: Snapshot, *, converted: int = 100_000) -> None:
        self._keys = snapshot.keys()
        # A plain array over the mapped file: indexing a `np.memmap` makes a memmap object
        # per row, which was a twentieth of a loaded worker's time.
        self._matrix = np.asarray(snapshot.vectors())
        self._changed: dict[ItemId, np.ndarray | None] = {}  # None: deleted since
        # Rows already converted from float16 (most events go to a few hot items).
        self._float32: dict[ItemId, np.ndarray] = {}
        self._converted_max = converted

    def get(self, item_id: ItemId) -> np.ndarray | None:
        # The feed's changes first: `apply` runs in the feed's thread, and may land between
        # this thread's look at `_changed` and its store of a converted row.
        if item_id in self._changed:
            return self._changed[item_id]
        vector = self._float32.get(item_id)
        if vector is not None:
            return vector
        key = self._keys.get(item_id)
        if key is None:
            return None
        if len(self._float32) >= self._converted_max:
            self._float32.clear()
        converted: np.ndarray = self._matrix[key].astype(np.float32)
        self._float32[item_id] = converted
        return converted

    def apply(self, changes: list[ItemChange]) -> None:
        for change in changes:
            self._changed[change.item_id] = change.vector
            self._float32.pop(change.item_id, None)


class Worker:
    """One stream worker: a StreamProcessor over Redis plus the item feed it needs."""

    def __init__(
        self, settings: Settings, *, redis_url: str, snapshot: Snapshot, name: str
    ) -> None:
        self.vectors = ItemVectors(snapshot)
        self.feed = ItemFeed.from_url(part_url(redis_url, "feed"), dim=snapshot.manifest.dim)
        self.offline = ParquetLog(root=settings.data.home / "offline")
        bus = RedisStreamsBus.from_url(part_url(redis_url, "bus"))
        self.processor = StreamProcessor(
            bus=bus,
            # Fenced: a worker that paused past its lease cannot overwrite the new owner's users.
            store=RedisOnlineStore.from_url(
                part_url(redis_url, "store"), fence=bus.fence(GROUP, name)
            ),
            item_vector=self.vectors.get,
            offline_sink=self.offline.append_events,
            settings=settings.stream,
            group=GROUP,
            consumer=name,
            # Takes what other workers forwarded to the partitions it holds; forwards too
            # with `stream.relay_item_counts` (items counted by their partition's holder).
            relay=RedisCountRelay(bus, GROUP),
        )
        self._after = snapshot.manifest.feed_after

    def start(self) -> None:
        self.feed.follow(self._after, self.vectors.apply)
        self.processor.start()

    def stop(self) -> bool:
        """Finish and acknowledge the batch in hand, then stop; False if it did not finish
        in time (it stays pending on the bus and is applied again, idempotently)."""
        self.processor.stop()
        finished = not self.processor.running
        self.feed.close()
        self.offline.close()
        return finished


def wait_for_snapshot(
    settings: Settings, *, stopping: Callable[[], bool], poll_s: float = 0.5
) -> Snapshot | None:
    """The newest snapshot under the home, waiting for `serve` to bootstrap one if need be;
    None when `stopping()` turns true first."""
    home = settings.data.home
    waited = False
    while not stopping():
        snapshot = latest_snapshot(home)
        if snapshot is not None:
            return snapshot
        if not waited:
            log.warning(
                "no deployment snapshot under %s yet: waiting for "
                "`recomatrix serve --backend redis` to bootstrap one",
                home / "models",
            )
            waited = True
        time.sleep(poll_s)
    return None


class StopFlag:
    """Raised by a signal handler: a plain attribute, as taking a lock there could deadlock."""

    def __init__(self) -> None:
        self.raised = False

    def __call__(self, *_: object) -> None:
        self.raised = True

    def is_set(self) -> bool:
        return self.raised


# Young objects between two of Python's collections in a worker (its default is 700).
GC_YOUNG_OBJECTS = 50_000


def calm_garbage_collector() -> None:
    """Python's cyclic garbage collector, tuned for a worker (measured at 40,000 events/s,
    two workers: docs/benchmarks.md). A batch keeps thousands of events alive while it is
    applied, so with the defaults they were scanned again and again, promoted, and made a
    full collection run every few seconds: ~3.3 s of collecting per ~80 s in each worker,
    full ones of 50-120 ms, none finding any garbage (events and states hold no cycles;
    reference counting frees them). Now the objects of start-up (modules, the snapshot)
    are frozen out of every scan, and a collection runs every `GC_YOUNG_OBJECTS` new
    objects, a full one every 100 x 20 of those: ~10x less time collecting."""
    gc.collect()  # what start-up left as garbage, before it is frozen for good
    gc.freeze()
    gc.set_threshold(GC_YOUNG_OBJECTS, 20, 100)


def lower_priority(by: int) -> None:
    """Lower this process's CPU priority by `by` (nice), every thread's: Linux keeps a nice
    value per thread, new threads inherit their creator's, and imports have started some
    already (BLAS, jemalloc)."""
    if by <= 0:
        return
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():  # not Linux: the whole process at once
        os.nice(by)
        return
    for task in tasks.iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            tid = int(task.name)
            now = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, now + by))


def run_worker(settings: Settings, *, redis_url: str, name: str, stop: StopFlag) -> int:
    """Consume until `stop` is raised; the exit code (0: the last batch was acknowledged)."""
    lower_priority(settings.stream.worker_nice)
    snapshot = wait_for_snapshot(settings, stopping=stop.is_set)
    if snapshot is None:
        return 0
    worker = Worker(settings, redis_url=redis_url, snapshot=snapshot, name=name)
    calm_garbage_collector()
    worker.start()
    log.info("worker %s applying events with the item vectors of %s", name,
             snapshot.manifest.version)  # fmt: skip
    while not stop.is_set():
        time.sleep(0.1)
    finished = worker.stop()
    log.info("worker %s stopped after applying %d events", name, worker.processor.applied)
    return 0 if finished else 1
