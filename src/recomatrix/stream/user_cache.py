"""The user states a stream worker owns, kept decoded between batches.

On a partitioned bus (`OwnsPartitions`) each user's events go to one consumer at a time, and
that consumer is the only writer of the user's state. It can keep the states it wrote and
skip reading them back (an MGET and a msgpack decode per user and batch, the largest share
of a worker's cost in `bench/tier_apply.py`). The cache is only valid while no other
consumer may have written those users, so it is emptied whenever the bus reports that the
consumer took a partition over (`ownership_epoch` changed); a batch's states are out of
the cache while it is applied, so a failed batch (the store may or may not hold what they
include) reads them again. An entry is not used past `max_age_s` after it was last read
from the store (or checked against it), however often it was written since: that bounds
how long a state written by anyone else (an operator, a restore, a worker whose lease
lapsed mid-batch) can be overwritten field by field from an older copy. With a store
that remembers its writes (`RemembersUserWrites`), an entry past that age is first
checked: one short field per user says whether the stored state is still the one this
worker last wrote (a write that found someone else's in between counts as not), and then
the entry stays (counted from now) instead of being read and decoded again. A heavy user's
state is tens of kB (watched and skipped maps of thousands of entries), and every entry
a worker holds passes the age limit about together, so whole re-reads cost a worker ~7 %
of its CPU at 50,000 events/s and a one-batch stall a minute (docs/benchmarks.md, stop 24).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from recomatrix.features.state import UserState
from recomatrix.types import UserId


class UserCache:
    """Least recently written user states, at most `max_users`, none read from the store
    (or checked against it) more than `max_age_s` ago."""

    def __init__(
        self, *, max_users: int, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_users, self.max_age_s, self._clock = max_users, max_age_s, clock
        # user -> (state, when it was last read from the store)
        self._states: OrderedDict[UserId, tuple[UserState, float]] = OrderedDict()
        self._taken: dict[UserId, float] = {}  # the read times of the batch in hand
        self.epoch: int | None = None  # the bus's ownership epoch the states belong to
        self.hits = self.misses = 0
        self.checked = 0  # hits past the age limit, kept because the store had not changed

    def __len__(self) -> int:
        return len(self._states)

    def follow(self, epoch: int) -> None:
        """Drop everything if ownership changed since the states were cached."""
        if epoch != self.epoch:
            self._states.clear()
            self.epoch = epoch

    def take(
        self,
        user_ids: Sequence[UserId],
        unchanged: Callable[[Sequence[UserId]], list[bool]] | None = None,
    ) -> tuple[dict[UserId, UserState], list[UserId]]:
        """The cached states of `user_ids` (removed: the caller mutates them and `put`s them
        back once stored), and the ids it must read from the store. `unchanged`, given the
        users whose entries passed the age limit, answers which of them the store still
        holds as last written (`RemembersUserWrites.unchanged_since_written`): those
        entries are used, and count as read now."""
        found: dict[UserId, UserState] = {}
        missing: list[UserId] = []
        now = self._clock()
        horizon = now - self.max_age_s
        self._taken = {}  # a batch that failed never put its states back
        aged: dict[UserId, UserState] = {}
        for user_id in user_ids:
            entry = self._states.pop(user_id, None)
            if entry is None:
                missing.append(user_id)
            elif entry[1] >= horizon:
                found[user_id] = entry[0]
                self._taken[user_id] = entry[1]
            else:
                aged[user_id] = entry[0]
        if aged and unchanged is not None:
            for (user_id, state), same in zip(aged.items(), unchanged(list(aged)), strict=True):
                if same:
                    found[user_id] = state
                    self._taken[user_id] = now
                    self.checked += 1
                else:
                    missing.append(user_id)
        else:
            missing += aged
        self.hits += len(found)
        self.misses += len(missing)
        return found, missing

    def drop(self, user_ids: Iterable[UserId]) -> None:
        """Forget these users: the store gets newer states than the cached ones."""
        for user_id in user_ids:
            self._states.pop(user_id, None)

    def put(self, states: Iterable[UserState]) -> None:
        """Keep states just written to the store (the newest last: evicted last); a state
        taken from the cache keeps the time it was read from the store, any other was just
        read."""
        now = self._clock()
        for state in states:
            read_at = self._taken.pop(state.user_id, now)
            self._states.pop(state.user_id, None)
            self._states[state.user_id] = (state, read_at)
        while len(self._states) > self.max_users:
            self._states.popitem(last=False)
