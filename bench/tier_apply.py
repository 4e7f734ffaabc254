"""What applying an event costs in CPU, worker and Redis apart: one `StreamProcessor` in this
process over a redis-server of its own, with the offline log, on the `tier.py` world shape.

    .venv/bin/python bench/tier_apply.py [--events 60000 --batch 10000 --profile]
                                         [--label NAME --out bench/results/tier-apply.json]

Publishes `--events` events first, then times `run_once` until the bus is drained. Reports
CPU seconds per event of this process (all threads, so the offline log's flusher too) and of
redis-server (`INFO cpu`): unlike events/s, these hold on a machine other jobs share.
`--profile` prints where the worker's time goes (cProfile, cumulative). Not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.*`, not installed

from bench.tier_setup import command_usec, make_events

from recomatrix.bench.common import machine
from recomatrix.events.redis import RedisStreamsBus
from recomatrix.features.offline import ParquetLog
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.loopback import redis_server
from recomatrix.stream.processor import StreamProcessor


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_us_per_event(client: redis.Redis, events: int) -> dict[str, float]:
    """Redis's own time per command (`command_usec`) per applied event, largest first."""
    spent = {name: usec / events for name, usec in command_usec(client).items()}
    return {name: round(us, 2) for name, us in sorted(spent.items(), key=lambda kv: -kv[1])
            if us >= 0.05}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=10_000, help="most events per batch")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--label", default="", help="names the run in --out")
    parser.add_argument("--out", type=Path, help="a JSON list this run is appended to")
    args = parser.parse_args()
    started_utc = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    users = [f"user-{k}" for k in range(args.users)]
    items = [str(k) for k in range(args.items)]
    rng = np.random.default_rng(0)
    vectors = {i: rng.standard_normal(64).astype(np.float32) for i in items}
    folder = tempfile.TemporaryDirectory(prefix="rx-tier-apply-")
    with folder as tmp, redis_server(Path(tmp)) as url:
        bus = RedisStreamsBus.from_url(url)
        store = RedisOnlineStore.from_url(url, fence=bus.fence("stream", "w1"))  # as a worker's
        log = ParquetLog(root=Path(tmp) / "offline")
        processor = StreamProcessor(bus=bus, store=store, item_vector=vectors.get,
                                    offline_sink=log.append_events, consumer="w1")  # fmt: skip
        client = redis.Redis.from_url(url)
        for prefix in ("warm-up", "timed"):  # the warm-up gives users and items some history
            events = make_events(prefix, args.events, users, items)
            for k in range(0, len(events), 1000):
                bus.publish(events[k : k + 1000])
            profile = cProfile.Profile() if args.profile and prefix == "timed" else None
            client.config_resetstat()  # commandstats below: the timed apply's commands only
            redis_before, cpu_before = redis_cpu_s(client), time.process_time()
            started, applied = time.perf_counter(), 0
            if profile is not None:
                profile.enable()
            while n := processor.run_once(max_events=args.batch, block_s=0.01):
                applied += n
            if profile is not None:
                profile.disable()
        seconds = time.perf_counter() - started
        worker_s, redis_s = time.process_time() - cpu_before, redis_cpu_s(client) - redis_before
        commands = redis_us_per_event(client, applied)
        log.close()
    result = {"started_utc": started_utc, "machine": machine(), "events": applied,
              "batch": args.batch, "seconds": round(seconds, 2),
              "events_per_s": round(applied / seconds),
              "worker_cpu_us_per_event": round(worker_s / applied * 1e6, 1),
              "redis_cpu_us_per_event": round(redis_s / applied * 1e6, 1),
              "redis_command_us_per_event": commands}  # fmt: skip
    print(json.dumps(result))
    if args.out is not None:
        runs = json.loads(args.out.read_text()) if args.out.exists() else []
        args.out.write_text(json.dumps([*runs, {"label": args.label, **result}], indent=2) + "\n")
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
