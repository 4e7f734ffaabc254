"""A bounded HTTP load on loopback: N keep-alive connections, a fixed number of requests.

    python -m recomatrix.bench.load --url http://127.0.0.1:8000 --users 1000000 \
        --concurrency 1,4,16,64 --requests 2000 [--max-seconds 60]

Runs in its own process (its own interpreter lock, so the client does not slow the
server's Python) and prints one JSON line per concurrency level: requests, seconds, rps,
p50/p99 latency and non-2xx count. The client is a few lines of asyncio over raw
HTTP/1.1 (GET with keep-alive, Content-Length bodies): a full HTTP client library costs
more CPU per request than the server on this 2-core machine, which would measure itself.
Only 127.0.0.1/localhost URLs are accepted: this is a benchmark, not a load tool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from urllib.parse import urlsplit

import numpy as np


async def _connection(
    host: str, port: int, paths: list[str], deadline: float
) -> tuple[list[float], int]:
    reader, writer = await asyncio.open_connection(host, port)
    latencies, errors = [], 0
    try:
        for path in paths:
            if time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            if not status_line.split(b" ")[1].startswith(b"2"):
                errors += 1
    finally:
        writer.close()
    return latencies, errors


async def run_level(
    url: str, *, concurrency: int, requests: int, users: int, max_seconds: float, seed: int = 0
) -> dict[str, float]:
    """`requests` GET /v1/recommendations over `concurrency` connections, users uniform."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"load: only loopback URLs are allowed, got {url!r}")
    rng = random.Random(seed + concurrency)
    per = [requests // concurrency + (c < requests % concurrency) for c in range(concurrency)]
    started = time.perf_counter()
    deadline = started + max_seconds
    results = await asyncio.gather(
        *(
            _connection(
                parts.hostname,
                parts.port or 80,
                [f"/v1/recommendations/u{rng.randrange(users):08d}?n=20" for _ in range(count)],
                deadline,
            )
            for count in per
        )
    )
    elapsed = time.perf_counter() - started
    latencies = [ms for got, _ in results for ms in got]
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "errors": sum(e for _, e in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--users", type=int, required=True, help="user ids u00000000..users-1")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--requests", type=int, default=2000, help="per concurrency level")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="per level, a bound")
    args = parser.parse_args()
    for level in (int(c) for c in args.concurrency.split(",")):
        row = asyncio.run(
            run_level(
                args.url,
                concurrency=level,
                requests=args.requests,
                users=args.users,
                max_seconds=args.max_seconds,
            )
        )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
