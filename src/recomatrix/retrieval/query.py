"""The retrieval query: the user's long-term taste blended with the live session."""

from __future__ import annotations

import numpy as np

from recomatrix.retrieval.index import normalise


def query_vector(
    long_term: np.ndarray | None, session: np.ndarray | None, *, session_weight: float
) -> np.ndarray | None:
    """Unit query vector, or None when there is nothing to personalise on.

    The session's pull grows with its strength (its norm, capped at 1), so one old,
    decayed click barely moves the query while a burst of fresh clicks dominates it.

    >>> q = query_vector(np.array([1.0, 0.0]), np.array([0.0, 2.0]), session_weight=1.0)
    >>> [round(float(x), 3) for x in q]
    [0.707, 0.707]
    """
    parts: list[np.ndarray] = []
    if long_term is not None and float(np.linalg.norm(long_term)) > 1e-6:
        parts.append(normalise(long_term))
    if session is not None:
        strength = min(1.0, float(np.linalg.norm(session)))
        if strength > 1e-6:
            parts.append(session_weight * strength * normalise(session))
    if not parts:
        return None
    query = np.sum(parts, axis=0)
    return None if float(np.linalg.norm(query)) < 1e-6 else normalise(query)
