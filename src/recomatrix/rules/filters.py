"""Filtering rules: drop what the user must not see (recently watched, excluded, duplicates,
one creator too often). Each keeps the order of what it does not drop.
"""

from __future__ import annotations

from collections import Counter

from recomatrix.types import Candidate, ItemId, RuleContext


def watched_within(ctx: RuleContext, item_id: ItemId) -> bool:
    """True when the user watched `item_id` less than `ctx.watched_window_s` ago (event time).

    The window is half-open: an item watched exactly 48 h ago may be shown again. A
    watched-at in the future (clock skew between producers) counts as just watched.

    >>> ctx = RuleContext(user_id="u", now=100_000.0, n=5, watched={"a": 0.0},
    ...                   exclude=frozenset(), watched_window_s=200_000.0)
    >>> watched_within(ctx, "a"), watched_within(ctx, "b")
    (True, False)
    """
    watched_at = ctx.watched.get(item_id)
    return watched_at is not None and ctx.now - watched_at < ctx.watched_window_s


def withheld(ctx: RuleContext, item_id: ItemId) -> bool:
    """True when `item_id` must not be shown: excluded by the caller or watched recently."""
    return item_id in ctx.exclude or watched_within(ctx, item_id)


def drop_watched(ctx: RuleContext, cands: list[Candidate]) -> list[Candidate]:
    """Drop items watched within the window and items the caller excluded.

    >>> ctx = RuleContext(user_id="u", now=200_000.0, n=5, exclude=frozenset({"c"}),
    ...                   watched={"a": 200_000.0 - 47 * 3600, "b": 200_000.0 - 49 * 3600})
    >>> cands = [Candidate(i, "personal") for i in "abcd"]
    >>> [c.item_id for c in drop_watched(ctx, cands)]
    ['b', 'd']
    """
    return [c for c in cands if not withheld(ctx, c.item_id)]


def dedupe(ctx: RuleContext, cands: list[Candidate]) -> list[Candidate]:
    """Keep the first (best-ranked) occurrence of each item.

    >>> ctx = RuleContext(user_id="u", now=0.0, n=5, watched={}, exclude=frozenset())
    >>> cands = [Candidate("a", "personal"), Candidate("b", "fresh"), Candidate("a", "trending")]
    >>> [(c.item_id, c.source) for c in dedupe(ctx, cands)]
    [('a', 'personal'), ('b', 'fresh')]
    """
    seen: set[ItemId] = set()
    kept: list[Candidate] = []
    for cand in cands:
        if cand.item_id not in seen:
            seen.add(cand.item_id)
            kept.append(cand)
    return kept


def cap_per_creator(ctx: RuleContext, cands: list[Candidate]) -> list[Candidate]:
    """Keep at most `ctx.max_per_creator` items of each creator, the best-ranked ones.

    Items without a creator (`creator_id == ""`) are never capped: an unknown creator is
    not one creator.

    >>> ctx = RuleContext(user_id="u", now=0.0, n=5, watched={}, exclude=frozenset(),
    ...                   max_per_creator=1)
    >>> cands = [Candidate("a", "p", creator_id="x"), Candidate("b", "p", creator_id="x"),
    ...          Candidate("c", "p"), Candidate("d", "p")]
    >>> [c.item_id for c in cap_per_creator(ctx, cands)]
    ['a', 'c', 'd']
    """
    shown: Counter[str] = Counter()
    kept: list[Candidate] = []
    for cand in cands:
        if not cand.creator_id:
            kept.append(cand)
        elif shown[cand.creator_id] < ctx.max_per_creator:
            shown[cand.creator_id] += 1
            kept.append(cand)
    return kept
