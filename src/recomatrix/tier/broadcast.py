"""The item feed: item changes made on any API process, on one Redis stream all processes tail.

POST/DELETE /v1/items on an API process appends the change (a put carries the item and
its unit vector) to `rx:items` (`<namespace>:items`) before applying it locally; every API
process and stream worker reads the stream from its snapshot's position on, in a
background thread blocked on XREAD, and applies what the other processes published. The
vector travels with the item, so nobody re-embeds it and every process indexes the very
same vector.

A process skips its own changes (it applied them already). Two processes replacing the
same item within the same few milliseconds may each keep the other's version: the last
writer is not decided across processes.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import orjson
import redis

from recomatrix.backends import split_url_options
from recomatrix.degrade import FailureLog
from recomatrix.features.resp import connect, key_namespace
from recomatrix.tier.snapshot import item_from_row
from recomatrix.types import Item, ItemId

log = logging.getLogger(__name__)

START = "0-0"  # a stream position before every entry
URL_OPTIONS: dict[str, Any] = {"namespace": str, "maxlen": int}


@dataclass(frozen=True, slots=True)
class ItemChange:
    """One entry of the feed: a put (`item` and `vector` set) or a delete (both None)."""

    entry_id: str
    origin: str  # the feed instance (process) that published it
    item_id: ItemId
    item: Item | None
    vector: np.ndarray | None


ApplyChanges = Callable[[list[ItemChange]], None]


class ItemFeed:
    """Publishes and tails the item stream; one instance per process (its `origin`)."""

    def __init__(
        self,
        *,
        client: redis.Redis | redis.RedisCluster,
        dim: int,
        namespace: str = "rx",
        maxlen: int = 1_000_000,
    ) -> None:
        self.client, self.dim, self.maxlen = client, dim, maxlen
        self.stream = f"{key_namespace(namespace)}:items"
        self.origin = uuid.uuid4().hex
        self.position = START  # the last entry read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_url(cls, url: str, *, dim: int) -> ItemFeed:
        """`redis://host:port/db?namespace=rx&maxlen=1000000` (either option) or
        `redis+cluster://host:port?...`."""
        base, options = split_url_options("item feed", url, URL_OPTIONS)
        return cls(client=connect(base), dim=dim, **options)

    def publish_puts(self, items: Sequence[Item], vectors: np.ndarray) -> None:
        """Append one put per item (all sent in one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for item, vector in zip(items, np.asarray(vectors, dtype=np.float32), strict=True):
            fields = {"op": "put", "origin": self.origin, "item_id": item.item_id,
                      "item": orjson.dumps(asdict(item)), "vector": vector.tobytes()}  # fmt: skip
            pipe.xadd(self.stream, cast(Any, fields), maxlen=self.maxlen, approximate=True)
        pipe.execute()

    def publish_delete(self, item_id: ItemId) -> None:
        fields = {"op": "delete", "origin": self.origin, "item_id": item_id}
        self.client.xadd(self.stream, cast(Any, fields), maxlen=self.maxlen, approximate=True)

    def last_id(self) -> str:
        """The id of the newest entry (START for an empty stream): where a snapshot stands."""
        newest = cast(list[tuple[bytes, Any]], self.client.xrevrange(self.stream, count=1))
        return newest[0][0].decode() if newest else START

    def read(self, *, block_s: float | None = None, count: int = 500) -> list[ItemChange]:
        """Entries after `position` (waiting up to `block_s` for one), advancing it."""
        block = None if block_s is None else max(1, int(block_s * 1000))
        reply = self.client.xread({self.stream: self.position}, count=count, block=block)
        changes = []
        for _, entries in cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                               reply or []):  # fmt: skip
            for entry_id, fields in entries:
                self.position = entry_id.decode()
                try:
                    changes.append(self._decode(self.position, fields))
                except (KeyError, ValueError, TypeError) as error:
                    log.error("item feed entry %s is unreadable, skipped: %s", self.position, error)
        return changes

    def follow(self, after: str, apply: ApplyChanges) -> None:
        """Apply the other processes' changes after entry `after`: those already in the
        stream before returning, later ones from a background thread until `stop()`."""
        self.position = after
        while changes := self.read(count=5000):
            self._apply(apply, changes)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(apply,), name="item-feed", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.client.close()

    def _run(self, apply: ApplyChanges) -> None:
        failures = FailureLog(log, "item feed read failed; retrying it every 0.5 s")
        while not self._stop.is_set():
            try:
                changes = self.read(block_s=0.5)
            except redis.exceptions.RedisError as err:
                failures.failed(err)
                self._stop.wait(0.5)
                continue
            failures.recovered()
            self._apply(apply, changes)

    def _apply(self, apply: ApplyChanges, changes: list[ItemChange]) -> None:
        foreign = [c for c in changes if c.origin != self.origin]
        if not foreign:
            return
        try:
            apply(foreign)
        except Exception:  # this process now lacks these changes: say so, keep following
            log.exception("applying item changes %s..%s failed", foreign[0].entry_id,
                          foreign[-1].entry_id)  # fmt: skip

    def _decode(self, entry_id: str, fields: dict[bytes, bytes]) -> ItemChange:
        op, origin = fields[b"op"].decode(), fields[b"origin"].decode()
        item_id = fields[b"item_id"].decode()
        if op == "delete":
            return ItemChange(entry_id, origin, item_id, None, None)
        if op != "put":
            raise ValueError(f"unknown op {op!r}")
        vector = np.frombuffer(fields[b"vector"], dtype=np.float32)
        if vector.shape != (self.dim,):
            raise ValueError(f"vector has {vector.size} values, the index holds {self.dim}")
        return ItemChange(entry_id, origin, item_id, item_from_row(orjson.loads(fields[b"item"])),
                          vector)  # fmt: skip
