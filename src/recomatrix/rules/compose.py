"""The end of the rules pipeline: backfill up to n, and the default order the rules run in.

Rules compose like middleware: each takes the list the previous one returned. The default
order makes the output hold every invariant at once: filters first, then placement, then
the genre repair (which keeps sponsored slots), then a backfill that respects all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from recomatrix.rules.filters import cap_per_creator, dedupe, drop_watched, withheld
from recomatrix.rules.fresh import promote_fresh
from recomatrix.rules.ordering import FirstFitQueue, GenreRun, limit_adjacent_genre, place_sponsored
from recomatrix.types import Candidate, ItemId, Rule, RuleContext


def backfill(ctx: RuleContext, cands: list[Candidate]) -> list[Candidate]:
    """Top the list up to `ctx.n` from `ctx.backfill` (e.g. popular items), then cut to n.

    Fillers are taken first-fit in their own order, skipping items already listed,
    excluded, watched within the window, sponsored (those belong in slots, and backfill
    only appends), of a creator at its cap, or whose genre would make the last run too
    long (such a filler is used later, once the run has changed). Fillers keep their own
    `source` (e.g. "popular").

    >>> ctx = RuleContext(user_id="u", now=0.0, n=4, watched={}, exclude=frozenset({"z"}),
    ...                   max_adjacent_same_genre=1,
    ...                   backfill=[Candidate(i, "popular", genre=g)
    ...                             for i, g in [("a", "x"), ("z", "y"), ("b", "x"), ("c", "y")]])
    >>> [(c.item_id, c.source) for c in backfill(ctx, [Candidate("a", "personal", genre="y")])]
    [('a', 'personal'), ('b', 'popular'), ('c', 'popular')]
    """
    limit = max(ctx.n, 0)
    if len(cands) >= limit:
        return cands[:limit]
    listed: set[ItemId] = {c.item_id for c in cands}
    per_creator: Counter[str] = Counter(c.creator_id for c in cands if c.creator_id)
    fillers: list[Candidate] = []
    for cand in ctx.backfill:
        if cand.item_id in listed or cand.sponsored or withheld(ctx, cand.item_id):
            continue
        listed.add(cand.item_id)  # also de-duplicates the backfill list itself
        fillers.append(cand)

    def creator_full(cand: Candidate) -> bool:
        return bool(cand.creator_id) and per_creator[cand.creator_id] >= ctx.max_per_creator

    queue = FirstFitQueue(fillers, discard=creator_full)
    run = GenreRun.ending(cands, limit=ctx.max_adjacent_same_genre)
    filled = list(cands)
    while len(filled) < limit:
        pick = queue.take(run)
        if pick is None:
            break
        run.extend(pick.genre)
        if pick.creator_id:
            per_creator[pick.creator_id] += 1
        filled.append(pick)
    return filled


DEFAULT_RULES: tuple[Rule, ...] = (
    drop_watched,
    dedupe,
    cap_per_creator,
    promote_fresh,
    place_sponsored,
    # Placement can put a sponsored item next to two organic items of its genre; the
    # genre repair fixes that while keeping every sponsored item in a slot.
    limit_adjacent_genre,
    backfill,
)


def apply_rules(
    ctx: RuleContext,
    cands: Sequence[Candidate],
    rules: Sequence[Rule] = DEFAULT_RULES,
) -> list[Candidate]:
    """Run `rules` in order over the ranked candidates and keep the first `ctx.n`.

    The input is not modified. With the default rules the result has no item twice, no
    excluded or recently watched item, no genre run over the limit, no creator over its
    cap, sponsored items only in slots, and `ctx.n` items whenever the candidates and the
    backfill allow it.

    >>> ctx = RuleContext(user_id="u", now=0.0, n=2, watched={}, exclude=frozenset({"b"}))
    >>> [c.item_id for c in apply_rules(ctx, [Candidate(i, "personal") for i in "abcd"])]
    ['a', 'c']
    """
    ranked = list(cands)
    for rule in rules:
        ranked = rule(ctx, ranked)
    return ranked[: max(ctx.n, 0)]
