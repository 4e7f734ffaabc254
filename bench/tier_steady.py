"""Where the CPU goes under a steady load (issue #5): `recomatrix worker` processes at fixed
offered loads, with each process's CPU per event and Redis's time per command.

    .venv/bin/python bench/tier_steady.py --rates 15000,30000 --workers 2 [--probes 60]
    .venv/bin/python bench/tier_steady.py --bursts 3 --burst-events 150000 --workers 2

Bootstraps the `tier.py` world (its own redis-server, `recomatrix serve` stopped once the
world is seeded), starts the workers, then per rate runs `tier_workers.visibility` (user and
item visibility, the share of a core each process ran and waited) and reads Redis's
`INFO commandstats` before and after. Commands a script calls are counted both on their own
line and inside EVALSHA. `tier.py` bisects the highest load; this shows why it stops there.
With `--bursts`, first the workers' drain rate (`tier_workers.apply_capacity`: that many
events published at once, events/s until the bus is empty) that many times: a steadier
comparison of two versions than a p99 of probes on this shared machine. With `--series
FILE`, a time series sampled every 0.1 s during the rates and written per 5 s (`Sampler`,
`summarise`): the workers' lag, each process's CPU, Redis's memory and its calls and
microseconds per call of each command, to see when and why a run falls behind, not only
that it did.
Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.*`, not installed

from bench.tier import redis_items
from bench.tier_setup import command_usec, running, scheduled_s, wait_ready
from bench.tier_workers import (
    GROUP,
    RECOMATRIX,
    apply_capacity,
    visibility,
    wait_drained,
    wait_sharing,
)

from recomatrix.events.redis import RedisStreamsBus
from recomatrix.loopback import free_port, redis_server

Json = dict[str, Any]


def steady(url: str, world: tuple[list[str], list[str]], pids: list[int], rate: float,
           probes: int, label: str) -> Json:  # fmt: skip
    client = redis.Redis.from_url(url)
    before = command_usec(client)
    run = visibility(url, world, rate=rate, probes=probes, label=label, workers=pids)
    after = command_usec(client)
    client.close()
    events_per_s = run["load_events_per_s"]
    run["cpu_us_per_event"] = {name: round(share["on_cpu"] / events_per_s * 1e6, 1)
                               for name, share in run["cores"].items()}  # fmt: skip
    run["cpu_us_per_event"]["all"] = round(
        sum(us for name, us in run["cpu_us_per_event"].items() if name != "probe"), 1
    )
    spent = {name: usec - before.get(name, 0) for name, usec in after.items()}
    run["redis_command_share"] = {
        name: round(usec / sum(spent.values()), 3)
        for name, usec in sorted(spent.items(), key=lambda row: -row[1])[:10]
    }
    return run


class Sampler:
    """A thread reading, every `every_s`: the workers' lag (`RedisStreamsBus.lag`), the CPU
    seconds each process ran and waited so far, Redis's used memory, and its cumulative
    calls and microseconds per command (`INFO commandstats`, scripts' inner calls too)."""

    def __init__(self, url: str, pids: dict[str, int], every_s: float = 0.1) -> None:
        self.url, self.pids, self.every_s = url, pids, every_s
        self.rows: list[Json] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        bus = RedisStreamsBus.from_url(self.url)
        while not self._stop.wait(self.every_s):
            stats = bus.client.info("commandstats")
            self.rows.append({
                "t": round(time.time(), 3), "lag": bus.lag(GROUP),
                "cpu": {name: scheduled_s(pid) for name, pid in self.pids.items()},
                "redis_mb": int(bus.client.info("memory")["used_memory"]) >> 20,
                "commands": {name.removeprefix("cmdstat_"): (row["calls"], row["usec"])
                             for name, row in stats.items()},
            })  # fmt: skip
        bus.close()


SERIES_COMMANDS = ("evalsha", "smismember", "sadd", "hset", "get", "setrange", "xreadgroup")


def summarise(rows: list[Json], *, every_s: float = 5.0) -> list[Json]:
    """The sampler's rows per `every_s`: the lag's mean and peak, each process's share of a
    core on and waiting for a CPU, Redis's memory at the end, and per command its calls per
    second and microseconds per call (`SERIES_COMMANDS`)."""
    out: list[Json] = []
    if not rows:
        return out
    start = rows[0]["t"]
    spans: dict[int, list[Json]] = {}
    for row in rows:
        spans.setdefault(int((row["t"] - start) // every_s), []).append(row)
    for k, span in sorted(spans.items()):
        first, last = span[0], span[-1]
        seconds = last["t"] - first["t"]
        if seconds <= 0:
            continue
        cores = {name: [round((last["cpu"][name][i] - first["cpu"][name][i]) / seconds, 2)
                        for i in (0, 1)] for name in last["cpu"]}  # fmt: skip
        commands = {}
        for name in SERIES_COMMANDS:
            calls0, usec0 = first["commands"].get(name, (0, 0))
            calls1, usec1 = last["commands"].get(name, (0, 0))
            if calls1 > calls0:
                commands[name] = [round((calls1 - calls0) / seconds),
                                  round((usec1 - usec0) / (calls1 - calls0), 1)]  # fmt: skip
        lags = [row["lag"] for row in span]
        out.append({"s": round(k * every_s), "lag_mean": round(sum(lags) / len(lags)),
                    "lag_max": max(lags), "cores_on_waiting": cores,
                    "redis_mb": last["redis_mb"], "calls_per_s_us_per_call": commands})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="", help="offered events/s, comma-separated")
    parser.add_argument("--bursts", type=int, default=0, help="drain-rate bursts first")
    parser.add_argument("--burst-events", type=int, default=150_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--probes", type=int, default=60)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="a JSON file for the runs")
    parser.add_argument("--series", type=Path, help="a JSON file for the time series")
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",") if rate]
    if not rates and not args.bursts:
        parser.error("give --rates, --bursts or both")
    env = {**os.environ, "RECOMATRIX_DATA__N_EVENTS": "20000"}
    users = [f"user-{k}" for k in range(args.users)]
    runs, bursts = [], []
    with tempfile.TemporaryDirectory(prefix="rx-steady-") as tmp:
        folder = Path(tmp)
        with redis_server(folder) as url:
            home, port = folder / "home", free_port()
            serve = [RECOMATRIX, "serve", "--backend", "redis", "--redis-url", url, "--workers",
                     "1", "--port", str(port), "--home", str(home), "--items", str(args.items),
                     "--users", str(args.users), "--encoder", "hashing"]  # fmt: skip
            with running(serve, folder / "serve.log", env):
                wait_ready(f"http://127.0.0.1:{port}")
                items = sorted(str(i) for i in redis_items(url))
            names = [f"steady-w{n}" for n in range(1, args.workers + 1)]
            with contextlib.ExitStack() as workers:
                pids = [workers.enter_context(running(
                    [RECOMATRIX, "worker", "--redis-url", url, "--home", str(home), "--name", name],
                    folder / f"{name}.log", env)).pid for name in names]  # fmt: skip
                bus = RedisStreamsBus.from_url(url)
                wait_drained(bus)
                wait_sharing(bus, names)
                for _ in range(args.bursts):
                    burst = apply_capacity(url, (users, items), workers=pids, n=args.burst_events)
                    print(json.dumps(burst), flush=True)
                    bursts.append(burst)
                watched = dict(zip(names, pids, strict=True))
                watched["redis"] = int(bus.client.info("server")["process_id"])
                with Sampler(url, watched) if args.series else contextlib.nullcontext() as sampler:
                    for k, rate in enumerate(rates):  # a label per run: new probe users, items
                        label = f"steady{k}-{rate:g}"
                        run = steady(url, (users, items), pids, rate, args.probes, label)
                        print(json.dumps(run), flush=True)
                        runs.append(run)
                        wait_drained(bus)
                bus.close()
    if args.series and sampler is not None:
        args.series.write_text(json.dumps(summarise(sampler.rows), indent=1) + "\n")
    if args.out:
        result = {"workers": args.workers, "bursts": bursts, "runs": runs}
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
