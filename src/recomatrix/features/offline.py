"""The offline log: every applied event and every served impression, appended to Parquet.

Rows are buffered and written as immutable part files (`events/part-*.parquet`,
`impressions/part-*.parquet`) by a background flusher, so the request path only appends
to a list. DuckDB and pyarrow read a folder of parts as one table.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recomatrix.types import Event

log = logging.getLogger(__name__)

EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("type", pa.string()),
        ("ts", pa.float64()),
        ("watch_seconds", pa.float32()),
    ]
)

IMPRESSION_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("position", pa.int32()),
        ("source", pa.string()),
        ("score", pa.float32()),
        ("model_version", pa.string()),
        ("ts", pa.float64()),
        ("features", pa.list_(pa.float32())),
    ]
)


@dataclass(frozen=True, slots=True)
class Impression:
    """One item served to one user, with the exact feature row the ranker saw."""

    request_id: str
    user_id: str
    item_id: str
    position: int
    source: str
    score: float
    model_version: str
    ts: float
    features: Sequence[float]


# Buffered events, in `flush_rows`, past which an append writes them itself: the flusher
# is behind (or failing), and the buffer must not grow without bound.
BEHIND_FLUSHES = 4


class ParquetLog:
    """Append-only Parquet log under `root`; call `close()` to flush what is buffered.

    The background flusher writes every `flush_interval_s`, and as soon as `flush_rows`
    events wait: an append only wakes it. A stream worker appended 50,000 events every 2 s
    under load and, when an append wrote them itself, waited 90-150 ms for the part with
    the batch in hand (docs/benchmarks.md, stop 22)."""

    def __init__(self, *, root: Path, flush_rows: int = 50_000, flush_interval_s: float = 2.0):
        self.root = root
        (root / "events").mkdir(parents=True, exist_ok=True)
        (root / "impressions").mkdir(parents=True, exist_ok=True)
        self._events: list[Event] = []
        self._impressions: list[Impression] = []
        self._lock = threading.Lock()
        self._flush_rows = flush_rows
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by an append that filled a part
        self._flusher = threading.Thread(
            target=self._run, args=(flush_interval_s,), name="offline-log", daemon=True
        )
        self._flusher.start()

    def append_events(self, events: Sequence[Event]) -> None:
        with self._lock:
            self._events.extend(events)
            waiting = len(self._events)
        if waiting >= BEHIND_FLUSHES * self._flush_rows:
            self.flush()
        elif waiting >= self._flush_rows:
            self._wake.set()

    def append_impressions(self, impressions: Sequence[Impression]) -> None:
        with self._lock:
            self._impressions.extend(impressions)

    def flush(self) -> None:
        """Write everything buffered as new part files."""
        with self._lock:
            events, self._events = self._events, []
            impressions, self._impressions = self._impressions, []
            # Named when taken, not when written: two flushes at once (the flusher and an
            # append far behind) still name their parts in the order of their rows.
            stamp = f"{time.time_ns()}-{os.getpid()}-{next(self._seq):06d}"
        try:
            if events:
                columns = {n: [getattr(e, n) for e in events] for n in EVENT_SCHEMA.names}
                self._write("events", stamp, pa.table(columns, schema=EVENT_SCHEMA))
                events = []
            if impressions:
                columns = {n: [getattr(i, n) for i in impressions] for n in IMPRESSION_SCHEMA.names}
                columns["features"] = [list(i.features) for i in impressions]
                self._write("impressions", stamp, pa.table(columns, schema=IMPRESSION_SCHEMA))
        except Exception:
            with self._lock:  # keep the rows for the next attempt instead of losing them
                self._events[:0] = events
                self._impressions[:0] = impressions
            raise

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._flusher.join(timeout=10)
        self.flush()

    def _write(self, kind: str, stamp: str, table: pa.Table) -> None:
        name = f"part-{stamp}.parquet"
        tmp = self.root / kind / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        tmp.rename(self.root / kind / name)  # readers never see a half-written part

    def _run(self, interval_s: float) -> None:
        while True:
            self._wake.wait(interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # rows stay buffered and are retried on the next tick
                log.exception("offline log flush failed; will retry")


def read_events(root: Path) -> pa.Table:
    """Every event in the log under `root` as one table, once per event id (the first row).

    Events are appended before their effects are committed, so a batch delivered again
    (after a worker's crash, or a user write refused by the lease fence) repeats its rows
    in the log. SQL readers of the parts do the same with `DISTINCT ON (event_id)`.
    """
    table = _read(root / "events", EVENT_SCHEMA)
    if table.num_rows == 0:
        return table
    ids = table.column("event_id").to_numpy(zero_copy_only=False)
    _, first = np.unique(ids, return_index=True)
    if len(first) == table.num_rows:
        return table
    return table.take(np.sort(first))


def read_impressions(root: Path) -> pa.Table:
    """Every impression in the log under `root` as one table."""
    return _read(root / "impressions", IMPRESSION_SCHEMA)


def _read(folder: Path, schema: pa.Schema) -> pa.Table:
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(p) for p in parts])
