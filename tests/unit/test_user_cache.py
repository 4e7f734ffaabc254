"""The stream worker's cache of the user states it owns."""

from __future__ import annotations

from collections.abc import Sequence

from recomatrix.features.state import UserState
from recomatrix.stream.user_cache import UserCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_state_is_taken_out_until_put_back() -> None:
    cache = UserCache(max_users=10, max_age_s=60)
    cache.put([UserState("u1"), UserState("u2")])
    found, missing = cache.take(["u1", "u3"])
    assert list(found) == ["u1"] and missing == ["u3"]
    assert cache.take(["u1"]) == ({}, ["u1"])  # a failed batch never returns it half-applied
    assert (cache.hits, cache.misses) == (1, 2)


def test_states_older_than_the_age_limit_are_read_again() -> None:
    clock = Clock()
    cache = UserCache(max_users=10, max_age_s=60, clock=clock)
    cache.put([UserState("u1"), UserState("u2")])
    clock.now = 30.0
    cache.put([UserState("u2")])
    clock.now = 61.0
    found, missing = cache.take(["u1", "u2"])
    assert list(found) == ["u2"] and missing == ["u1"]


def test_a_state_written_again_and_again_is_still_read_again_after_the_age_limit() -> None:
    """The limit counts from the last read from the store, not the last write: a busy user
    whose stored state someone else changed is not overwritten from an old copy forever."""
    clock = Clock()
    cache = UserCache(max_users=10, max_age_s=60, clock=clock)
    cache.put([UserState("u1")])  # just read from the store
    for second in (20.0, 40.0, 59.0):
        clock.now = second
        found, _ = cache.take(["u1"])
        cache.put(found.values())  # written back after each batch
    clock.now = 61.0
    assert cache.take(["u1"]) == ({}, ["u1"])


def test_the_least_recently_written_states_go_first() -> None:
    cache = UserCache(max_users=2, max_age_s=60)
    cache.put([UserState("u1"), UserState("u2")])
    cache.put([UserState("u1"), UserState("u3")])
    assert len(cache) == 2
    assert cache.take(["u1", "u2", "u3"])[1] == ["u2"]


def test_a_change_of_ownership_empties_it() -> None:
    cache = UserCache(max_users=10, max_age_s=60)
    cache.follow(1)
    cache.put([UserState("u1")])
    cache.follow(1)
    assert len(cache) == 1
    cache.follow(2)
    assert len(cache) == 0


def test_an_aged_state_the_store_still_holds_as_written_is_kept_and_counted_as_read_now() -> None:
    clock = Clock()
    cache = UserCache(max_users=10, max_age_s=60, clock=clock)
    cache.put([UserState("u1"), UserState("u2"), UserState("u3")])
    clock.now = 30.0
    cache.put([UserState("u3")])  # read from the store again at 30
    clock.now = 61.0
    asked: list[list[str]] = []

    def unchanged(user_ids: Sequence[str]) -> list[bool]:
        asked.append(list(user_ids))
        return [user_id == "u1" for user_id in user_ids]  # someone else wrote u2

    found, missing = cache.take(["u1", "u2", "u3", "u4"], unchanged)
    assert asked == [["u1", "u2"]]  # only entries past the age limit are checked
    assert sorted(found) == ["u1", "u3"] and sorted(missing) == ["u2", "u4"]
    assert cache.checked == 1
    cache.put(found.values())
    clock.now = 100.0  # u1 counts from its check at 61, not from 0
    assert sorted(cache.take(["u1", "u3"], lambda ids: [False] * len(ids))[0]) == ["u1"]


def test_without_a_check_aged_states_are_read_again() -> None:
    clock = Clock()
    cache = UserCache(max_users=10, max_age_s=60, clock=clock)
    cache.put([UserState("u1")])
    clock.now = 61.0
    assert cache.take(["u1"]) == ({}, ["u1"]) and cache.checked == 0
