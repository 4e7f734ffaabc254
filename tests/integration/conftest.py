"""Real redis-servers for the tests, on free loopback ports, never the machine's own Redis.

`redis_url`: one server per session, flushed before each test. `redis_cluster_url`: a
Redis Cluster of three masters (no replicas) per session, flushed before each test.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from recomatrix.loopback import binary, start_redis, stop_redis


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = random.randint(20000, 55000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a redis-server that lives as long as the test session."""
    server, port = start_redis(tmp_path_factory.mktemp("redis"))
    yield port
    stop_redis(server)


@pytest.fixture()
def redis_url(redis_server: int) -> str:
    """A URL to an empty database of the session's redis-server."""
    client = redis.Redis(port=redis_server)
    client.flushall()
    client.close()
    return f"redis://127.0.0.1:{redis_server}/0"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """The ports of a three-master Redis Cluster that lives as long as the test session."""
    servers: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for n in range(3):
            directory = tmp_path_factory.mktemp(f"cluster{n}")
            server, port = start_redis(
                directory, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000",
                "--cluster-config-file", str(directory / "nodes.conf"),
                port=_free_cluster_port(),
            )  # fmt: skip
            servers.append(server)
            ports.append(port)
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [binary("redis-cli"), "--cluster", "create", *nodes, "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        for port in ports:
            client = redis.Redis(port=port)
            while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    pytest.fail("the test Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.05)
            client.close()
        yield ports
    finally:
        for server in servers:
            stop_redis(server)


@pytest.fixture()
def redis_cluster_url(redis_cluster: list[int]) -> str:
    """A URL to the session's Redis Cluster, emptied first."""
    for port in redis_cluster:
        client = redis.Redis(port=port)
        client.flushall()
        client.close()
    return f"redis+cluster://127.0.0.1:{redis_cluster[0]}"
