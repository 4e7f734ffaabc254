"""The private redis-servers tests and benchmarks start (`recomatrix.loopback`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from recomatrix.loopback import redis_server, start_redis, stop_redis


def test_a_private_server_answers_on_its_own_port_and_is_gone_after(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        client = redis.Redis.from_url(url)
        assert client.ping() and not url.endswith(":6379/0")
        client.close()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


def test_a_server_that_cannot_start_is_an_error_with_its_reason(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)did not start.*no-such-option"):
        start_redis(tmp_path, "--no-such-option", "yes", timeout_s=5)


def test_extra_arguments_win_over_the_defaults(tmp_path: Path) -> None:
    server, port = start_redis(tmp_path, "--appendonly", "yes")
    try:
        client = redis.Redis(port=port)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
    finally:
        stop_redis(server)
