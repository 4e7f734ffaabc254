"""The stream processor's settings (`[stream]` in the config file)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamSettings:
    session_half_life_s: float = 600.0  # session interest fades to half in 10 minutes
    recent_items: int = 50  # length of the recent-items list per user
    history_items: int = 200  # positive items kept per user for the long-term profile
    watched_retention_s: float = 7 * 86400.0  # watched-at entries older than this are dropped
    skipped_retention_s: float = 86400.0  # skipped-at entries older than this are dropped
    trending_refresh_s: float = 5.0  # how often cooling items are re-scored at wall time
    trending_interval_s: float = 1.0  # the consuming loop re-scores touched items this often
    batch_events: int = 10_000  # most events the consuming loop takes from the bus at once
    # User states a worker keeps decoded between batches, on a bus that gives each user's
    # events to one consumer at a time (`OwnsPartitions`; 0 = always read the store).
    cached_users: int = 20_000
    cached_user_age_s: float = 60.0  # checked against the store (or read) after this long
    # On such a bus, item counts are added (and batches acknowledged) this often, for all
    # the batches applied since (users are written with every batch); 0 = every batch.
    item_flush_s: float = 0.25
    # ... but with every batch while waiting would merge little: while the last interval's
    # events averaged fewer than this many per distinct item (a light load, or a long-tail
    # catalogue), a counting script per item and batch costs about what one per item and
    # interval would, and the counts show at once; 0 = always wait.
    item_flush_merge_below: float = 1.2
    # ... and while a batch's users averaged at least this many events each (hot users) and
    # the bus had no more, the worker waits to read again until `item_flush_s` after its
    # last read: each user is then written once per interval for all its events (a user's
    # write costs about as much as applying 40 events); 0 = read again at once.
    pace_events_per_user: float = 2.0
    # Items partitioned like users, each counted by its partition's holder, the other
    # workers forwarding its counts (`events.relay`): each item is then rewritten once per
    # interval, not once per worker. Off by default: with 2 workers on 2 cores it cost the
    # workers about what it saved Redis, and an item showed a click one interval later
    # (docs/benchmarks.md, stop 21); worth it with more workers. Either way a worker counts
    # what others forwarded to the partitions it holds, so workers may differ in it.
    relay_item_counts: bool = False
    # Deliveries pending this long on a partition this consumer holds are taken over: a
    # consumer that read them after losing the partition (it stalled between renewing its
    # lease and reading) had its write refused and left them. Looked for every quarter of it.
    stuck_after_s: float = 60.0
    # `recomatrix worker` lowers its own CPU priority by this much (nice, 0-19) at start:
    # on a host it shares with redis-server and API processes, they get a core first, and
    # a worker waits less for a Redis that waited for a core (docs/benchmarks.md, stop 23:
    # with 5, two workers held 50,000 events/s with visibility p99 <= 1 s where they
    # missed with 0). No effect on a host of its own, or in a container of its own.
    worker_nice: int = 5

    def __post_init__(self) -> None:
        if self.cached_users < 0:
            raise ValueError(f"setting stream.cached_users: {self.cached_users} is negative; "
                             "use 0 to read users from the store every batch")  # fmt: skip
        if self.cached_user_age_s <= 0:
            raise ValueError(f"setting stream.cached_user_age_s: {self.cached_user_age_s} "
                             "must be > 0 (seconds)")  # fmt: skip
        if not 0 <= self.worker_nice <= 19:
            raise ValueError(f"setting stream.worker_nice: {self.worker_nice} must be 0-19 "
                             "(how much a worker lowers its CPU priority; 0 keeps it)")  # fmt: skip
        if self.stuck_after_s <= 0:
            raise ValueError(f"setting stream.stuck_after_s: {self.stuck_after_s} must be > 0 "
                             "(seconds; keep it well above the bus lease, 15 s)")  # fmt: skip
        if self.item_flush_merge_below < 0:
            raise ValueError(f"setting stream.item_flush_merge_below: "
                             f"{self.item_flush_merge_below} is negative; use 0 to always "
                             "wait item_flush_s")  # fmt: skip
        if self.pace_events_per_user < 0:
            raise ValueError(f"setting stream.pace_events_per_user: {self.pace_events_per_user} "
                             "is negative; use 0 to never wait between reads")  # fmt: skip
        if self.item_flush_s < 0:
            raise ValueError(f"setting stream.item_flush_s: {self.item_flush_s} is negative; "
                             "use 0 to add item counts with every batch")  # fmt: skip
