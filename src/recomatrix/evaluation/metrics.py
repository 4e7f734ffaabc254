"""Top-K ranking metrics for one held-out item per request: HR, NDCG, MRR and coverage.

Each target event has exactly one relevant item (the one the user then engaged with), so
HR@K is 1 when it is in the top K, NDCG@K is 1 / log2(rank + 1) and reciprocal rank is
1 / rank (both 0 when the item is not in the top K), with ranks counted from 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from recomatrix.types import ItemId


def rank_of(recommended: Sequence[ItemId], item: ItemId, *, k: int) -> int | None:
    """1-based position of `item` in the first `k` recommendations, None when absent.

    >>> rank_of(["a", "b", "c"], "b", k=10), rank_of(["a", "b", "c"], "c", k=2)
    (2, None)
    """
    for position, candidate in enumerate(recommended[:k], start=1):
        if candidate == item:
            return position
    return None


@dataclass(frozen=True, slots=True)
class Summary:
    """The averages over all targets of one system."""

    hit_rate: float
    ndcg: float
    mrr: float
    coverage: float
    targets: int

    def as_dict(self, k: int) -> dict[str, float | int]:
        return {
            f"hr@{k}": round(self.hit_rate, 5),
            f"ndcg@{k}": round(self.ndcg, 5),
            "mrr": round(self.mrr, 5),
            "coverage": round(self.coverage, 5),
            "targets": self.targets,
        }


@dataclass(slots=True)
class RankingScores:
    """Running sums over the targets one system was asked about.

    >>> scores = RankingScores(k=10)
    >>> scores.add(["x", "a"], "a")  # rank 2
    >>> scores.add(["x", "y"], "a")  # a miss
    >>> s = scores.summary(catalogue_size=4)
    >>> s.hit_rate, round(s.ndcg, 4), s.mrr, s.coverage
    (0.5, 0.3155, 0.25, 0.75)
    """

    k: int
    targets: int = 0
    hits: int = 0
    ndcg_sum: float = 0.0
    reciprocal_rank_sum: float = 0.0
    recommended: set[ItemId] = field(default_factory=set)

    def add(self, recommended: Sequence[ItemId], item: ItemId) -> None:
        """Score one request: `recommended` best first, `item` the one the user engaged with."""
        top = recommended[: self.k]
        self.recommended.update(top)
        self.targets += 1
        rank = rank_of(top, item, k=self.k)
        if rank is not None:
            self.hits += 1
            self.ndcg_sum += 1.0 / math.log2(rank + 1)
            self.reciprocal_rank_sum += 1.0 / rank

    def summary(self, *, catalogue_size: int) -> Summary:
        """Averages per target; coverage = distinct items recommended / catalogue size."""
        n = max(self.targets, 1)
        return Summary(
            hit_rate=self.hits / n,
            ndcg=self.ndcg_sum / n,
            mrr=self.reciprocal_rank_sum / n,
            coverage=len(self.recommended) / max(catalogue_size, 1),
            targets=self.targets,
        )
