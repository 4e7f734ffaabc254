"""The ranker's feature vector: one row per candidate, built the same way for training and serving.

Training rows are built by replaying the event log through this very function with the
state as it was at each impression, so training and serving can never disagree.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recomatrix.features.state import ItemState, ItemStats, UserState
from recomatrix.retrieval.index import normalise


class ItemTraits(Protocol):
    """What the features read of a candidate item: an `Item`, a `Candidate` or the
    catalogue's `Traits` all have it."""

    @property
    def genre(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def sponsored(self) -> bool: ...


FEATURE_NAMES: tuple[str, ...] = (
    # user x item: how well the item matches the query, the live session, the long-term taste
    "cos_query",
    "cos_session",
    "cos_long_term",
    "session_strength",
    "has_long_term",
    "genre_share_recent",  # share of the user's recent items in this item's genre
    # item: live engagement from the rolling windows
    "item_log_engaged_5m",
    "item_log_engaged_1h",
    "item_log_engaged_24h",
    "item_log_impressions_24h",
    "item_ctr_1h",
    "item_ctr_24h",
    "item_skip_rate_24h",
    "item_log_watch_24h",
    "item_velocity",
    "item_log_total_engaged",
    "item_log_age_hours",
    "item_sponsored",
    # user: activity in the rolling windows
    "user_log_engaged_5m",
    "user_log_skips_5m",
    "user_log_events_1h",
    "user_log_events_24h",
    "user_log_history",
    # context
    "hour_sin",
    "hour_cos",
)

MIN_SESSION_STRENGTH = 0.01  # below this norm the session vector says nothing


@dataclass(frozen=True, slots=True)
class UserView:
    """What the ranker needs of the user for one request, computed once."""

    query: np.ndarray | None
    session: np.ndarray | None
    long_term: np.ndarray | None
    session_strength: float
    recent_genres: dict[str, float]
    activity: tuple[float, float, float, float, float]

    @staticmethod
    def of(
        user: UserState | None,
        *,
        now: float,
        query: np.ndarray | None,
        session: np.ndarray | None,
        long_term: np.ndarray | None,
        recent_genres: Sequence[str],
    ) -> UserView:
        counts = Counter(g for g in recent_genres if g)
        total = sum(counts.values()) or 1
        activity = (0.0, 0.0, 0.0, 0.0, 0.0)
        if user is not None:
            w5, w1h, w24 = (user.windows.get(n, now=now) for n in ("5m", "1h", "24h"))
            activity = (
                _log(sum(w5.get(t, 0.0) for t in ("click", "like", "complete"))),
                _log(w5.get("skip", 0.0)),
                _log(sum(v for k, v in w1h.items() if k != "watch_seconds")),
                _log(sum(v for k, v in w24.items() if k != "watch_seconds")),
                _log(len(user.history)),
            )
        strength = 0.0 if session is None else float(np.linalg.norm(session))
        if strength < MIN_SESSION_STRENGTH:  # a faded session's direction is noise
            session = None
        return UserView(
            query=None if query is None else normalise(query),
            session=None if session is None else normalise(session),
            long_term=None if long_term is None else normalise(long_term),
            session_strength=math.tanh(strength),
            recent_genres={g: c / total for g, c in counts.items()},
            activity=activity,
        )


def build_features(
    view: UserView,
    items: Sequence[ItemTraits],
    states: Sequence[ItemState | None],
    vectors: np.ndarray,
    *,
    now: float,
) -> np.ndarray:
    """The (len(items), len(FEATURE_NAMES)) float32 matrix for one user and a candidate batch."""
    n = len(items)
    out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    if n == 0:
        return out
    unit = normalise(vectors)
    for column, vector in ((0, view.query), (1, view.session), (2, view.long_term)):
        if vector is not None:
            out[:, column] = unit @ vector
    out[:, 3] = view.session_strength
    out[:, 4] = float(view.long_term is not None)
    hour = (now % 86400.0) / 3600.0
    out[:, 18:23] = view.activity
    out[:, 23] = math.sin(2 * math.pi * hour / 24)
    out[:, 24] = math.cos(2 * math.pi * hour / 24)
    if len(states) != n:
        raise ValueError(f"{n} items but {len(states)} item states")
    shares = view.recent_genres
    out[:, 5] = [shares.get(item.genre, 0.0) for item in items] if shares else 0.0
    out[:, 6:16] = [ItemStats.of(state, now=now) for state in states]  # ItemStats' field order
    out[:, 16] = [(now - item.created_at) / 3600.0 for item in items]
    out[:, 17] = [item.sponsored for item in items]
    # Counts, watch time and age are heavy-tailed: log1p; velocity keeps its sign.
    counts = [6, 7, 8, 9, 13, 15, 16]
    out[:, counts] = np.log1p(np.maximum(out[:, counts], 0.0))
    out[:, 14] = np.sign(out[:, 14]) * np.log1p(np.abs(out[:, 14]))
    return out


def _log(x: float) -> float:
    return math.log1p(max(0.0, x))
