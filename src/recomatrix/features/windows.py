"""Rolling-window counters: counts per event type over the last 5 minutes, 1 hour, 24 hours.

Each window is a ring of time buckets (10 s, 2 min, 1 h wide), so a window slides at its
bucket's granularity: an event at `ts` is inside window `w` at time `now` when its bucket
is one of the last `w.span // w.bucket` buckets up to and including `now`'s bucket.

`WindowCounts` keeps all three rings in one packed `bytearray` (the layout the Redis tier
stores, `PACKED_LAYOUT`), not in nested dicts: a user with a handful of events costs ~600
bytes instead of ~3.5 kB, which is what lets a million users' live state fit in memory,
and encoding a state for Redis is a copy.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from recomatrix.types import EVENT_TYPES

# The amounts every window counts, in packed order.
FIELDS: tuple[str, ...] = (*EVENT_TYPES, "watch_seconds")
FIELD_INDEX: dict[str, int] = {name: i for i, name in enumerate(FIELDS)}


@dataclass(frozen=True, slots=True)
class Window:
    """A named rolling window: `span` seconds wide, sliding every `bucket` seconds."""

    name: str
    span: int
    bucket: int

    @property
    def n_buckets(self) -> int:
        return self.span // self.bucket

    def bucket_of(self, ts: float) -> int:
        return int(ts // self.bucket)

    def contains(self, ts: float, now: float) -> bool:
        """True when an event at `ts` is counted by this window at time `now`.

        >>> Window("5m", 300, 10).contains(1000.0, 1000.0 + 295)
        True
        >>> Window("5m", 300, 10).contains(1000.0, 1000.0 + 305)
        False
        """
        newest = self.bucket_of(now)
        return newest - self.n_buckets < self.bucket_of(ts) <= newest


WINDOWS: tuple[Window, ...] = (
    Window("5m", 300, 10),
    Window("1h", 3600, 120),
    Window("24h", 86400, 3600),
)
WINDOW_BY_NAME: dict[str, Window] = {w.name: w for w in WINDOWS}

_NF, _NW = len(FIELDS), len(WINDOWS)
# header: per window, the float64 total of each field, then each window's number of rows;
# rows:   per window, oldest bucket first: bucket index, then each field's float32 amount.
HEADER = struct.Struct(f"<{_NF * _NW}d{_NW}i")
ROW = struct.Struct(f"<i{_NF}f")
PACKED_LAYOUT = (HEADER.format, ROW.format)
_I32, _F32, _F64 = struct.Struct("<i"), struct.Struct("<f"), struct.Struct("<d")
_COUNT_AT = 8 * _NF * _NW  # byte offset of the first window's row count
_TOTALS = struct.Struct(f"<{_NF}d")
_ZEROS = (0.0,) * _NF
_EMPTY = HEADER.pack(*((0.0,) * (_NF * _NW)), *((0,) * _NW))
_SLOT = {window.name: (w, window) for w, window in enumerate(WINDOWS)}


class WindowCounts:
    """Counts of `FIELDS` (event types, `watch_seconds`) in each rolling window.

    Each window keeps its bucket rows and their running totals, so a read only subtracts
    the few rows that left the window since the last event instead of re-adding every row.
    Totals are float64 sums of the rows as stored (float32: counts are exact up to 2^24 per
    bucket), the same arithmetic as the Redis tier's Lua script.

    >>> w = WindowCounts()
    >>> w.add("click", ts=100.0)
    >>> w.add("click", ts=200.0)
    >>> w.get("5m", now=250.0)["click"], w.get("5m", now=450.0).get("click", 0)
    (2.0, 1.0)
    """

    __slots__ = ("_buf",)

    def __init__(self, packed: bytes | bytearray | memoryview | None = None) -> None:
        if packed is None:
            self._buf = bytearray(_EMPTY)
            return
        buf = bytearray(packed)
        if len(buf) < HEADER.size:
            raise ValueError(f"packed windows need {HEADER.size} header bytes, got {len(buf)}")
        rows = sum(struct.unpack_from(f"<{_NW}i", buf, _COUNT_AT))
        if len(buf) != HEADER.size + rows * ROW.size:
            raise ValueError(f"packed windows of {rows} rows cannot be {len(buf)} bytes long")
        self._buf = buf

    def to_bytes(self) -> bytes:
        """The packed layout (`PACKED_LAYOUT`); `WindowCounts(blob)` reads it back."""
        return bytes(self._buf)

    def copy(self) -> WindowCounts:
        clone = WindowCounts.__new__(WindowCounts)
        clone._buf = bytearray(self._buf)
        return clone

    def __bool__(self) -> bool:
        """False until something was counted."""
        return len(self._buf) > HEADER.size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WindowCounts):
            return NotImplemented
        return self._buf == other._buf

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        rows = (len(self._buf) - HEADER.size) // ROW.size
        return f"WindowCounts({rows} rows)"

    def add(self, name: str, *, ts: float, amount: float = 1.0) -> None:
        """Count `amount` of `name` at event time `ts` in every window."""
        self.add_amounts({name: amount}, ts=ts)

    def add_amounts(self, amounts: Mapping[str, float], *, ts: float) -> None:
        """Count several fields at event time `ts` in every window (one row lookup each)."""
        fields = []
        for name, amount in amounts.items():
            field = FIELD_INDEX.get(name)
            if field is None:
                raise ValueError(f"windows count {', '.join(FIELDS)}; got {name!r}")
            fields.append((field, amount))
        buf, start = self._buf, HEADER.size
        for w, window in enumerate(WINDOWS):
            (n,) = _I32.unpack_from(buf, _COUNT_AT + 4 * w)
            bucket = window.bucket_of(ts)
            pos = end = start + n * ROW.size
            while pos > start and _I32.unpack_from(buf, pos - ROW.size)[0] > bucket:
                pos -= ROW.size  # a late event: its bucket sits before newer rows
            if pos > start and _I32.unpack_from(buf, pos - ROW.size)[0] == bucket:
                row = pos - ROW.size
            else:
                buf[pos:pos] = ROW.pack(bucket, *_ZEROS)
                row, n, end = pos, n + 1, end + ROW.size
                _I32.pack_into(buf, _COUNT_AT + 4 * w, n)
            for field, amount in fields:
                at = row + 4 + 4 * field
                (old,) = _F32.unpack_from(buf, at)
                _F32.pack_into(buf, at, old + amount)
                (new,) = _F32.unpack_from(buf, at)
                total_at = 8 * (w * _NF + field)
                _F64.pack_into(buf, total_at, _F64.unpack_from(buf, total_at)[0] + new - old)
            if n > window.n_buckets + 1:
                end -= self._prune(w, window, start, n)
            start = end

    def get(self, window_name: str, *, now: float) -> dict[str, float]:
        """Sum of each field over the window ending at `now`."""
        w, window = _SLOT[window_name]
        buf = self._buf
        counts = struct.unpack_from(f"<{_NW}i", buf, _COUNT_AT)
        if not counts[w]:
            return {}
        newest = window.bucket_of(now)
        oldest = newest - window.n_buckets  # buckets <= oldest have left the window
        first = HEADER.size + ROW.size * sum(counts[:w])
        last = first + ROW.size * (counts[w] - 1)  # the newest row
        if _I32.unpack_from(buf, last)[0] <= oldest or _I32.unpack_from(buf, first)[0] > newest:
            return {}  # every row has left the window (or, read in the past, not yet entered)
        sums = _TOTALS.unpack_from(buf, 8 * w * _NF)
        # Rows are sorted by bucket: those outside the window are a prefix (expired) and,
        # for a read in the past, a suffix; subtract just those from the totals.
        left = []
        while first <= last and _I32.unpack_from(buf, first)[0] <= oldest:
            left.append(ROW.unpack_from(buf, first))
            first += ROW.size
        while first <= last and _I32.unpack_from(buf, last)[0] > newest:
            left.append(ROW.unpack_from(buf, last))
            last -= ROW.size
        if first > last:
            return {}
        if left:
            sums = tuple(t - sum(r[f + 1] for r in left) for f, t in enumerate(sums))
        return {name: amount for name, amount in zip(FIELDS, sums, strict=True) if amount > 1e-9}

    def stable_until(self, *, now: float) -> float:
        """The first time after `now` at which a window's sums change with no new event:
        when its oldest counted row leaves, or a row newer than `now` (a read in the past)
        enters. `math.inf` when nothing is left to leave or enter.

        Every read in `[now, stable_until(now))` answers what a read at `now` does, which
        lets a reader summarise a quiet item once instead of on every request.

        >>> w = WindowCounts()
        >>> w.add("click", ts=100.0)
        >>> w.stable_until(now=100.0)  # the 5-minute window's 10 s bucket [100, 110) leaves
        400.0
        >>> w.stable_until(now=100_000.0)  # gone from every window: nothing changes
        inf
        """
        buf, until, first = self._buf, math.inf, HEADER.size
        counts = struct.unpack_from(f"<{_NW}i", buf, _COUNT_AT)
        for window, n in zip(WINDOWS, counts, strict=True):
            newest = window.bucket_of(now)
            oldest = newest - window.n_buckets
            last = first + ROW.size * (n - 1)
            row = first
            while row <= last and _I32.unpack_from(buf, row)[0] <= oldest:
                row += ROW.size  # already left the window
            if row <= last:
                (bucket,) = _I32.unpack_from(buf, row)
                if bucket <= newest:  # counted now: leaves once `now` passes its window
                    until = min(until, float((bucket + window.n_buckets) * window.bucket))
                future = last
                while future >= row and _I32.unpack_from(buf, future)[0] > newest:
                    future -= ROW.size
                if future < last:  # rows after `now` enter at their bucket's start
                    (entering,) = _I32.unpack_from(buf, future + ROW.size)
                    until = min(until, float(entering * window.bucket))
            first += ROW.size * n
        return until

    def all(self, *, now: float) -> dict[str, dict[str, float]]:
        """Every window's totals: `{"5m": {...}, "1h": {...}, "24h": {...}}`."""
        return {w.name: self.get(w.name, now=now) for w in WINDOWS}

    def _prune(self, w: int, window: Window, start: int, n: int) -> int:
        """Drop window `w`'s rows that can never be counted again (reads happen at or after
        the newest event's time); returns the bytes removed."""
        buf = self._buf
        floor = _I32.unpack_from(buf, start + (n - 1) * ROW.size)[0] - window.n_buckets
        cut = start
        totals = list(_TOTALS.unpack_from(buf, 8 * w * _NF))
        while cut < start + n * ROW.size and _I32.unpack_from(buf, cut)[0] <= floor:
            for f, amount in enumerate(ROW.unpack_from(buf, cut)[1:]):
                totals[f] -= amount
            cut += ROW.size
        _TOTALS.pack_into(buf, 8 * w * _NF, *totals)
        _I32.pack_into(buf, _COUNT_AT + 4 * w, n - (cut - start) // ROW.size)
        del buf[start:cut]
        return cut - start
