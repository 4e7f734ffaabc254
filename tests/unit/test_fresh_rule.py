"""Fresh slots: a just-published, relevant item is moved up; stale or unrelated ones are not."""

from __future__ import annotations

from recomatrix.rules import apply_rules, promote_fresh
from recomatrix.types import Candidate, RuleContext

NOW = 1_000_000.0


def ctx(**kwargs: object) -> RuleContext:
    base: dict[str, object] = {
        "user_id": "u", "now": NOW, "n": 10, "watched": {}, "exclude": frozenset(),
        "fresh_positions": (1,), "sponsored_positions": (),
    }  # fmt: skip
    base.update(kwargs)
    return RuleContext(**base)  # type: ignore[arg-type]


def ranked(n: int) -> list[Candidate]:
    return [
        Candidate(f"i{k}", "personal", retrieval_score=0.8, score=1.0 - k / 100, genre=f"g{k}")
        for k in range(n)
    ]


def test_item_published_a_second_ago_moves_up_to_the_fresh_slot() -> None:
    cands = ranked(8)
    cands[6].created_at = NOW - 1.0
    assert [c.item_id for c in promote_fresh(ctx(), cands)][:3] == ["i0", "i6", "i1"]


def test_item_published_two_days_ago_is_not_fresh() -> None:
    cands = ranked(8)
    cands[6].created_at = NOW - 2 * 86400
    assert promote_fresh(ctx(), cands) == cands


def test_fresh_item_that_does_not_match_the_user_stays_where_it_ranked() -> None:
    cands = ranked(8)
    cands[6].created_at, cands[6].retrieval_score = NOW - 1.0, 0.1
    assert promote_fresh(ctx(), cands) == cands


def test_fresh_item_already_above_its_slot_is_never_moved_down() -> None:
    cands = ranked(8)
    cands[0].created_at = NOW - 1.0
    assert promote_fresh(ctx(fresh_positions=(3,)), cands) == cands


def test_the_full_pipeline_keeps_the_fresh_item_in_the_slot() -> None:
    cands = ranked(30)
    cands[25].created_at = NOW - 5.0
    out = apply_rules(ctx(), cands)
    assert out[1].item_id == "i25" and len(out) == 10
