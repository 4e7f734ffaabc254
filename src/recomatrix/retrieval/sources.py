"""Candidate sources (personal ANN, fresh, trending, popular) and their de-duplicating merge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recomatrix.features.base import OnlineStore
from recomatrix.retrieval.catalog import Catalogue
from recomatrix.retrieval.index import ExactIndex
from recomatrix.retrieval.tiered import TieredIndex
from recomatrix.types import Candidate, ItemId


@dataclass(frozen=True, slots=True)
class SourceSizes:
    """How many candidates each source contributes before the merge."""

    personal: int = 200
    fresh: int = 30
    trending: int = 40
    popular: int = 60


class CandidateSources:
    """Asks every source once and merges their answers, first source wins on duplicates."""

    def __init__(
        self,
        *,
        catalogue: Catalogue,
        index: TieredIndex,
        fresh: ExactIndex,
        store: OnlineStore,
        popular: Sequence[ItemId],
        sizes: SourceSizes = SourceSizes(),
    ) -> None:
        self.catalogue = catalogue
        self.index = index
        self.fresh = fresh
        self.store = store
        self.popular = list(popular)
        self.sizes = sizes

    def retrieve(self, query: np.ndarray | None) -> list[Candidate]:
        """Candidates for one request; `query` is None for a user we know nothing about."""
        merged: dict[ItemId, Candidate] = {}
        if query is not None:
            self._add_neighbours(merged, "personal", self.index, query, self.sizes.personal)
            self._add_neighbours(merged, "fresh", self.fresh, query, self.sizes.fresh)
        else:
            newest = self.fresh.newest(self.sizes.fresh).tolist()
            self._add(merged, self.catalogue.candidates(newest, [0.0] * len(newest), "fresh"))
        trending = [item_id for item_id, _ in self.store.top_trending(self.sizes.trending)]
        self._add(merged, self.catalogue.candidates_of(trending, "trending"))
        self._add(merged, self.catalogue.candidates_of(self.popular[: self.sizes.popular],
                                                       "popular"))  # fmt: skip
        return list(merged.values())

    def _add_neighbours(
        self,
        merged: dict[ItemId, Candidate],
        source: str,
        index: TieredIndex | ExactIndex,
        query: np.ndarray,
        k: int,
    ) -> None:
        keys, similarities = index.search(query, k).columns(0)
        self._add(merged, self.catalogue.candidates(keys, similarities, source))

    @staticmethod
    def _add(merged: dict[ItemId, Candidate], candidates: list[Candidate]) -> None:
        """Merge in `candidates`; an item already there keeps its first source."""
        for candidate in candidates:
            merged.setdefault(candidate.item_id, candidate)
