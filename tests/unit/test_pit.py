"""Point-in-time rows from the offline log: each row counts exactly the events strictly
before it, so nothing from its future can leak in, whatever that future holds."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recomatrix.features.offline import Impression, ParquetLog
from recomatrix.features.state import ENGAGED
from recomatrix.training.pit import (
    ITEM_COUNTS,
    PIT_FEATURE_NAMES,
    Exposures,
    PointInTimeRows,
    point_in_time_rows,
)
from recomatrix.training.ranker_data import LABEL_HORIZON_S
from recomatrix.types import EVENT_TYPES, Event

ITEM_TYPES = {
    "item_impressions": ("impression",),
    "item_engaged": ENGAGED,
    "item_completes": ("complete",),
    "item_skips": ("skip",),
}


def write_log(
    root: Path, events: Sequence[Event], served: Sequence[tuple[str, str, float]]
) -> Path:
    """A real ParquetLog holding `events` (in two part files) and the served (user, item, ts)."""
    log = ParquetLog(root=root, flush_interval_s=3600.0)
    half = len(events) // 2
    for part in (events[:half], events[half:]):
        log.append_events(part)
        log.flush()
    log.append_impressions(
        [Impression("r", u, i, 0, "personal", 0.5, "v1", ts, [0.0]) for u, i, ts in served]
    )
    log.close()
    return root


def recount(events: Sequence[Event], user: str, item: str, ts: float) -> list[float]:
    """The features of a row by brute force: events strictly before `ts`, each id once."""
    earlier = [e for e in {e.event_id: e for e in events}.values() if e.ts < ts]
    by_user = [sum(e.user_id == user and e.type == t for e in earlier) for t in EVENT_TYPES]
    by_item = [
        sum(e.item_id == item and e.type in ITEM_TYPES[name] for e in earlier)
        for name in ITEM_COUNTS
    ]
    return [float(n) for n in (*by_user, *by_item)]


def relabel(events: Sequence[Event], user: str, item: str, ts: float) -> list[float]:
    """Labels by brute force: engaged / completed within the horizon from `ts` on."""
    ahead = [e for e in events if e.user_id == user and e.item_id == item
             and ts <= e.ts <= ts + LABEL_HORIZON_S]  # fmt: skip
    return [float(any(e.type in ENGAGED for e in ahead)),
            float(any(e.type == "complete" for e in ahead))]  # fmt: skip


def assert_matches_brute_force(rows: PointInTimeRows, events: Sequence[Event]) -> None:
    for r in range(len(rows)):
        user, item, ts = rows.user_id[r], rows.item_id[r], float(rows.ts[r])
        assert rows.X[r].tolist() == recount(events, user, item, ts), (user, item, ts)
        assert rows.y[r].tolist() == relabel(events, user, item, ts), (user, item, ts)


def feature(rows: PointInTimeRows, name: str) -> float:
    return float(rows.X[0, PIT_FEATURE_NAMES.index(name)])


def test_a_burst_right_after_an_impression_never_reaches_its_row(tmp_path: Path) -> None:
    past = [
        Event("p1", "u", "x", "click", 10.0),
        Event("p2", "u", "y", "skip", 20.0),
        Event("p3", "w", "a", "click", 30.0),
        Event("p4", "w", "a", "impression", 40.0),
    ]
    # The moment of the impression and right after it: the user binges, the item goes viral.
    burst = [Event(f"b{i}", "u", "a", kind, 100.0 + i * 0.001)
             for i, kind in enumerate(["click", "complete", "like"] * 20)]  # fmt: skip
    burst += [Event(f"v{i}", f"fan{i}", "a", "click", 100.0 + i * 0.01) for i in range(50)]
    events = past + burst
    rows = point_in_time_rows(write_log(tmp_path, events, [("u", "a", 100.0)]))

    assert len(rows) == 1
    assert feature(rows, "user_clicks") == 1.0 and feature(rows, "user_skips") == 1.0
    assert feature(rows, "user_completes") == 0.0 and feature(rows, "user_likes") == 0.0
    assert feature(rows, "item_engaged") == 1.0 and feature(rows, "item_impressions") == 1.0
    assert rows.y[0].tolist() == [1.0, 1.0]  # the future is the label, never a feature
    assert_matches_brute_force(rows, events)


event_lists = st.lists(
    st.tuples(
        st.sampled_from(["u0", "u1", "u2"]),
        st.sampled_from(["i0", "i1", "i2", "i3"]),
        st.sampled_from(EVENT_TYPES),
        st.integers(0, 40).map(lambda m: m * 300.0),  # shared timestamps happen often
        st.booleans(),  # delivered twice (at-least-once)
    ),
    max_size=40,
)
served_lists = st.lists(
    st.tuples(
        st.sampled_from(["u0", "u1", "u2"]),
        st.sampled_from(["i0", "i1", "i2", "i3"]),
        st.integers(0, 40).map(lambda m: m * 300.0),
    ),
    max_size=12,
)


def as_events(raw: Sequence[tuple[str, str, str, float, bool]], prefix: str = "e") -> list[Event]:
    events = [Event(f"{prefix}{n}", u, i, t, ts) for n, (u, i, t, ts, _) in enumerate(raw)]  # type: ignore[arg-type]
    return events + [e for e, (*_, twice) in zip(events, raw, strict=True) if twice]


@settings(max_examples=40, deadline=None)
@given(raw=event_lists, served=served_lists, exposures=st.sampled_from(["served", "events"]))
def test_rows_equal_a_brute_force_recount(
    raw: list[tuple[str, str, str, float, bool]],
    served: list[tuple[str, str, float]],
    exposures: Exposures,
) -> None:
    events = as_events(raw)
    with tempfile.TemporaryDirectory() as tmp:
        rows = point_in_time_rows(write_log(Path(tmp), events, served), exposures=exposures)
    expected = (
        served if exposures == "served"
        else [(e.user_id, e.item_id, e.ts) for e in {e.event_id: e for e in events}.values()
              if e.type == "impression"]
    )  # fmt: skip
    assert sorted(zip(rows.user_id, rows.item_id, rows.ts, strict=True)) == sorted(expected)
    assert_matches_brute_force(rows, events)


@settings(max_examples=25, deadline=None)
@given(raw=event_lists, future=event_lists, served=served_lists, cut=st.integers(0, 40))
def test_changing_only_future_events_leaves_every_row_unchanged(
    raw: list[tuple[str, str, str, float, bool]],
    future: list[tuple[str, str, str, float, bool]],
    served: list[tuple[str, str, float]],
    cut: int,
) -> None:
    cutoff = cut * 300.0
    events = as_events(raw)
    past = [e for e in events if e.ts < cutoff]
    # Another future: the same past, then different events from the cut-off on.
    other = past + [e for e in as_events(future, prefix="f") if e.ts >= cutoff]
    served_before = [s for s in served if s[2] <= cutoff]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        rows = point_in_time_rows(write_log(Path(a), events, served_before))
        again = point_in_time_rows(write_log(Path(b), other, served_before))
    np.testing.assert_array_equal(rows.X, again.X)
    assert rows.user_id.tolist() == again.user_id.tolist()


def test_an_empty_log_gives_no_rows_and_a_missing_one_a_clear_error(tmp_path: Path) -> None:
    rows = point_in_time_rows(write_log(tmp_path / "log", [], []))
    assert rows.X.shape == (0, len(PIT_FEATURE_NAMES)) and rows.y.shape == (0, 2)
    with pytest.raises(ValueError, match="no offline log"):
        point_in_time_rows(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="exposures"):
        point_in_time_rows(tmp_path / "log", exposures="clicks")  # type: ignore[arg-type]
