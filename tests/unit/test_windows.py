"""Rolling windows equal a brute-force recount of the events they should contain."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from recomatrix.features.windows import WINDOWS, WindowCounts

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
