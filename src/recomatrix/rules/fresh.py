"""Fresh-item slots: a just-published item that matches the user gets seen.

A click model trained on history scores a brand-new item low (no engagement yet), so
without help an item published a second ago would wait for a nightly job after all.
This rule moves the most relevant fresh candidates (by retrieval similarity, which for a
new item comes from its content) up to configured positions.
"""

from __future__ import annotations

from recomatrix.types import Candidate, RuleContext


def is_fresh(ctx: RuleContext, cand: Candidate) -> bool:
    """Published within the fresh window and similar enough to the user's query."""
    return (
        ctx.now - cand.created_at < ctx.fresh_window_s
        and cand.retrieval_score >= ctx.min_fresh_similarity
        and not cand.sponsored
    )


def promote_fresh(ctx: RuleContext, cands: list[Candidate]) -> list[Candidate]:
    """Move the best-matching fresh items up to `ctx.fresh_positions` (never down).

    >>> ctx = RuleContext(user_id="u", now=100.0, n=5, watched={}, exclude=frozenset(),
    ...                   fresh_positions=(1,))
    >>> cands = [Candidate(i, "personal", retrieval_score=0.9) for i in "abc"]
    >>> cands[2].created_at = 99.0
    >>> [c.item_id for c in promote_fresh(ctx, cands)]
    ['a', 'c', 'b']
    """
    if not ctx.fresh_positions:
        return list(cands)
    fresh = sorted(
        (i for i, c in enumerate(cands) if is_fresh(ctx, c)),
        key=lambda i: -cands[i].retrieval_score,
    )
    out = list(cands)
    for slot, index in zip(sorted(ctx.fresh_positions), fresh, strict=False):
        current = out.index(cands[index])
        if current > slot:
            out.insert(slot, out.pop(current))
    return out
