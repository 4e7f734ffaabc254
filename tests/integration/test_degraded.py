"""Redis going away and coming back (issue #5): reads degrade, writes wait, nothing is lost.

The redis-server here keeps an append-only file fsync'd on every write, so what Redis
acknowledged survives the kill: the test checks that the engine loses nothing on top.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recomatrix.config import load_settings
from recomatrix.engine import Engine, Models
from recomatrix.events.redis import RedisStreamsBus
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.loopback import free_port, start_redis
from recomatrix.ranking.base import Scores
from recomatrix.ranking.features import FEATURE_NAMES
from recomatrix.retrieval import Catalogue, ExactIndex, HnswIndex, TieredIndex
from recomatrix.server.app import create_app
from recomatrix.types import Item

DIM = 16
GENRES = ("drama", "comedy", "horror", "news", "sport", "music", "kids", "docs")
ENGAGED_ITEMS = [f"i{k}" for k in range(60, 100)]  # neither the newest nor the popular ones
Json = dict[str, Any]


class RedisProcess:
    """A redis-server on a free port that can be killed and started again on that port.

    `--appendfsync always`: a write is on disk before Redis answers it, so an acknowledged
    event survives a kill -9, as it would on a production Redis with that setting.
    """

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process, _ = start_redis(
            self.directory, "--appendonly", "yes", "--appendfsync", "always", port=self.port
        )

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class CosineRanker:
    """Ranks by cosine to the user's query: a real `Ranker`, without a training run."""

    feature_names = FEATURE_NAMES
    version = "cosine"

    def score(self, X: np.ndarray) -> Scores:
        click = (1.0 / (1.0 + np.exp(-X[:, 0]))).astype(np.float32)
        return Scores(click=click, complete=np.zeros(len(X), dtype=np.float32))


def content_vectors(items: Sequence[Item]) -> np.ndarray:
    return np.stack(
        [
            np.random.default_rng(zlib.crc32(item.item_id.encode())).normal(size=DIM)
            for item in items
        ]
    ).astype(np.float32)


@dataclass
class Served:
    engine: Engine
    redis: RedisProcess

    def client(self) -> TestClient:
        """One HTTP client per thread."""
        return TestClient(create_app(self.engine))


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    """An engine over RedisOnlineStore + RedisStreamsBus on a killable redis-server."""
    server = RedisProcess(tmp_path)
    settings = load_settings(
        env={}, overrides={"data": {"home": tmp_path / "home"}, "retrieval": {"dim": DIM}}
    )
    store = RedisOnlineStore.from_url(server.url)
    bus = RedisStreamsBus.from_url(server.url + "?partitions=2")
    engine = Engine(
        settings=settings,
        catalogue=Catalogue(ndim=DIM),
        index=TieredIndex(main=HnswIndex(ndim=DIM)),
        fresh=ExactIndex(ndim=DIM, capacity=100),
        store=store,
        bus=bus,
        models=Models(
            version="cosine",
            ranker=CosineRanker(),
            embed_items=content_vectors,
            embed_user=lambda history: history.mean(axis=0),
        ),
        popular=[f"i{k}" for k in range(100, 120)],
    )
    week_ago = time.time() - 7 * 86400.0
    engine.put_items(
        [
            Item(f"i{k}", f"Item {k}", genres=(GENRES[k % len(GENRES)],),
                 creator_id=f"c{k}", created_at=week_ago - k * 60.0)
            for k in range(120)
        ]
    )  # fmt: skip
    engine.start()
    try:
        yield Served(engine, server)
    finally:
        engine.close()
        store.close()
        bus.close()
        server.kill()


def event(n: int, user: str, item: str, kind: str = "click") -> Json:
    return {"event_id": f"e{n}", "user_id": user, "item_id": item, "type": kind, "ts": time.time()}


def post_until_accepted(client: TestClient, batch: list[Json], *, deadline: float) -> int:
    """Post a batch as a well-behaved client does, again after each 503; returns the 503s."""
    refused = 0
    while True:
        response = client.post("/v1/events", json={"events": batch})
        if response.status_code == 202:
            assert response.json() == {"accepted": len(batch)}
            return refused
        assert response.status_code == 503, response.text
        assert int(response.headers["Retry-After"]) >= 1
        refused += 1
        assert time.monotonic() < deadline, "events still refused at the deadline"
        time.sleep(0.05)  # sooner than Retry-After asks: the test should not idle


def recommendations(client: TestClient, user: str, n: int = 20) -> Json:
    response = client.get(f"/v1/recommendations/{user}", params={"n": n})
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


def counts(events: Sequence[Json]) -> dict[str, float]:
    return dict(Counter(e["type"] for e in events))


def nonzero(window: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in window.items() if v > 1e-9}


def wait_applied(engine: Engine) -> None:
    assert engine.wait_idle(timeout_s=30), "the stream processor did not catch up"


def test_reads_degrade_and_writes_wait_while_redis_is_down_then_both_recover(
    served: Served,
) -> None:
    client, engine = served.client(), served.engine
    deadline = time.monotonic() + 30
    seen = [event(n, "fan", ENGAGED_ITEMS[n % 10]) for n in range(30)]
    post_until_accepted(client, seen, deadline=deadline)
    wait_applied(engine)
    assert recommendations(client, "fan")["degraded"] is False  # also what is remembered
    trending = {item_id for item_id, _ in engine.store.top_trending(40)}
    assert trending

    served.redis.kill()
    for _ in range(5):
        body = recommendations(client, "fan")
        assert body["degraded"] is True and body["personalised"] is True
        assert len(body["items"]) == 20
    stranger = recommendations(client, "stranger", n=200)
    assert stranger["degraded"] is True and stranger["personalised"] is False
    from_trending = {i["item_id"] for i in stranger["items"] if i["source"] == "trending"}
    assert from_trending and from_trending <= trending  # the last trending list seen
    batch = [event(100 + n, "fan", ENGAGED_ITEMS[0]) for n in range(5)]
    refused = client.post("/v1/events", json={"events": batch})
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "send it again" in refused.json()["detail"]
    for path in ("/v1/users/fan/features", "/readyz"):  # no fallback: 503, never a 500
        answer = client.get(path)
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1, path

    served.redis.start()
    while recommendations(client, "fan")["degraded"]:
        assert time.monotonic() < deadline, "still degraded after Redis came back"
        time.sleep(0.05)
    post_until_accepted(client, batch, deadline=deadline)
    wait_applied(engine)
    clicks = client.get("/v1/users/fan/features").json()["windows"]["1h"]["click"]
    assert clicks == len(seen) + len(batch)


def test_every_event_is_counted_once_across_a_redis_kill_under_load(served: Served) -> None:
    engine, rng = served.engine, random.Random(5)
    users = [f"u{n}" for n in range(20)]
    kinds = ("click", "view", "skip", "like", "impression")
    sent = [event(n, rng.choice(users), rng.choice(ENGAGED_ITEMS), rng.choice(kinds))
            for n in range(2000)]  # fmt: skip
    batches = [sent[i : i + 20] for i in range(0, len(sent), 20)]
    deadline = time.monotonic() + 40
    accepted, refused, statuses, degraded = [0], [0], Counter[int](), [0]
    failures: list[BaseException] = []
    stop_reading = threading.Event()

    def post_all() -> None:
        client = served.client()
        try:
            for batch in batches:
                refused[0] += post_until_accepted(client, batch, deadline=deadline)
                accepted[0] += 1
                time.sleep(0.005)
        except BaseException as error:
            failures.append(error)

    def read_all() -> None:
        client = served.client()
        while not stop_reading.is_set():
            response = client.get(f"/v1/recommendations/{rng.choice(users)}")
            statuses[response.status_code] += 1
            if response.status_code == 200 and response.json()["degraded"]:
                degraded[0] += 1

    poster, reader = threading.Thread(target=post_all), threading.Thread(target=read_all)
    poster.start()
    reader.start()
    try:
        while accepted[0] < 20 and poster.is_alive():
            time.sleep(0.005)
        served.redis.kill()
        time.sleep(2.0)
        served.redis.start()
        poster.join(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        stop_reading.set()
        reader.join()
    assert not failures, failures
    assert accepted[0] == len(batches)
    assert refused[0] > 0 and degraded[0] > 0, "the outage did not overlap the load"
    assert set(statuses) == {200}, statuses

    wait_applied(engine)
    now = time.time()
    for user, state in zip(users, engine.store.get_users(users), strict=True):
        assert state is not None
        mine = [e for e in sent if e["user_id"] == user]
        assert nonzero(state.windows.get("1h", now=now)) == counts(mine), user
    for item_id, item in zip(ENGAGED_ITEMS, engine.store.get_items(ENGAGED_ITEMS), strict=True):
        mine = [e for e in sent if e["item_id"] == item_id]
        assert item is not None and nonzero(item.windows.get("1h", now=now)) == counts(mine)
