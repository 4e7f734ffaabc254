"""Rolling windows equal a brute-force recount of the events they should contain."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recomatrix.features.windows import HEADER, ROW, WINDOWS, WindowCounts

events = st.lists(
    st.tuples(st.sampled_from(["click", "skip", "view"]), st.floats(0, 200_000)),
    max_size=200,
)


def recount(log: list[tuple[str, float]], window_name: str, now: float) -> dict[str, float]:
    window = next(w for w in WINDOWS if w.name == window_name)
    out: dict[str, float] = {}
    for name, ts in log:
        if ts <= now and window.contains(ts, now):
            out[name] = out.get(name, 0.0) + 1.0
    return out


@settings(max_examples=150, deadline=None)
@given(events, st.floats(0, 100_000))
def test_window_counts_equal_brute_force_recount(log: list[tuple[str, float]], lag: float) -> None:
    log = sorted(log, key=lambda e: e[1])
    counts = WindowCounts()
    for name, ts in log:
        counts.add(name, ts=ts)
    now = (log[-1][1] if log else 0.0) + lag
    for window in WINDOWS:
        assert counts.get(window.name, now=now) == recount(log, window.name, now)


def test_event_leaves_the_5_minute_window_but_stays_in_the_hour() -> None:
    counts = WindowCounts()
    counts.add("click", ts=1_000.0)
    assert counts.get("5m", now=1_100.0) == {"click": 1.0}
    assert counts.get("5m", now=1_000.0 + 400) == {}
    assert counts.get("1h", now=1_000.0 + 400) == {"click": 1.0}
    assert counts.get("24h", now=1_000.0 + 90_000) == {}


def test_copy_is_independent_of_the_original() -> None:
    counts = WindowCounts()
    counts.add("click", ts=10.0)
    clone = counts.copy()
    clone.add("click", ts=11.0)
    assert counts.get("5m", now=12.0) == {"click": 1.0}
    assert clone.get("5m", now=12.0) == {"click": 2.0}


@settings(max_examples=100, deadline=None)
@given(events, st.floats(0, 100_000))
def test_late_events_and_packing_keep_the_recount(log: list[tuple[str, float]], lag: float) -> None:
    # Events arrive out of order (a late event's bucket sits before newer rows) and the
    # state goes through its packed bytes between events, as it does through Redis.
    counts = WindowCounts()
    for name, ts in log:
        counts = WindowCounts(counts.to_bytes())
        counts.add(name, ts=ts)
    now = max((ts for _, ts in log), default=0.0) + lag
    for window in WINDOWS:
        # A late event older than the newest row's window is pruned: reads happen at or
        # after the newest event, so it could never be counted again.
        want = recount([e for e in log if e[1] <= now], window.name, now)
        assert counts.get(window.name, now=now) == want


def test_amounts_are_summed_and_leave_with_their_bucket() -> None:
    counts = WindowCounts()
    counts.add("watch_seconds", ts=1_000.0, amount=42.5)
    counts.add("watch_seconds", ts=1_005.0, amount=7.5)
    counts.add("watch_seconds", ts=1_400.0, amount=10.0)
    assert counts.get("5m", now=1_400.0) == {"watch_seconds": 10.0}
    assert counts.get("1h", now=1_400.0) == {"watch_seconds": 60.0}


def test_a_long_stream_keeps_only_the_buckets_its_windows_can_still_count() -> None:
    counts = WindowCounts()
    for minute in range(3 * 24 * 60):  # three days, one click a minute
        counts.add("click", ts=minute * 60.0)
    now = (3 * 24 * 60 - 1) * 60.0
    assert counts.get("5m", now=now) == {"click": 5.0}
    assert counts.get("1h", now=now) == {"click": 60.0}
    assert counts.get("24h", now=now)["click"] > 23 * 60
    rows = (len(counts.to_bytes()) - HEADER.size) // ROW.size
    assert rows <= sum(w.n_buckets + 1 for w in WINDOWS)


def test_unknown_fields_and_damaged_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="watch_seconds"):
        WindowCounts().add("purchase", ts=1.0)
    counts = WindowCounts()
    counts.add("click", ts=1.0)
    with pytest.raises(ValueError, match="rows"):
        WindowCounts(counts.to_bytes()[:-3])
    assert not WindowCounts() and counts


@settings(max_examples=150, deadline=None)
@given(events, st.floats(0, 200_000), st.floats(0, 1))
def test_sums_hold_until_stable_until_and_change_there(
    log: list[tuple[str, float]], now: float, share: float
) -> None:
    counts = WindowCounts()
    for name, ts in sorted(log, key=lambda e: e[1]):
        counts.add(name, ts=ts)
    until = counts.stable_until(now=now)
    assert until > now
    at_now = counts.all(now=now)
    later = now + share * (min(until, now + 200_000) - now)
    if later < until:
        assert counts.all(now=later) == at_now
    if until != float("inf"):
        # Bounded by a row leaving or entering there (another may enter as one leaves).
        assert counts.all(now=until) != at_now or len(log) > 1


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 200_000), st.floats(0, 200_000))
def test_one_event_changes_the_sums_exactly_at_stable_until(ts: float, now: float) -> None:
    counts = WindowCounts()
    counts.add("click", ts=ts)
    until = counts.stable_until(now=now)
    if until != float("inf"):
        assert counts.all(now=until) != counts.all(now=now)
        assert counts.all(now=max(now, until - 1e-6)) == counts.all(now=now)
