"""Ordering rules: sponsored items into their slots, and no long runs of one genre.

Both are one greedy assembly: position by position, a slot position takes the best
sponsored item that fits and every other position the best organic item that fits, so
sponsored items are only ever at `ctx.sponsored_positions` whichever rule ran last.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from recomatrix.types import Candidate, RuleContext


@dataclass(slots=True)
class GenreRun:
    """The run of same-genre items at the end of a list being built.

    `limit` is the longest run allowed (None: any). The empty genre never forms a run and
    ends the one before it: an item of unknown genre is not "more of the same".

    >>> run = GenreRun.ending([Candidate("a", "p", genre="x"), Candidate("b", "p", genre="x")],
    ...                       limit=2)
    >>> run.admits("x"), run.admits("y"), run.admits("")
    (False, True, True)
    """

    limit: int | None
    genre: str = ""
    length: int = 0

    @classmethod
    def ending(cls, cands: Iterable[Candidate], *, limit: int | None) -> GenreRun:
        """The run at the end of `cands`."""
        run = cls(limit)
        for cand in cands:
            run.extend(cand.genre)
        return run

    def admits(self, genre: str) -> bool:
        """True when appending an item of `genre` keeps the run within the limit."""
        if self.limit is None or not genre:
            return True
        length = self.length + 1 if genre == self.genre else 1
        return length <= self.limit

    def extend(self, genre: str) -> None:
        """Record that an item of `genre` was appended."""
        if genre and genre == self.genre:
            self.length += 1
        else:
            self.genre, self.length = genre, (1 if genre else 0)


def _never(cand: Candidate) -> bool:
    return False


class FirstFitQueue:
    """Candidates in rank order, handed out first-fit: the best one the run admits.

    One that would make the run too long is deferred, not dropped. Every deferred item has
    the genre of the run that refused it, so they all fit again together once the run
    changes, and the first of them outranks everything not looked at yet: this keeps each
    `take` amortised O(1) instead of a rescan of all that remains.
    """

    def __init__(
        self,
        cands: Iterable[Candidate],
        *,
        discard: Callable[[Candidate], bool] = _never,
    ) -> None:
        # `discard` is checked when an item comes up, for conditions that only ever get
        # stricter while the list grows (a creator reaching its cap).
        self._pending = deque(cands)
        self._deferred: deque[Candidate] = deque()
        self._discard = discard

    def take(self, run: GenreRun) -> Candidate | None:
        """Remove and return the best candidate `run` admits; None when none does."""
        deferred, pending = self._deferred, self._pending
        while deferred and self._discard(deferred[0]):
            deferred.popleft()
        if deferred and run.admits(deferred[0].genre):
            return deferred.popleft()
        while pending:
            cand = pending.popleft()
            if self._discard(cand):
                continue
            if run.admits(cand.genre):
                return cand
            deferred.append(cand)
        return None


def _assemble(
    organic: Iterable[Candidate],
    sponsored: Iterable[Candidate],
    *,
    slots: Iterable[int],
    limit: int | None,
    stop_at: int,
) -> list[Candidate]:
    slot_positions = frozenset(slots)
    organic_queue, sponsored_queue = FirstFitQueue(organic), FirstFitQueue(sponsored)
    run = GenreRun(limit)
    placed: list[Candidate] = []
    while len(placed) < stop_at:
        pick = sponsored_queue.take(run) if len(placed) in slot_positions else None
        if pick is None:
            pick = organic_queue.take(run)
        if pick is None:
            # Nothing left fits here, so no later position can be reached either.
            return placed
        run.extend(pick.genre)
        placed.append(pick)
    return placed


def place_sponsored(ctx: RuleContext, cands: list[Candidate]) -> list[Candidate]:
    """Put sponsored items at `ctx.sponsored_positions`, the best-scored at the first slot.

    Organic items keep their order and fill every other position. A slot is filled when
    the list reaches it (enough items come before it; a sponsored item may end the list),
    otherwise it is ignored. Sponsored items beyond the slots are dropped: they are shown
    in a slot or not at all, never as organic results.

    >>> ctx = RuleContext(user_id="u", now=0.0, n=9, watched={}, exclude=frozenset(),
    ...                   sponsored_positions=(1, 3))
    >>> cands = [Candidate(i, "p", score=s, sponsored=i.startswith("s"))
    ...          for i, s in [("a", 9), ("s1", 8), ("s2", 7), ("b", 6), ("s3", 5), ("c", 4)]]
    >>> [c.item_id for c in place_sponsored(ctx, cands)]
    ['a', 's1', 'b', 's2', 'c']
    """
    sponsored = sorted((c for c in cands if c.sponsored), key=lambda c: c.score, reverse=True)
    placed = [c for c in cands if not c.sponsored]
    # Without a genre limit every slot simply takes the next sponsored item once the list
    # reaches it: list inserts, slot by slot (the same answer as the greedy assembly).
    for slot, cand in zip(sorted(set(ctx.sponsored_positions)), sponsored, strict=False):
        if slot > len(placed):
            break
        placed.insert(slot, cand)
    return placed


def limit_adjacent_genre(ctx: RuleContext, cands: list[Candidate]) -> list[Candidate]:
    """Re-order so no more than `ctx.max_adjacent_same_genre` items of a genre are adjacent.

    Greedy, keeping the list's order as far as possible: each position takes the
    best-ranked remaining item that does not make a run too long; the ones passed over
    come back as soon as they fit. When everything left is of the genre of a full run,
    those items are dropped and the list is shorter (backfill tops it up with other
    genres). The empty genre never forms a run.

    Sponsored items stay in slots (`ctx.sponsored_positions`): a slot takes the first
    sponsored item that fits there, so running this after `place_sponsored` repairs runs
    without breaking the placement. It returns at most `ctx.n` items (the greedy choice of
    a position never depends on later ones): run it last, before the backfill.

    >>> ctx = RuleContext(user_id="u", now=0.0, n=9, watched={}, exclude=frozenset(),
    ...                   sponsored_positions=())
    >>> cands = [Candidate(str(i), "p", genre=g)
    ...          for i, g in enumerate(["thriller", "thriller", "thriller", "drama"])]
    >>> [c.genre for c in limit_adjacent_genre(ctx, cands)]
    ['thriller', 'thriller', 'drama', 'thriller']
    """
    return _assemble(
        (c for c in cands if not c.sponsored),
        (c for c in cands if c.sponsored),
        slots=ctx.sponsored_positions,
        limit=ctx.max_adjacent_same_genre,
        stop_at=max(ctx.n, 0),
    )
