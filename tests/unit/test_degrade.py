"""Serving through an outage: the breaker, the last-known cache, degraded store reads."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
import redis

from recomatrix.degrade import (
    Breaker,
    DegradableReads,
    FailureLog,
    LastKnown,
    StoreUnavailable,
    Unavailable,
    is_unavailable,
)
from recomatrix.features import ItemState, MemoryOnlineStore, UserState
from recomatrix.types import ItemId, UserId


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class UnpluggableStore(MemoryOnlineStore):
    """A real in-memory store whose reads fail like an unreachable Redis while `down`."""

    down = False

    def get_users(self, user_ids: Sequence[UserId]) -> list[UserState | None]:
        self._fail_if_down()
        return super().get_users(user_ids)

    def get_items(self, item_ids: Sequence[ItemId]) -> list[ItemState | None]:
        self._fail_if_down()
        return super().get_items(item_ids)

    def top_trending(self, k: int) -> list[tuple[ItemId, float]]:
        self._fail_if_down()
        return super().top_trending(k)

    def _fail_if_down(self) -> None:
        if self.down:
            raise redis.exceptions.ConnectionError("Error 111 connecting: Connection refused.")


def refused() -> int:
    raise redis.exceptions.ConnectionError("Connection refused.")


def test_an_open_breaker_fails_fast_without_calling_the_backend() -> None:
    clock, calls = Clock(), []
    breaker = Breaker("store", open_s=1.0, clock=clock)
    with pytest.raises(Unavailable):
        breaker.call(refused)
    clock.now = 0.4
    with pytest.raises(Unavailable) as raised:
        breaker.call(lambda: calls.append(1))
    assert calls == [] and breaker.is_open
    assert raised.value.retry_after_s == pytest.approx(0.6)


def test_a_half_open_breaker_lets_one_probe_through_and_closes_when_it_answers() -> None:
    clock, calls = Clock(), []
    breaker = Breaker("store", open_s=1.0, clock=clock)
    with pytest.raises(Unavailable):
        breaker.call(refused)
    clock.now = 1.0

    def probe() -> str:
        with pytest.raises(Unavailable):  # a second caller while the probe is out
            breaker.call(lambda: calls.append(1))
        return "pong"

    assert breaker.call(probe) == "pong"
    assert calls == [] and not breaker.is_open
    assert breaker.call(lambda: 2) == 2


def test_a_failed_probe_opens_the_breaker_again() -> None:
    clock = Clock()
    breaker = Breaker("store", open_s=1.0, clock=clock)
    for now in (0.0, 1.0):
        clock.now = now
        with pytest.raises(Unavailable):
            breaker.call(refused)
    clock.now = 1.5
    with pytest.raises(Unavailable) as raised:
        breaker.call(lambda: 1)
    assert raised.value.retry_after_s == pytest.approx(0.5)


def test_an_error_that_is_not_about_reaching_the_backend_propagates_and_closes() -> None:
    clock = Clock()
    breaker = Breaker("store", error=StoreUnavailable, open_s=1.0, clock=clock)
    with pytest.raises(StoreUnavailable):
        breaker.call(refused)
    clock.now = 1.0

    def wrong_type() -> int:
        raise redis.exceptions.ResponseError("WRONGTYPE")

    with pytest.raises(redis.exceptions.ResponseError):
        breaker.call(wrong_type)
    assert not breaker.is_open


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (redis.exceptions.ConnectionError("refused"), True),
        (redis.exceptions.BusyLoadingError("LOADING"), True),  # restarting, reading its AOF
        (redis.exceptions.TimeoutError("read timed out"), True),
        (ConnectionRefusedError(), True),
        (redis.exceptions.ResponseError("WRONGTYPE"), False),
        (ValueError("bad"), False),
    ],
)
def test_only_errors_about_reaching_the_backend_count_as_unavailable(
    error: Exception, unavailable: bool
) -> None:
    assert is_unavailable(error) is unavailable


def test_last_known_keeps_the_most_recently_read_users() -> None:
    cache = LastKnown(max_users=2)
    for user_id in ("a", "b"):
        cache.remember_user(user_id, UserState(user_id))
    assert cache.user("a") is not None  # read: now the most recent
    cache.remember_user("c", UserState("c"))
    assert [u for u in "abc" if cache.user(u) is not None] == ["a", "c"]
    cache.remember_user("a", None)  # the store forgot them
    assert cache.user("a") is None


def test_reads_fall_back_to_the_last_known_answers_while_the_store_is_down() -> None:
    store, cache = UnpluggableStore(), LastKnown()
    breaker = Breaker("store", error=StoreUnavailable, open_s=1.0, clock=Clock())
    store.put_users([UserState("fan", last_ts=5.0)])
    store.set_trending({"hit": 3.0, "warm": 1.0})
    up = DegradableReads(store, cache, breaker)
    assert up.get_users(["fan", "nobody"])[0] is not None
    assert up.top_trending(10) == [("hit", 3.0), ("warm", 1.0)]
    assert not up.degraded

    store.down = True
    down = DegradableReads(store, cache, breaker)
    fan, nobody = down.get_users(["fan", "nobody"])
    assert fan is not None and fan.last_ts == 5.0 and nobody is None
    assert down.top_trending(1) == [("hit", 3.0)]
    assert down.get_items(["hit", "warm"]) == [None, None]  # ranked on feature defaults
    assert down.degraded and not up.degraded


def test_a_run_of_failures_logs_one_traceback_then_reminders_then_the_recovery(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [100.0]
    monkeypatch.setattr("recomatrix.degrade.time.monotonic", lambda: clock[0])
    failures = FailureLog(logging.getLogger("test.failures"), "batch failed", every_s=30.0)
    with caplog.at_level(logging.WARNING, logger="test.failures"):
        for _ in range(120):  # a minute of retries every 0.5 s
            failures.failed(redis.ConnectionError("Connection refused"))
            clock[0] += 0.5
        failures.failed(KeyError("a bug, not the outage"))  # a new kind: its own traceback
        failures.recovered()
        failures.recovered()  # nothing failed since: nothing to say
        failures.failed(redis.ConnectionError("Connection refused"))  # a new run
    records = caplog.records
    assert [r.exc_info is not None for r in records] == [True, False, True, False, True]
    assert "still failing after 61 attempts in 30 s" in records[1].getMessage()
    assert records[2].exc_info is not None and records[2].exc_info[0] is KeyError
    assert "recovered after 121 failed attempts in 60.0 s" in records[3].getMessage()
