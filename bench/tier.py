"""Server tier on Redis, on loopback (issue #5): ingestion, event -> feature visibility,
recommendation latency against the embedded tier, online feature fetch.

    .venv/bin/python bench/tier.py [--items 2000 --users 1000 --events 20000] [--workers-only]
        [--max-workers 2]

Starts its own redis-server (no persistence) on a free port, `recomatrix serve --backend
redis --workers 2`, `recomatrix worker` processes (`tier_workers.py`: apply capacity and
visibility under load) and, for comparison, `recomatrix serve` (embedded) on the same world,
all under a temporary home. Writes bench/results/tier-<date>.json. Not a test: run it on a
quiet machine.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.*`, not installed

from bench.feast_compare.timing import ours, time_calls
from bench.tier_setup import make_events, running, wait_ready
from bench.tier_workers import GROUP, World, run_workers

from recomatrix.bench.common import machine, percentiles, versions
from recomatrix.events.redis import RedisStreamsBus
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.loopback import free_port, redis_server

HERE = Path(__file__).parent
RECOMATRIX = str(Path(sys.executable).with_name("recomatrix"))
Json = dict[str, Any]


# (a) ingestion -------------------------------------------------------------------------


def _publish(
    url: str, namespace: str, prefix: str, n: int, batch: int, world: World, start: Any, out: Any
) -> None:
    """A publisher process: build its events, wait at the `start` barrier, publish them in
    batches (`publish` encodes them: that is part of the cost measured)."""
    bus = RedisStreamsBus.from_url(f"{url}?namespace={namespace}")
    events = make_events(prefix, n, *world)
    start.wait()
    started = time.monotonic()
    for k in range(0, n, batch):
        bus.publish(events[k : k + batch])
    out.put((started, time.monotonic()))
    bus.close()


def bus_ingestion(url: str, world: World, *, publishers: int, n: int, batch: int) -> Json:
    """Events/s into the bus from `publishers` processes, `n` events each, with a group."""
    namespace = f"ingest{publishers}"
    bus = RedisStreamsBus.from_url(f"{url}?namespace={namespace}")
    bus.lag(GROUP)  # creates the group: publishes then do the backlog check they do live
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(publishers + 1), ctx.Queue()
    procs = [
        ctx.Process(
            target=_publish,
            args=(url, namespace, f"{namespace}-{p}", n, batch, world, start, out),
        )
        for p in range(publishers)
    ]
    for proc in procs:
        proc.start()
    start.wait()
    spans = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    stored = sum(int(n) for s in bus.streams
                 for _, fields in bus.client.xrange(s) for n in [fields[b"n"]])  # fmt: skip
    bus.client.delete(*bus.streams)
    bus.close()
    return {"publishers": publishers, "events": publishers * n, "batch": batch,
            "stored": stored, "seconds": round(seconds, 3),
            "events_per_s": round(publishers * n / seconds)}  # fmt: skip


def post_bodies(prefix: str, world: World, *, batches: int, batch: int) -> list[bytes]:
    """`batches` POST /v1/events bodies of `batch` events each, serialised."""
    events = make_events(prefix, batches * batch, *world)
    return [
        orjson.dumps({"events": [
            {"event_id": e.event_id, "user_id": e.user_id, "item_id": e.item_id,
             "type": e.type, "ts": e.ts} for e in events[k : k + batch]]})
        for k in range(0, len(events), batch)
    ]  # fmt: skip


def http_ingestion(
    base_url: str, world: World, *, connections: int, batches: int, batch: int
) -> Json:
    """Events/s through POST /v1/events (`batch` events a request) over keep-alive
    connections; bodies are serialised before the clock starts."""
    host, port = base_url.removeprefix("http://").split(":")
    bodies = [post_bodies(f"http-{c}", world, batches=batches, batch=batch)
              for c in range(connections)]  # fmt: skip
    latencies: list[float] = []
    failures: list[str] = []

    def send(mine: list[bytes]) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        for body in mine:
            started = time.perf_counter()
            conn.request("POST", "/v1/events", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status != 202:
                failures.append(f"{response.status}")
        conn.close()

    threads = [threading.Thread(target=send, args=(mine,)) for mine in bodies]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    events = connections * batches * batch
    return {"connections": connections, "batch": batch, "events": events,
            "seconds": round(seconds, 3), "events_per_s": round(events / seconds),
            "non_202": len(failures), "request_ms": percentiles(latencies)}  # fmt: skip


# (c) recommendations, (d) feature fetch ----------------------------------------------------


def recommendation_latency(base_url: str, users: Sequence[str], *, requests: int) -> Json:
    """Sequential GET /v1/recommendations on one keep-alive connection, after a warm-up."""
    host, port = base_url.removeprefix("http://").split(":")
    conn, rng = http.client.HTTPConnection(host, int(port), timeout=30), random.Random(3)
    client_ms, server_ms, errors = [], [], 0
    for k in range(requests + 200):
        started = time.perf_counter()
        conn.request("GET", f"/v1/recommendations/{rng.choice(users)}?n=20")
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if k < 200:
            continue
        errors += response.status != 200
        client_ms.append(elapsed)
        server_ms.append(float(orjson.loads(body)["timings_ms"]["total"]))
    conn.close()
    return {"requests": requests, "non_200": errors, "client_ms": percentiles(client_ms),
            "server_total_ms": percentiles(server_ms)}  # fmt: skip


def feature_fetch(url: str, world: World, *, calls: int) -> Json:
    """RedisOnlineStore.get_users (1 user) + get_items (300 items), with the store's
    decoded-item cache (items unchanged since the last read) and without it."""
    result = {}
    for label, options in (("cached", ""), ("uncached", "?decoded_items=0")):
        store = RedisOnlineStore.from_url(url + options)
        result[label] = time_calls(ours(store), *world, calls=calls, per_call=300)
        store.close()
    return result


def redis_items(url: str) -> list[str]:
    """Items the deployment seeded counters for (rx:i:{item}), from a SCAN."""
    client = redis.Redis.from_url(url)
    keys = [k.decode() for k in client.scan_iter(match="rx:i:{*}", count=1000)]
    client.close()
    return [k[len("rx:i:{") : -1] for k in keys if k.endswith("}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20_000, help="bootstrap log size")
    parser.add_argument("--encoder", default="hashing")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers-only", action="store_true",
                        help="only the stream workers: apply capacity and visibility")  # fmt: skip
    parser.add_argument("--max-workers", type=int, default=2,
                        help="measure the workers with 1, 2, ... this many processes")  # fmt: skip
    parser.add_argument("--out", type=Path, help="default: bench/results/tier-<date>.json")
    args = parser.parse_args()
    world_args = ["--items", str(args.items), "--users", str(args.users), "--encoder",
                  args.encoder]  # fmt: skip
    env = {**os.environ, "RECOMATRIX_DATA__N_EVENTS": str(args.events)}
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result: Json = {"started_utc": started, "machine": machine(),
                    "versions": versions("redis", "orjson", "numpy"),
                    "redis_server": subprocess.run(["redis-server", "--version"], text=True,
                                                   capture_output=True).stdout.strip(),
                    "world": {"items": args.items, "users": args.users, "events": args.events,
                              "encoder": args.encoder}}  # fmt: skip
    users = [f"user-{k}" for k in range(args.users)]
    with tempfile.TemporaryDirectory(prefix="rx-tier-bench-") as tmp:
        folder = Path(tmp)
        with redis_server(folder) as url:
            home, port = folder / "home", free_port()
            base_url = f"http://127.0.0.1:{port}"
            serve = [RECOMATRIX, "serve", "--backend", "redis", "--redis-url", url, "--workers",
                     "2", "--port", str(port), "--home", str(home), *world_args]  # fmt: skip
            with running(serve, folder / "serve.log", env):
                wait_ready(base_url)
                items = sorted(str(i) for i in redis_items(url))
                world = (users, items)
                print(f"tier up: {len(items)} items with counters", flush=True)
                if not args.workers_only:
                    ingestion_and_reads(url, base_url, world, result, requests=args.requests)
                result["visibility"] = run_workers(url, home, folder, env, world, args.probes,
                                                   max_workers=args.max_workers)  # fmt: skip
            if not args.workers_only:
                result["recommendations_embedded"] = embedded_latency(
                    folder, env, world_args, users, requests=args.requests
                )
    out = args.out or HERE / "results" / f"tier-{datetime.date.today().isoformat()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


def ingestion_and_reads(
    url: str, base_url: str, world: World, result: Json, *, requests: int
) -> None:
    """Bus and HTTP ingestion, recommendation latency and feature fetch on the Redis tier."""
    result["bus_ingestion"] = [
        bus_ingestion(url, world, publishers=p, n=100_000, batch=1000) for p in (1, 2)
    ]
    print(json.dumps(result["bus_ingestion"]), flush=True)
    result["http_ingestion"] = http_ingestion(base_url, world, connections=4, batches=50, batch=500)
    print(json.dumps(result["http_ingestion"]), flush=True)
    result["recommendations_redis_tier"] = recommendation_latency(
        base_url, world[0], requests=requests
    )
    result["feature_fetch"] = feature_fetch(url, world, calls=2000)
    print(json.dumps(result["feature_fetch"]), flush=True)


def embedded_latency(
    folder: Path,
    env: dict[str, str],
    world_args: list[str],
    users: Sequence[str],
    *,
    requests: int,
) -> Json:
    """GET /v1/recommendations from `recomatrix serve` (embedded) on the same world."""
    memory_port = free_port()
    memory_url = f"http://127.0.0.1:{memory_port}"
    embedded = [RECOMATRIX, "serve", "--port", str(memory_port), "--home",
                str(folder / "embedded-home"), *world_args]  # fmt: skip
    with running(embedded, folder / "embedded.log", env):
        wait_ready(memory_url)
        return recommendation_latency(memory_url, users, requests=requests)


if __name__ == "__main__":
    if shutil.which("redis-server") is None:
        raise SystemExit("bench/tier.py needs redis-server: apt-get install redis-server")
    main()
