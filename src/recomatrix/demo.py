"""The live part of the demo: a simulated audience whose events flow in at wall-clock time.

It goes through the same `Engine.ingest` path as HTTP clients, so the dashboard, windows,
session vectors and trending table move exactly as they would with real traffic.
"""

from __future__ import annotations

import logging
import threading
import time

from recomatrix.data.synthetic import stream_live_events
from recomatrix.data.world import World
from recomatrix.engine import Engine
from recomatrix.types import Event

log = logging.getLogger(__name__)


class LiveAudience:
    """Feeds `events_per_s` simulated events per second into the engine until stopped."""

    def __init__(self, *, engine: Engine, world: World, events_per_s: float, seed: int = 1):
        self.engine, self.world = engine, world
        self.events_per_s, self.seed = events_per_s, seed
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-audience", daemon=True)

    def start(self) -> None:
        if self.events_per_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        stream = stream_live_events(
            self.world, seed=self.seed, start_ts=time.time(), events_per_second=self.events_per_s
        )
        batch: list[Event] = []
        for event in stream:
            if self._stop.is_set():
                return
            if event.item_id not in self.engine.catalogue:  # deleted meanwhile
                continue
            batch.append(event)
            wait = event.ts - time.time()
            if wait > 0.1 or len(batch) >= 500:
                self._send(batch)
                batch = []
                if wait > 0 and self._stop.wait(wait):
                    return

    def _send(self, batch: list[Event]) -> None:
        try:
            self.sent += self.engine.ingest(batch)
        except OverflowError:
            log.warning("event bus full; the live audience skips %d events", len(batch))
