"""Rolling-window counters: counts per event type over the last 5 minutes, 1 hour, 24 hours.

Each window is a ring of time buckets (10 s, 2 min, 1 h wide), so a window slides at its
bucket's granularity: an event at `ts` is inside window `w` at time `now` when its bucket
is one of the last `w.span // w.bucket` buckets up to and including `now`'s bucket.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(slots=True)
class WindowCounts:
    """Counts of named fields (event types, `watch_seconds`) in each rolling window.

    Each window keeps its buckets and their running totals, so a read only subtracts the
    few buckets that expired since the last event instead of re-adding every bucket.

    >>> w = WindowCounts()
    >>> w.add("click", ts=100.0)
    >>> w.add("click", ts=200.0)
    >>> w.get("5m", now=250.0)["click"], w.get("5m", now=450.0).get("click", 0)
    (2.0, 1.0)
    """

    # window name -> bucket index -> field -> amount
    buckets: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    # window name -> field -> sum over that window's buckets
    totals: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, name: str, *, ts: float, amount: float = 1.0) -> None:
        """Count `amount` of `name` at event time `ts` in every window."""
        for window in WINDOWS:
            ring = self.buckets.setdefault(window.name, {})
            fields = ring.setdefault(window.bucket_of(ts), {})
            fields[name] = fields.get(name, 0.0) + amount
            totals = self.totals.setdefault(window.name, {})
            totals[name] = totals.get(name, 0.0) + amount
            if len(ring) > window.n_buckets + 1:
                self._prune(window, ring, totals)

    def copy(self) -> WindowCounts:
        return WindowCounts(
            {w: {i: dict(f) for i, f in ring.items()} for w, ring in self.buckets.items()},
            {w: dict(t) for w, t in self.totals.items()},
        )

    def get(self, window_name: str, *, now: float) -> dict[str, float]:
        """Sum of each field over the window ending at `now`."""
        window = WINDOW_BY_NAME[window_name]
        ring = self.buckets.get(window_name)
        if not ring:
            return {}
        newest = window.bucket_of(now)
        oldest = newest - window.n_buckets  # buckets <= oldest have left the window
        outside = [i for i in ring if i <= oldest or i > newest]
        if not outside:
            return dict(self.totals[window_name])
        if len(outside) == len(ring):
            return {}
        totals = dict(self.totals[window_name])
        for index in outside:
            for key, amount in ring[index].items():
                totals[key] -= amount
        return {k: v for k, v in totals.items() if v > 1e-9}

    def all(self, *, now: float) -> dict[str, dict[str, float]]:
        """Every window's totals: `{"5m": {...}, "1h": {...}, "24h": {...}}`."""
        return {w.name: self.get(w.name, now=now) for w in WINDOWS}

    @staticmethod
    def _prune(window: Window, ring: dict[int, dict[str, float]], totals: dict[str, float]) -> None:
        # Keep the newest n_buckets buckets; older ones can never be counted again
        # because reads happen at or after the newest event's time.
        newest = max(ring)
        for index in [i for i in ring if i <= newest - window.n_buckets]:
            for key, amount in ring.pop(index).items():
                totals[key] -= amount
