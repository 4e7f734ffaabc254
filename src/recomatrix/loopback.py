"""Free loopback ports, and private redis-server processes on them, for tests and benchmarks.

Never the machine's shared Redis: each server gets its own port and folder, and is stopped
by whoever started it. The servers need the `redis-server` binary (`apt-get install
redis-server`) and the `redis` extra; `free_port` needs neither.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary(name: str) -> str:
    """The path of a Redis program (`redis-server`, `redis-cli`), or an error naming the fix."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: apt-get install redis-server redis-tools")
    return path


def start_redis(
    directory: Path, *extra: str, port: int | None = None, timeout_s: float = 10.0
) -> tuple[subprocess.Popen[bytes], int]:
    """Start redis-server without persistence in `directory` (`extra` arguments come last
    and win, e.g. `--appendonly yes`); returns it and its port once it answers PING."""
    import redis  # the `redis` extra: only servers need it

    port = port or free_port()
    args = [binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory), *extra]  # fmt: skip
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                client.ping()  # LOADING (an append-only file) is a ConnectionError too
                return server, port
            except redis.exceptions.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    stderr = server.stderr.read().decode() if server.stderr else ""
                    raise RuntimeError(
                        f"redis-server on port {port} did not start within {timeout_s} s: "
                        f"{stderr.strip() or 'no output'}"
                    ) from None
                time.sleep(0.02)
    finally:
        client.close()


def stop_redis(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    server.terminate()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextlib.contextmanager
def redis_server(directory: Path, *extra: str) -> Iterator[str]:
    """A private redis-server for the duration of the block; yields its URL."""
    server, port = start_redis(directory, *extra)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_redis(server)
