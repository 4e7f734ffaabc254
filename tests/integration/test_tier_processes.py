"""The server tier as it runs: `recomatrix serve --backend redis --workers 2` and one
`recomatrix worker`, real subprocesses on a real redis-server, driven over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from recomatrix.events.redis import RedisStreamsBus
from recomatrix.loopback import free_port
from recomatrix.tier.snapshot import latest_snapshot

RECOMATRIX = str(Path(sys.executable).with_name("recomatrix"))
FRESH_S = 1.0  # the contract: an item posted to one API process is served by all within 1 s


@dataclass
class Tier:
    base_url: str
    redis_url: str
    home: Path
    serve: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]

    def logs(self) -> str:
        """The tail of what serve and the worker wrote to stderr (files: a pipe could fill)."""
        return "\n".join(f"{name}: {(self.home / f'{name}.log').read_text()[-3000:]}"
                         for name in ("serve", "worker"))  # fmt: skip


def _stop(process: subprocess.Popen[bytes], sig: int) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@pytest.fixture(scope="module")
def tier(redis_server: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    """A tiny world deployed to Redis, served by two API processes, with one stream worker."""
    client = redis.Redis(port=redis_server)
    client.flushall()  # this module's tests share the state they build up
    client.close()
    redis_url = f"redis://127.0.0.1:{redis_server}/0"
    home, port = tmp_path_factory.mktemp("tier-home"), free_port()
    tiny = {"DATA__N_EVENTS": "3000", "TRAINING__TWO_TOWER_EPOCHS": "1",
            "TRAINING__RANKER_EPOCHS": "1"}  # fmt: skip
    env = {**os.environ, **{f"RECOMATRIX_{name}": value for name, value in tiny.items()}}
    serve = subprocess.Popen(
        [RECOMATRIX, "serve", "--backend", "redis", "--redis-url", redis_url, "--workers", "2",
         "--port", str(port), "--items", "300", "--users", "60", "--encoder", "hashing",
         "--home", str(home)],
        env=env, stdout=subprocess.DEVNULL, stderr=(home / "serve.log").open("wb"),
    )  # fmt: skip
    # Started at once: it waits for serve to deploy the snapshot it needs.
    worker = subprocess.Popen(
        [RECOMATRIX, "worker", "--redis-url", redis_url, "--home", str(home), "--name", "w1"],
        env=env, stdout=subprocess.DEVNULL, stderr=(home / "worker.log").open("wb"),
    )  # fmt: skip
    tier = Tier(f"http://127.0.0.1:{port}", redis_url, home, serve, worker)
    try:
        deadline = time.monotonic() + 90
        while not _ready(tier.base_url):
            if (
                serve.poll() is not None
                or worker.poll() is not None
                or (time.monotonic() > deadline)
            ):
                pytest.fail(f"the tier did not get ready:\n{tier.logs()}")
            time.sleep(0.2)
        yield tier
    finally:
        _stop(worker, signal.SIGTERM)
        _stop(serve, signal.SIGINT)


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def probe(tier: Tier, path: str) -> tuple[int, httpx.Response]:
    """(pid of the API process that answered, its answer to GET `path`): one new connection,
    so uvicorn may hand it to either process, asked /readyz first."""
    with httpx.Client(base_url=tier.base_url, timeout=10) as http:
        pid = int(http.get("/readyz").json()["pid"])
        return pid, http.get(path)


def on_every_process(tier: Tier, check: Callable[[httpx.Response], bool], path: str) -> None:
    """Probe until both API processes passed `check`; fail if any probe sent `FRESH_S` after
    the call began still fails it. The long deadline only stops a hung test."""
    started, passed = time.monotonic(), set[int]()
    while len(passed) < 2:
        sent = time.monotonic()
        pid, response = probe(tier, path)
        if check(response):
            passed.add(pid)
        else:
            assert sent - started < FRESH_S, f"process {pid} still answers {response.text}"
        assert time.monotonic() - started < 30, f"only processes {passed} were reached"


def test_two_api_processes_serve_the_deployed_catalogue(tier: Tier) -> None:
    snapshot = latest_snapshot(tier.home)
    assert snapshot is not None
    answers: dict[int, dict[str, Any]] = {}
    while len(answers) < 2:
        pid, response = probe(tier, "/readyz")
        answers[pid] = response.json()
    for body in answers.values():
        assert body["ready"] and body["items"] == snapshot.manifest.items
        assert body["model_version"] == snapshot.manifest.version


def test_a_seeded_user_gets_personalised_recommendations_from_either_process(tier: Tier) -> None:
    def personalised(response: httpx.Response) -> bool:
        return response.status_code == 200 and response.json()["personalised"] is True

    on_every_process(tier, personalised, "/v1/recommendations/user-3")


def test_events_posted_to_any_process_are_applied_by_the_worker(tier: Tier) -> None:
    snapshot = latest_snapshot(tier.home)
    assert snapshot is not None
    item_id, user = next(iter(snapshot.keys())), f"u-{uuid.uuid4().hex[:8]}"
    for kind in ("click", "like", "click"):  # a new connection each: both processes take some
        with httpx.Client(base_url=tier.base_url) as http:
            event = {"user_id": user, "item_id": item_id, "type": kind}
            assert http.post("/v1/events", json={"events": [event]}).status_code == 202

    def counted(response: httpx.Response) -> bool:
        return response.json()["windows"]["5m"] == {"click": 2.0, "like": 1.0}

    deadline = time.monotonic() + 30  # stops a hung test only
    while not counted(probe(tier, f"/v1/users/{user}/features")[1]):
        assert time.monotonic() < deadline, "the worker never applied the events"
        time.sleep(0.02)
    on_every_process(tier, counted, f"/v1/users/{user}/features")


def _nice_values(pid: int) -> set[int]:
    """The nice value of each of a process's threads (/proc/PID/task/TID/stat, field 19)."""
    values = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        values.add(int(stat[stat.rindex(")") + 2 :].split()[16]))
    return values


def test_the_worker_runs_every_thread_below_the_api_processes_priority(tier: Tier) -> None:
    """`stream.worker_nice` (5): Redis and the API processes get a core before a worker."""
    (api,) = _nice_values(tier.serve.pid)
    assert _nice_values(tier.worker.pid) == {min(19, api + 5)}


def test_an_item_posted_to_one_process_is_served_by_both_within_a_second(tier: Tier) -> None:
    twin = {"title": "Ice Station Rockets", "description": "launches over the polar sea",
            "genres": ["documentary"], "creator_id": "c-new", "tags": ["space"]}  # fmt: skip
    with httpx.Client(base_url=tier.base_url) as http:
        for item_id in ("twin-a", "twin-b"):
            assert http.post("/v1/items", json={"item_id": item_id, **twin}).status_code == 201

    def twin_is_nearest(response: httpx.Response) -> bool:
        return response.status_code == 200 and response.json()["items"][0]["item_id"] == "twin-b"

    on_every_process(tier, twin_is_nearest, "/v1/items/twin-a/similar?n=5")
    on_every_process(tier, lambda r: r.status_code == 200, "/v1/items/twin-b")


def test_an_item_deleted_on_one_process_disappears_from_both(tier: Tier) -> None:
    with httpx.Client(base_url=tier.base_url) as http:
        created = http.post("/v1/items", json={"item_id": "doomed", "title": "Short-lived"})
        assert created.status_code == 201
    on_every_process(tier, lambda r: r.status_code == 200, "/v1/items/doomed")
    with httpx.Client(base_url=tier.base_url) as http:
        assert http.delete("/v1/items/doomed").status_code == 204
    on_every_process(tier, lambda r: r.status_code == 404, "/v1/items/doomed")


def test_the_worker_acknowledges_its_batch_and_exits_0_on_sigterm(tier: Tier) -> None:
    snapshot = latest_snapshot(tier.home)
    assert snapshot is not None
    item_id = next(iter(snapshot.keys()))
    events = [{"user_id": f"late-{n}", "item_id": item_id, "type": "view"} for n in range(200)]
    with httpx.Client(base_url=tier.base_url) as http:
        assert http.post("/v1/events", json={"events": events}).status_code == 202
    assert _stop(tier.worker, signal.SIGTERM) == 0
    bus = RedisStreamsBus.from_url(tier.redis_url)
    pending = sum(int(bus.client.xpending(s, "stream")["pending"]) for s in bus.streams)
    assert pending == 0  # whatever it took, it acknowledged; the rest waits for the next worker
