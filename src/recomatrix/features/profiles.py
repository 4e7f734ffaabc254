"""Trained user profiles held as columns: what a batch job knows about every user.

A platform with a million users has live state (windows, session, watched map) for the
few thousand active now, and a trained profile (long-term vector, history) for everyone.
Keeping a million `UserState` objects costs over 1 KB each; this table keeps a profile in
2-4 bytes per dimension (float16 or float32) plus 4 per history item, and makes a
`UserState` only when one is read. `MemoryOnlineStore(profiles=...)` serves it for users
without live state; the first event of such a user stores a live state built from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from recomatrix.features.state import UserState
from recomatrix.types import ItemId, UserId


class UserProfiles:
    """Row u: `user_ids[u]`, `vectors[u]`, history `item_ids[history[indptr[u]:indptr[u+1]]]`."""

    def __init__(
        self,
        *,
        user_ids: Sequence[UserId],
        vectors: npt.NDArray[np.float32] | npt.NDArray[np.float16],
        indptr: npt.NDArray[np.int64],
        history: npt.NDArray[np.int32],
        item_ids: Sequence[ItemId],
    ) -> None:
        if not len(user_ids) == len(vectors) == len(indptr) - 1:
            raise ValueError(
                f"profiles: {len(user_ids)} users, {len(vectors)} vectors and "
                f"{len(indptr) - 1} histories must be the same number"
            )
        if len(history) and (history.min() < 0 or history.max() >= len(item_ids)):
            raise ValueError("profiles: a history entry is not a row of item_ids")
        # Ids as one sorted fixed-width byte array searched by bisection: a dict of a
        # million ids costs ~100 MB, this ~10 bytes per id (a lookup takes microseconds).
        encoded = np.array([u.encode("utf-8") for u in user_ids], dtype=np.bytes_)
        if any(u.endswith("\x00") for u in user_ids):
            raise ValueError("profiles: user ids may not end with a NUL character")
        self._order = np.argsort(encoded, kind="stable")
        self._sorted = encoded[self._order]
        if len(encoded) > 1 and (self._sorted[1:] == self._sorted[:-1]).any():
            raise ValueError("profiles: a user id appears twice")
        self._vectors, self._indptr, self._history = vectors, indptr, history
        self._item_ids = item_ids

    def get(self, user_id: UserId) -> UserState | None:
        """A fresh `UserState` holding the profile (the caller may mutate it), or None."""
        row = self._row(user_id)
        if row is None:
            return None
        items = self._history[self._indptr[row] : self._indptr[row + 1]]
        return UserState(
            user_id,
            long_term=self._vectors[row].astype(np.float32),
            history=[self._item_ids[i] for i in items.tolist()],
        )

    def _row(self, user_id: UserId) -> int | None:
        encoded = user_id.encode("utf-8")
        if len(encoded) > self._sorted.itemsize:
            # Longer than every stored id: not one of them. (Searching for it would make
            # numpy cast the whole sorted array to the wider type: ~10 ms at a million.)
            return None
        key = np.array(encoded, dtype=self._sorted.dtype)
        at = int(np.searchsorted(self._sorted, key))
        if at < len(self._sorted) and self._sorted[at] == key:
            return int(self._order[at])
        return None

    def __len__(self) -> int:
        return len(self._sorted)

    def __contains__(self, user_id: object) -> bool:
        return isinstance(user_id, str) and self._row(user_id) is not None


__all__ = ["UserProfiles"]
