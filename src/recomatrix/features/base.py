"""The OnlineStore seam: live per-user and per-item state, read in one batch call per stage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from recomatrix.features.state import ItemState, UserState
from recomatrix.types import ItemId, UserId


class OnlineStore(Protocol):
    """Where the stream processor writes and the request path reads.

    Reads and writes are batches: one call per request stage, never one per item.
    """

    def claim_events(self, event_ids: Sequence[str]) -> list[bool]:
        """Record event ids as applied; True for each id not seen before (idempotency)."""
        ...

    def get_users(self, user_ids: Sequence[UserId]) -> list[UserState | None]:
        """The state of each user, None for a user the store has never seen."""
        ...

    def put_users(self, states: Sequence[UserState]) -> None:
        """Store user states (replacing earlier ones)."""
        ...

    def get_items(self, item_ids: Sequence[ItemId]) -> list[ItemState | None]:
        """The live counters of each item, None for an item without events."""
        ...

    def put_items(self, states: Sequence[ItemState]) -> None:
        """Store item states (replacing earlier ones)."""
        ...

    def delete_items(self, item_ids: Sequence[ItemId]) -> None:
        """Forget items: their counters and their trending entries."""
        ...

    def set_trending(self, scores: Mapping[ItemId, float]) -> None:
        """Update trending scores; a score <= 0 removes the item from the table."""
        ...

    def top_trending(self, k: int) -> list[tuple[ItemId, float]]:
        """The k items with the highest trending score, best first."""
        ...
