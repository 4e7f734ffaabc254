"""Where applied-event markers are written and looked for (`features/markers.py`): a lookup
within the claim TTL always includes the set the write chose, and sets stay bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from recomatrix.features.markers import FINE_S, MarkerPlan

NOW = 1_765_000_000.0
CLAIM_TTL_S = 3600.0


@settings(max_examples=2000)
@given(
    offset=st.floats(-3 * 86400, 3 * 86400),  # the event's time against the write's clock
    later=st.floats(0, CLAIM_TTL_S),  # how long after the write it is looked for
    write=st.floats(0, 86400),
)
def test_a_lookup_within_the_claim_ttl_looks_where_the_write_put_the_marker(
    offset: float, later: float, write: float
) -> None:
    plan = MarkerPlan(CLAIM_TTL_S)
    written_at = NOW + write
    slot = plan.write(written_at + offset, written_at)
    assert slot.suffix in plan.lookup(written_at + offset, written_at + later)
    # The set outlives the claim TTL after this write.
    assert slot.expire_at_ms >= (written_at + CLAIM_TTL_S) * 1000


def test_an_event_near_the_clock_is_looked_for_in_its_own_small_set_only() -> None:
    plan = MarkerPlan(CLAIM_TTL_S)
    for offset in (-600.0, -5.0, 0.0):  # up to a few minutes old
        ts = NOW + offset
        assert plan.write(ts, NOW).suffix == f"f{int(ts // FINE_S)}"
        assert plan.lookup(ts, NOW) == [f"f{int(ts // FINE_S)}"]
        assert plan.lookup(ts, NOW + 30) == [f"f{int(ts // FINE_S)}"]


def test_events_far_from_the_clock_go_to_the_sets_of_the_time_of_applying() -> None:
    plan = MarkerPlan(CLAIM_TTL_S)
    coarse = plan.coarse_write(NOW)
    for ts in (NOW - 86400, NOW - 3 * 3600, NOW + 2 * 3600, 0.0):
        assert plan.write(ts, NOW) == coarse
        assert set(plan.coarse_live(NOW)) <= set(plan.lookup(ts, NOW))


def test_a_fine_set_takes_writes_only_for_a_bounded_time() -> None:
    """A fine set expires a bounded time after its bucket: stray late events cannot keep
    it, and every id in it, alive."""
    plan = MarkerPlan(CLAIM_TTL_S)
    ts = NOW
    last = max(
        (plan.write(ts, NOW + step).expire_at_ms for step in range(0, 4 * 3600, 5)
         if plan.write(ts, NOW + step).suffix.startswith("f")),
    )  # fmt: skip
    assert last <= (NOW + 1.26 * CLAIM_TTL_S + 2 * FINE_S) * 1000
