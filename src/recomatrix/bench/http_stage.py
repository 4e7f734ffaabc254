"""Over HTTP on loopback: throughput and latency per concurrency level, and freshness (new
item -> returned by search, event -> effect on the next recommendation) under load.

The server is uvicorn with one worker in a thread of the benchmark process (the embedded
tier is one process: a second worker would need its own copy of the million-item world;
the Redis tier is how recomatrix runs many processes). The load comes from a separate
process (`recomatrix.bench.load`), so client and server do not share an interpreter lock.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from recomatrix.bench.common import percentiles
from recomatrix.engine import Engine
from recomatrix.loopback import free_port


@contextlib.contextmanager
def serving(engine: Engine) -> Iterator[str]:
    """A real uvicorn server on a free loopback port for the duration of the block."""
    import uvicorn

    from recomatrix.server.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(engine), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the benchmark's uvicorn did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _load_command(url: str, users: int, levels: str, requests: int, seconds: float) -> list[str]:
    return [
        sys.executable, "-m", "recomatrix.bench.load", "--url", url, "--users", str(users),
        "--concurrency", levels, "--requests", str(requests), "--max-seconds", str(seconds),
    ]  # fmt: skip


def load_levels(
    url: str, *, users: int, levels: tuple[int, ...], requests: int, max_seconds: float = 60.0
) -> list[dict[str, Any]]:
    """One bounded load per concurrency level, from a client process."""
    command = _load_command(url, users, ",".join(map(str, levels)), requests, max_seconds)
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def p99_crossing(rows: list[dict[str, Any]], limit_ms: float = 50.0) -> dict[str, Any]:
    """The throughput at which p99 first exceeds `limit_ms` (None if it never did here)."""
    for before, row in zip([None, *rows], rows, strict=False):
        if row["p99_ms"] > limit_ms:
            return {
                "limit_ms": limit_ms,
                "crossed_at_rps": row["rps"],
                "last_rps_under": before["rps"] if before else None,
            }
    return {"limit_ms": limit_ms, "crossed_at_rps": None,
            "max_rps_measured": max((r["rps"] for r in rows), default=None)}  # fmt: skip


class _Client:
    """A keep-alive JSON client for the probes (one connection, sequential)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if payload else {}
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None


def _wait_until(check: Any, timeout_s: float = 5.0) -> float:
    """Poll `check()` until true; returns the milliseconds it took (inf on timeout)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if check():
            return (time.perf_counter() - started) * 1000
    return float("inf")


def item_freshness(client: _Client, probes: int) -> list[float]:
    """POST an item whose text repeats an anchor's; time until search finds it near the anchor."""
    anchor = f"anchor-{uuid.uuid4().hex[:8]}"
    text = {"title": "Lunar colony heist", "description": "a crew robs the mars colony vault",
            "genres": ["sci-fi"], "creator_id": "bench"}  # fmt: skip
    client.call("POST", "/v1/items", {"item_id": anchor, **text})
    samples = []
    for p in range(probes):
        item_id = f"fresh-{uuid.uuid4().hex[:8]}-{p}"
        started = time.perf_counter()
        status, _ = client.call("POST", "/v1/items", {"item_id": item_id, **text})
        if status not in (200, 201):
            raise RuntimeError(f"POST /v1/items answered {status}")

        def found(item_id: str = item_id) -> bool:
            _, body = client.call("GET", f"/v1/items/{anchor}/similar?n=10")
            return any(hit["item_id"] == item_id for hit in body["items"])

        _wait_until(found)
        samples.append((time.perf_counter() - started) * 1000)
        client.call("DELETE", f"/v1/items/{item_id}")  # keep the anchor's neighbourhood clean
    return samples


def event_effect(client: _Client, users: list[str], probes: int) -> list[float]:
    """Complete the user's top item by POST /v1/events; time until it leaves the user's
    recommendations (the 48 h watched rule acting on the new event)."""
    samples = []
    for p in range(probes):
        user = users[p % len(users)]
        _, body = client.call("GET", f"/v1/recommendations/{user}?n=20")
        top = body["items"][0]["item_id"]
        event = {"user_id": user, "item_id": top, "type": "complete", "watch_seconds": 60.0}
        started = time.perf_counter()
        client.call("POST", "/v1/events", {"events": [event]})

        def gone(user: str = user, top: str = top) -> bool:
            _, recs = client.call("GET", f"/v1/recommendations/{user}?n=20")
            return all(hit["item_id"] != top for hit in recs["items"])

        _wait_until(gone)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def freshness_under_load(
    url: str, *, users: list[str], n_users: int, probes: int, concurrency: int = 4
) -> dict[str, float]:
    """Item and event freshness probes while a client process keeps `concurrency` requests
    in flight against the same server."""
    background = subprocess.Popen(
        _load_command(url, n_users, str(concurrency), 10_000_000, 600.0),
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)  # let the load reach its steady state
        client = _Client(url)
        item = percentiles(item_freshness(client, probes))
        event = percentiles(event_effect(client, users, probes))
    finally:
        background.terminate()
        background.wait(timeout=10)
    return {
        "item_p50": item["p50"], "item_p99": item["p99"],
        "event_p50": event["p50"], "event_p99": event["p99"],
        "probes": probes, "background_concurrency": concurrency,
    }  # fmt: skip
