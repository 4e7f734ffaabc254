"""User writes of the Redis store: each user's encoded fields, and the stamps that tell a
worker whether a user is still as it last wrote it (`RemembersUserWrites`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Collection, Iterable

from recomatrix.features.codec import encode_user_fields
from recomatrix.features.redis_lua import STAMP_FIELD
from recomatrix.features.state import UserState
from recomatrix.types import UserId

# Users whose last stamp a store remembers, 10 x a worker's default `stream.cached_users`;
# past it all are forgotten, which costs a read each.
STAMPS_KEPT = 200_000


class UserStamps:
    """A store's stamps: "<writer>.<write>", the writer random per store, the write counted;
    and the last one it wrote to each user, remembered before the write is sent (a write
    that fails, or finds someone else's stamp, forgets it again or leaves it unmatched)."""

    def __init__(self, kept: int = STAMPS_KEPT) -> None:
        self._writer, self._writes = uuid.uuid4().hex[:16], itertools.count(1)
        self._last: dict[UserId, bytes] = {}
        self._kept = kept

    def next(self) -> bytes:
        return f"{self._writer}.{next(self._writes)}".encode()

    def last(self, user_id: UserId) -> bytes | None:
        return self._last.get(user_id)

    def remember(self, user_ids: Collection[UserId], stamp: bytes) -> None:
        if len(self._last) + len(user_ids) > self._kept:
            self._last.clear()  # cheap bound: those users are read again, whole
        for user_id in user_ids:
            self._last[user_id] = stamp

    def forget(self, user_ids: Iterable[UserId]) -> None:
        for user_id in user_ids:
            self._last.pop(user_id, None)


class UserWrite:
    """One user's part of a `put_users`: its key and the encoded fields to write, with the
    write's stamp, and the stamp the store last wrote to it (None: none it remembers)."""

    __slots__ = ("expected", "fields", "key", "stamp", "state", "whole")

    def __init__(
        self,
        key: str,
        state: UserState,
        names: Collection[str] | None,
        stamp: bytes,
        expected: bytes | None,
    ) -> None:
        self.key, self.state, self.stamp, self.expected = key, state, stamp, expected
        self.fields = _stamped(encode_user_fields(state, names), stamp)
        self.whole = names is None

    def write_whole(self) -> None:
        self.fields, self.whole = _stamped(encode_user_fields(self.state), self.stamp), True


def _stamped(fields: dict[str, bytes], stamp: bytes) -> dict[str, bytes]:
    """A user's fields to write, with the stamp; none when nothing changed."""
    if fields:
        fields[STAMP_FIELD] = stamp
    return fields
