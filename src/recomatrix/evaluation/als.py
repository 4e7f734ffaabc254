"""The ALS baseline: implicit-feedback matrix factorisation (Hu, Koren, Volinsky 2008).

Item factors are learnt once on the train events with the `implicit` library; a user's
factors are solved again at every request from their positive history up to that moment
(`recalculate_user=True`), so the baseline follows users through the replay without
retraining. Items that arrive after the split have no factors and are never recommended.
"""

from __future__ import annotations

from collections.abc import Sequence, Set

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from implicit.als import AlternatingLeastSquares  # type: ignore[import-untyped]
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from recomatrix.evaluation.baselines import popularity_ranking, top_unexcluded
from recomatrix.evaluation.split import POSITIVE_TYPES
from recomatrix.types import Event, Item, ItemId, UserId

# implicit's own defaults, except 64 factors (recomatrix's vector size); never tuned on test.
ALS_FACTORS = 64
ALS_ITERATIONS = 15
ALS_REGULARIZATION = 0.01
ALS_ALPHA = 1.0  # scales a user's positive-event count on an item into its confidence


class ALS:
    """Alternating least squares on user x item positive counts; see the module docstring."""

    name = "als"

    def __init__(
        self,
        *,
        train: Sequence[Event],
        factors: int = ALS_FACTORS,
        iterations: int = ALS_ITERATIONS,
        regularization: float = ALS_REGULARIZATION,
        alpha: float = ALS_ALPHA,
        seed: int = 7,
    ) -> None:
        positives = [e for e in train if e.type in POSITIVE_TYPES]
        self.item_ids = sorted({e.item_id for e in positives})
        self.index = {item: i for i, item in enumerate(self.item_ids)}
        self.popular = popularity_ranking(train)
        self.history: dict[UserId, dict[int, float]] = {}
        for event in positives:
            self.observe(event)
        # implicit asks for single-threaded BLAS (and warns when it is not): its own
        # threads parallelise the per-user solves.
        with threadpool_limits(1, "blas"):
            self.model = AlternatingLeastSquares(
                factors=factors,
                iterations=iterations,
                regularization=regularization,
                alpha=alpha,
                random_state=seed,
            )
            if self.history:
                self.model.fit(self._rows(list(self.history)), show_progress=False)
        self.fitted = bool(self.history)
        # One user per request: starting a thread pool for each solve costs ~100x the solve.
        self.model.num_threads = 1

    def recommend(
        self, user_id: UserId, *, k: int, exclude: Set[ItemId], now: float
    ) -> list[ItemId]:
        mine = self.history.get(user_id)
        if not mine or not self.fitted:
            return top_unexcluded(self.popular, exclude, k)
        blocked = np.array([self.index[i] for i in exclude if i in self.index], dtype=np.int32)
        ids, _ = self.model.recommend(
            0,  # ignored: the user's factors are recomputed from the row below
            self._rows([user_id]),
            N=k,
            filter_already_liked_items=False,
            filter_items=blocked if len(blocked) else None,
            recalculate_user=True,
        )
        found = [self.item_ids[i] for i in np.asarray(ids).tolist() if i >= 0]
        return top_unexcluded([*found, *self.popular], exclude, k)

    def observe(self, event: Event) -> None:
        item = self.index.get(event.item_id)
        if event.type in POSITIVE_TYPES and item is not None:
            mine = self.history.setdefault(event.user_id, {})
            mine[item] = mine.get(item, 0.0) + 1.0

    def publish(self, items: Sequence[Item], *, now: float) -> None:
        return None  # no factors for items unseen in training

    def _rows(self, users: Sequence[UserId]) -> sp.csr_matrix:
        """The users' positive counts as a (len(users), items) sparse matrix."""
        rows = [r for r, u in enumerate(users) for _ in self.history[u]]
        cols = [i for u in users for i in self.history[u]]
        values = [v for u in users for v in self.history[u].values()]
        return sp.csr_matrix(
            (np.array(values, dtype=np.float32), (rows, cols)),
            shape=(len(users), len(self.item_ids)),
        )
