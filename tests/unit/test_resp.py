"""Commands packed by hiredis in one call read exactly as redis-py packs them."""

from __future__ import annotations

import pytest
import redis
from redis.connection import Connection

from recomatrix.features.resp import PackedConnection


def packed(connection: Connection, *args: object) -> bytes:
    return b"".join(bytes(chunk) for chunk in connection.pack_command(*args))


@pytest.mark.parametrize(
    "args",
    [
        ("SET", "user:1", b"\x00\xffmsgpack", "EX", 3600),
        ("SADD", b"rx:seen:1", *[f"event-{i}" for i in range(2000)]),
        ("EVALSHA", "abc123", 2, "k1", "k2", 1.5, 1733480000.123456, -0.0, 10**20, "é"),
        ("CLUSTER INFO",),
        (b"SCRIPT LOAD", "return 1"),
        ("SET", "k", bytearray(b"ab")),  # hiredis refuses: redis-py's packer takes it
        ("SET", "k", memoryview(b"cd")),
    ],
)
def test_packed_bytes_equal_redis_py_s(args: tuple[object, ...]) -> None:
    assert packed(PackedConnection(), *args) == packed(Connection(), *args)


@pytest.mark.parametrize("bad", [None, True])
def test_a_value_redis_py_refuses_is_still_refused(bad: object) -> None:
    with pytest.raises(redis.exceptions.DataError):
        PackedConnection().pack_command("SET", "k", bad)
