"""Where the Redis online store records an applied (or counted) event id, and where it
looks for it later: a pure function of the event's time and the clock.

An id goes to a set per time bucket, and every set expires whole, at least `claim_ttl_s`
after the last id it may take. Two kinds of bucket:

- **fine**, by the event's own time (`FINE_S`, 10 s): an event delivered again (a dead
  worker's batch, a client's retry) has the same time, so it is looked for in one set, and
  a set only grows for as long as events of its 10 s arrive: at 50,000 events/s it holds at
  most ~500,000 ids. With buckets by the time of applying (the coarse kind), a set grew for
  half the claim TTL, past millions of ids; Redis then paid more for each lookup, and most
  when a set doubled its hash table (rehashing it while it served), which is when
  `bench/tier_steady.py` runs fell behind (docs/benchmarks.md, stop 23).
- **coarse**, by the time of applying (`claim_ttl_s / COARSE_BUCKETS` wide), for the few
  events whose time is far from the clock's (more than a quarter of the claim TTL in the
  past, or more than the claim TTL in the future): the sets of their own times would be
  kept alive, and growing, by stray late events. They are looked for in every live one.

A lookup at time L must find an id recorded at any W in [L - claim_ttl_s, L]: the fine set
of the event's time is looked in when some such W would have put it there, the coarse ones
when some would not have (`lookup`; `tests/unit/test_markers.py` checks it over random
times). Events near the clock look in their fine set only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FINE_S = 10  # seconds of event time per fine bucket
COARSE_BUCKETS = 2  # coarse buckets per claim TTL: a coarse lookup reads this many + 1 sets


@dataclass(frozen=True, slots=True)
class Slot:
    """A marker set, named by a key suffix (`f<bucket>` fine, `<bucket>` coarse), and the
    unix time in ms at which it expires."""

    suffix: str
    expire_at_ms: int


class MarkerPlan:
    """The placement rule for one claim TTL (see the module docstring)."""

    def __init__(self, claim_ttl_s: float) -> None:
        self.claim_ttl_s = claim_ttl_s
        self.coarse_s = claim_ttl_s / COARSE_BUCKETS
        self._ttl_buckets = max(1, math.ceil(claim_ttl_s / FINE_S))  # n
        self._past = math.ceil(self._ttl_buckets / 4)  # P: fine while up to this far back
        self._future = self._ttl_buckets + 1  # Q: ... or this far ahead

    def write(self, ts: float, now: float) -> Slot:
        """Where an event at `ts` applied at `now` is recorded."""
        bucket, current = _fine(ts), _fine(now)
        if current - self._past <= bucket <= current + self._future:
            # The last write it may take is before bucket + P + 1 begins.
            return Slot(f"f{bucket}", self._expiry_ms((bucket + self._past + 1) * FINE_S))
        return self.coarse_write(now)

    def coarse_write(self, now: float) -> Slot:
        """The coarse set an event applied at `now` goes to when not to a fine one."""
        bucket = int(now // self.coarse_s)
        return Slot(str(bucket), self._expiry_ms((bucket + 1) * self.coarse_s))

    def coarse_live(self, now: float) -> list[str]:
        """The coarse sets that may hold ids recorded within the claim TTL, newest first."""
        current = int(now // self.coarse_s)
        return [str(current - k) for k in range(COARSE_BUCKETS + 1)]

    def lookup(self, ts: float, now: float) -> list[str]:
        """The sets in which an event at `ts` recorded within the claim TTL before `now` may
        be: its fine set when some write time in [now - claim TTL, now] puts it there, the
        live coarse sets when some does not."""
        bucket, current = _fine(ts), _fine(now)
        oldest = _fine(now - self.claim_ttl_s)
        # bucket - fine(W) over the write times W: from bucket - current to bucket - oldest.
        low, high = bucket - current, bucket - oldest
        suffixes = []
        if high >= -self._past and low <= self._future:
            suffixes.append(f"f{bucket}")
        if low < -self._past or high > self._future:
            suffixes += self.coarse_live(now)
        return suffixes

    def at(self, now: float) -> PlanAt:
        """The rule at one reading of the clock, for a batch's events."""
        return PlanAt(self, now)

    def _expiry_ms(self, last_write_before_s: float) -> int:
        return int((last_write_before_s + self.claim_ttl_s) * 1000)


class PlanAt:
    """`MarkerPlan.write` and `lookup` at one time `now`, both worked out once per 10 s of
    event time (a batch's events share a few). A time of None places by `now` alone: an
    event whose time a client's retry would not repeat (the server stamped it)."""

    def __init__(self, plan: MarkerPlan, now: float) -> None:
        self.plan, self.now = plan, now
        self._coarse = (plan.coarse_write(now), plan.coarse_live(now))
        self._rules: dict[int, tuple[Slot, list[str]]] = {}  # fine bucket -> write, lookup

    def write(self, ts: float | None) -> Slot:
        return self._rule(ts)[0]

    def lookup(self, ts: float | None) -> list[str]:
        return self._rule(ts)[1]

    def _rule(self, ts: float | None) -> tuple[Slot, list[str]]:
        if ts is None:
            return self._coarse
        bucket = _fine(ts)
        rule = self._rules.get(bucket)
        if rule is None:
            rule = self._rules[bucket] = (self.plan.write(ts, self.now),
                                          self.plan.lookup(ts, self.now))  # fmt: skip
        return rule


def _fine(ts: float) -> int:
    return int(ts // FINE_S)
