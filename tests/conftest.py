"""Shared fixtures: one small trained engine per test session, and a real HTTP server on it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from recomatrix.bootstrap import build_engine
from recomatrix.config import Settings, load_settings
from recomatrix.data import World, generate_world
from recomatrix.engine import Engine
from recomatrix.loopback import free_port
from recomatrix.server.app import create_app


def small_settings(home: Path) -> Settings:
    return load_settings(
        env={},
        overrides={
            "data": {"encoder": "hashing", "home": home, "n_items": 2000, "n_users": 400},
            "training": {"two_tower_epochs": 2, "ranker_epochs": 2},
        },
    )


@pytest.fixture(scope="session")
def world() -> World:
    return generate_world(n_items=2000, n_users=400, n_events=30_000, n_viral=3, seed=11)


@pytest.fixture(scope="session")
def active_users(world: World) -> list[str]:
    """Users with the most engagement in the log, most active first."""
    counts: dict[str, int] = {}
    for event in world.events:
        if event.type in ("click", "like", "complete"):
            counts[event.user_id] = counts.get(event.user_id, 0) + 1
    return sorted(counts, key=lambda u: -counts[u])


@pytest.fixture(scope="session")
def engine(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    built, _ = build_engine(world, small_settings(tmp_path_factory.mktemp("home")))
    yield built
    built.close()


@pytest.fixture(scope="session")
def base_url(engine: Engine) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, serving the session's engine."""
    port = free_port()
    config = uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client
