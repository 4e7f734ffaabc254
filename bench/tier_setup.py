"""Local processes and synthetic events for the server-tier benchmarks (`tier.py`,
`feast_compare/compare.py`): a dedicated redis-server (`recomatrix.loopback`), subprocesses
stopped on exit, readiness and CPU scheduling of a process.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from recomatrix.types import EVENT_TYPES, Event

Json = dict[str, Any]


@contextlib.contextmanager
def running(
    args: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess for the duration of the block, stopped with SIGINT (then SIGKILL)."""
    process = subprocess.Popen(
        list(args), env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(base_url: str, *, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if get_json(base_url, "/readyz")[0] == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{base_url} was not ready within {timeout_s:.0f} s")


def get_json(base_url: str, path: str) -> tuple[int, Json]:
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def make_events(prefix: str, n: int, users: Sequence[str], items: Sequence[str]) -> list[Event]:
    rng, now = random.Random(prefix), time.time()
    picks = zip(rng.choices(users, k=n), rng.choices(items, k=n), rng.choices(EVENT_TYPES, k=n),
                strict=True)  # fmt: skip
    return [Event(f"{prefix}-{k}", user, item, kind, now)
            for k, (user, item, kind) in enumerate(picks)]  # fmt: skip


def scheduled_s(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of all a process's threads,
    from Linux schedstats: the wait shows a process starved by the machine, not by Redis."""
    totals = [0, 0]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            running_ns, waiting_ns, _ = (task / "schedstat").read_text().split()
            totals[0] += int(running_ns)
            totals[1] += int(waiting_ns)
    return totals[0] / 1e9, totals[1] / 1e9


def command_usec(client: Any) -> dict[str, int]:
    """Redis's own time per command since its last stats reset (`INFO commandstats`), in
    microseconds; a script's time includes the commands it calls, also listed on their own."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["usec"]) for name, row in stats.items()}
