"""Serving through an outage of the online store or the event bus (Redis down).

A recommendation is still answered from what this process last read (the trending list,
the states of recently served users) and marked degraded; an event batch is refused with
a retry hint, never dropped. A `Breaker` keeps every request from waiting on a dead
connection during the outage, and lets one through now and then to notice the recovery.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeVar

from recomatrix.features.base import ItemCount, OnlineStore
from recomatrix.features.state import ItemState, UserState
from recomatrix.types import ItemId, UserId

log = logging.getLogger(__name__)

T = TypeVar("T")


class Unavailable(RuntimeError):
    """A backend cannot be reached now; the same call may succeed after `retry_after_s`."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreUnavailable(Unavailable):
    """The online store cannot be reached."""


class BusUnavailable(Unavailable):
    """The event bus cannot be reached: send the batch again later, with the same event ids
    (a batch whose answer was lost may have reached the bus; its events are applied once)."""


def unavailable_errors() -> tuple[type[Exception], ...]:
    """The exception classes meaning "cannot reach the backend now", not "this call is wrong"."""
    errors: tuple[type[Exception], ...] = (Unavailable, ConnectionError, TimeoutError)
    # Only a process that imported redis holds Redis clients: the embedded tier never does.
    redis_errors = sys.modules.get("redis.exceptions")
    if redis_errors is not None:
        errors += (
            redis_errors.ConnectionError,
            redis_errors.TimeoutError,
            redis_errors.ClusterDownError,
        )
    return errors


def is_unavailable(error: BaseException) -> bool:
    """True for errors meaning "cannot reach the backend now", not "this call is wrong"."""
    return isinstance(error, unavailable_errors())


class Breaker:
    """Fails fast for `open_s` after the backend could not be reached; then lets one call
    probe it (half-open) while the others keep failing fast; a call that gets any answer
    closes it again.

    >>> clock = [0.0]
    >>> breaker = Breaker("store", open_s=1.0, clock=lambda: clock[0])
    >>> def down() -> int:
    ...     raise ConnectionError("refused")
    >>> breaker.call(down)
    Traceback (most recent call last):
    recomatrix.degrade.Unavailable: store unreachable: refused
    >>> breaker.call(lambda: 1)  # not even tried while open
    Traceback (most recent call last):
    recomatrix.degrade.Unavailable: store unreachable; trying it again within 1.0 s
    >>> clock[0] = 1.0
    >>> breaker.call(lambda: 1)  # the probe reaches it: closed
    1
    """

    def __init__(
        self,
        name: str,
        *,
        error: type[Unavailable] = Unavailable,
        open_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.error, self.open_s, self._clock = name, error, open_s, clock
        self._lock = threading.Lock()
        self._opened_at: float | None = None  # None: closed
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def call(self, action: Callable[[], T]) -> T:
        """`action()`, or `self.error` when the backend is unreachable (then `action` is
        called only if this is the probe); any other error of `action` propagates as is."""
        if not self._admit():
            raise self.error(
                f"{self.name} unreachable; trying it again within {self.open_s} s",
                retry_after_s=self._wait_s(),
            )
        try:
            result = action()
        except Exception as failure:
            if not is_unavailable(failure):
                self._close()  # it answered: reachable, the call itself was wrong
                raise
            self._open(failure)
            raise self.error(
                f"{self.name} unreachable: {failure}", retry_after_s=self.open_s
            ) from failure
        self._close()
        return result

    def _admit(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._clock() - self._opened_at < self.open_s:
                return False
            self._probing = True
            return True

    def _wait_s(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self._opened_at + self.open_s - self._clock())

    def _open(self, failure: Exception) -> None:
        with self._lock:
            was_closed = self._opened_at is None
            self._opened_at, self._probing = self._clock(), False
        if was_closed:
            log.warning("%s unreachable (%s): failing fast, probing every %.1f s",
                        self.name, failure, self.open_s)  # fmt: skip

    def _close(self) -> None:
        with self._lock:
            was_open = self._opened_at is not None
            self._opened_at, self._probing = None, False
        if was_open:
            log.warning("%s reachable again", self.name)


class LastKnown:
    """The last good answer of each read a degraded request needs, kept per process.

    Holds the newest trending list and the states of the `max_users` users read most
    recently: during an outage a user is served as of their last request, not forgotten.
    """

    def __init__(self, *, max_users: int = 10_000) -> None:
        self.max_users = max_users
        self._lock = threading.Lock()
        self._users: OrderedDict[UserId, UserState] = OrderedDict()
        self._trending: list[tuple[ItemId, float]] = []

    def user(self, user_id: UserId) -> UserState | None:
        with self._lock:
            state = self._users.get(user_id)
            if state is not None:
                self._users.move_to_end(user_id)
            return state

    def remember_user(self, user_id: UserId, state: UserState | None) -> None:
        with self._lock:
            if state is None:  # the store forgot them: so do we
                self._users.pop(user_id, None)
                return
            self._users[user_id] = state
            self._users.move_to_end(user_id)
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def trending(self, k: int) -> list[tuple[ItemId, float]]:
        return self._trending[: max(k, 0)]

    def remember_trending(self, rows: list[tuple[ItemId, float]]) -> None:
        self._trending = rows  # replaced whole: readers never see a half-written list


class DegradableReads:
    """The online store as one request sees it: a read that cannot reach the store is
    answered from `LastKnown` (items: no live state) and marks the request `degraded`.

    Writes go straight to the store: only the request path reads through this view.
    """

    def __init__(self, store: OnlineStore, last_known: LastKnown, breaker: Breaker) -> None:
        self.store, self.last_known, self.breaker = store, last_known, breaker
        self.degraded = False

    def get_users(self, user_ids: Sequence[UserId]) -> list[UserState | None]:
        states, live = self._read(
            lambda: self.store.get_users(user_ids),
            lambda: [self.last_known.user(u) for u in user_ids],
        )
        if live:
            for user_id, state in zip(user_ids, states, strict=True):
                self.last_known.remember_user(user_id, state)
        return states

    def get_items(self, item_ids: Sequence[ItemId]) -> list[ItemState | None]:
        unknown: list[ItemState | None] = [None] * len(item_ids)  # ranked on defaults
        states, _ = self._read(lambda: self.store.get_items(item_ids), lambda: unknown)
        return states

    def top_trending(self, k: int) -> list[tuple[ItemId, float]]:
        rows, live = self._read(
            lambda: self.store.top_trending(k), lambda: self.last_known.trending(k)
        )
        if live:
            self.last_known.remember_trending(rows)
        return rows

    def seen_events(
        self, event_ids: Sequence[str], times: Sequence[float | None] | None = None
    ) -> list[bool]:
        return self.store.seen_events(event_ids, times)

    def put_users(
        self,
        states: Sequence[UserState],
        *,
        applied_events: Sequence[str] = (),
        changed: Mapping[UserId, Collection[str]] | None = None,
        applied_times: Sequence[float | None] | None = None,
    ) -> None:
        self.store.put_users(states, applied_events=applied_events, changed=changed,
                             applied_times=applied_times)  # fmt: skip

    def add_item_counts(self, counts: Sequence[ItemCount]) -> None:
        self.store.add_item_counts(counts)

    def delete_items(self, item_ids: Sequence[ItemId]) -> None:
        self.store.delete_items(item_ids)

    def set_trending(self, scores: Mapping[ItemId, float]) -> None:
        self.store.set_trending(scores)

    def _read(self, read: Callable[[], T], fallback: Callable[[], T]) -> tuple[T, bool]:
        """(the answer, whether it came from the store)."""
        try:
            return self.breaker.call(read), True
        except Unavailable:
            self.degraded = True
            return fallback(), False


class Fallback:
    """One engine's outage state: a breaker per backend and the last-known reads."""

    def __init__(self, store: OnlineStore, *, max_users: int = 10_000, open_s: float = 1.0):
        self.store = store
        self.last_known = LastKnown(max_users=max_users)
        self.store_breaker = Breaker("online store", error=StoreUnavailable, open_s=open_s)
        self.bus_breaker = Breaker("event bus", error=BusUnavailable, open_s=open_s)

    def reads(self) -> DegradableReads:
        """A fresh view of the store for one request (its own `degraded` flag)."""
        return DegradableReads(self.store, self.last_known, self.store_breaker)


class FailureLog:
    """Logs a run of repeated failures (a Redis outage retried every 0.5 s) as its first
    traceback, a one-line reminder every `every_s`, and one line when it ends. A failure of
    another kind (exception type) within the run gets its own traceback."""

    def __init__(self, logger: logging.Logger, what: str, *, every_s: float = 30.0) -> None:
        self.logger, self.what, self.every_s = logger, what, every_s
        self.count = 0  # failures in the current run
        self._since = self._reminded = 0.0
        self._kinds: set[type[BaseException]] = set()  # logged with a traceback in this run

    def failed(self, err: Exception) -> None:
        now = time.monotonic()
        self.count += 1
        if self.count == 1:
            self._since = self._reminded = now
        if type(err) not in self._kinds:
            self._kinds.add(type(err))
            self._reminded = now
            self.logger.error("%s", self.what, exc_info=err)
        elif now - self._reminded >= self.every_s:
            self._reminded = now
            self.logger.error("%s: still failing after %d attempts in %.0f s (last: %s)",
                              self.what, self.count, now - self._since, err)  # fmt: skip

    def recovered(self) -> None:
        if self.count:
            self.logger.warning("%s: recovered after %d failed attempts in %.1f s", self.what,
                                self.count, time.monotonic() - self._since)  # fmt: skip
            self.count = 0
            self._kinds.clear()
