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
            newest = [self.catalogue.item_id(int(k)) for k in self.fresh.newest(self.sizes.fresh)]
            self._add_ids(merged, "fresh", newest)
        trending = [item_id for item_id, _ in self.store.top_trending(self.sizes.trending)]
        self._add_ids(merged, "trending", trending)
        self._add_ids(merged, "popular", self.popular[: self.sizes.popular])
        return list(merged.values())

    def _add_neighbours(
        self,
        merged: dict[ItemId, Candidate],
        source: str,
        index: TieredIndex | ExactIndex,
        query: np.ndarray,
        k: int,
    ) -> None:
        for key, similarity in index.search(query, k).row(0):
            item_id = self.catalogue.item_id(key)
            if item_id is not None and item_id not in merged:
                merged[item_id] = self._candidate(item_id, source, similarity, key)

    def _add_ids(
        self, merged: dict[ItemId, Candidate], source: str, item_ids: Sequence[ItemId | None]
    ) -> None:
        for item_id in item_ids:
            if item_id is not None and item_id not in merged and item_id in self.catalogue:
                key = self.catalogue.key(item_id)
                merged[item_id] = self._candidate(item_id, source, 0.0, -1 if key is None else key)

    def _candidate(self, item_id: ItemId, source: str, similarity: float, key: int) -> Candidate:
        traits = self.catalogue.traits(key)
        if traits is None:
            return Candidate(item_id, source, similarity, key=key)
        return Candidate(item_id, source, similarity, 0.0, *traits, key)
