"""API keys and CORS on the real app over the session engine: a refused write changes
nothing, an accepted one is stored, reads can be locked, and CORS is off unless configured."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from recomatrix.config import ServerSettings
from recomatrix.data import World
from recomatrix.engine import Engine
from recomatrix.server.app import create_app
from recomatrix.server.auth import API_KEYS_ENV

KEY = "e2e-key-0123456789abcdef"
OTHER_KEY = "e2e-other-key-0123456789"
GOOD = {"Authorization": f"Bearer {KEY}"}
BAD_HEADERS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong-key-0123456789ab"},
    {"Authorization": f"Basic {KEY}"},
]
ORIGIN = "https://shop.example"


@contextmanager
def serving(engine: Engine, **server: Any) -> Iterator[TestClient]:
    """An in-process client of a fresh app on the session engine, with keys configured."""
    settings = ServerSettings(**{"api_keys": (KEY, OTHER_KEY), **server})
    with TestClient(create_app(engine, server=settings)) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def no_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEYS_ENV, raising=False)


@pytest.fixture()
def keyed(engine: Engine) -> Iterator[TestClient]:
    with serving(engine) as test_client:
        yield test_client


@pytest.fixture()
def locked(engine: Engine) -> Iterator[TestClient]:
    with serving(engine, protect_reads=True) as test_client:
        yield test_client


def new_item() -> dict[str, Any]:
    item_id = f"auth-item-{uuid.uuid4().hex[:8]}"
    return {"item_id": item_id, "title": "A secret documentary", "genres": ["documentary"]}


def click(world: World) -> tuple[str, dict[str, Any]]:
    user = f"auth-user-{uuid.uuid4().hex[:8]}"
    event = {"user_id": user, "item_id": world.items[0].item_id, "type": "click"}
    return user, {"events": [event]}


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"][0]["loc"] == ["header", "authorization"]


def test_post_item_without_the_right_key_is_401_and_stores_nothing(
    keyed: TestClient, engine: Engine
) -> None:
    before = len(engine.catalogue)
    for headers in BAD_HEADERS:
        item = new_item()
        assert_refused(keyed.post("/v1/items", json=item, headers=headers))
        assert item["item_id"] not in engine.catalogue
    assert len(engine.catalogue) == before


def test_post_events_without_the_right_key_is_401_and_applies_nothing(
    keyed: TestClient, engine: Engine, world: World
) -> None:
    for headers in BAD_HEADERS:
        user, batch = click(world)
        assert_refused(keyed.post("/v1/events", json=batch, headers=headers))
        assert engine.wait_idle()
        assert engine.user_features(user)["windows"] == {"5m": {}, "1h": {}, "24h": {}}


def test_delete_without_the_right_key_is_401_and_the_item_stays(
    keyed: TestClient, engine: Engine, world: World
) -> None:
    item_id = world.items[1].item_id
    for headers in BAD_HEADERS:
        assert_refused(keyed.delete(f"/v1/items/{item_id}", headers=headers))
    assert item_id in engine.catalogue


def test_writes_with_any_configured_key_are_stored(
    keyed: TestClient, engine: Engine, world: World
) -> None:
    item = new_item()
    created = keyed.post("/v1/items", json=item, headers=GOOD)
    assert created.status_code == 201, created.text
    assert item["item_id"] in engine.catalogue

    user, batch = click(world)
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    assert keyed.post("/v1/events", json=batch, headers=other).status_code == 202
    assert engine.wait_idle()
    assert engine.user_features(user)["windows"]["5m"].get("click") == 1

    assert keyed.delete(f"/v1/items/{item['item_id']}", headers=GOOD).status_code == 204
    assert item["item_id"] not in engine.catalogue


def read_paths(world: World) -> list[str]:
    item_id = world.items[0].item_id
    return [
        "/v1/recommendations/auth-reader?n=5",
        f"/v1/items/{item_id}",
        f"/v1/items/{item_id}/similar?n=5",
        "/v1/trending?n=5",
        "/v1/users/auth-reader/features",
    ]


OPEN_PATHS = ["/healthz", "/readyz", "/metrics", "/", "/dashboard", "/static/app.css"]


def test_reads_are_open_by_default(keyed: TestClient, world: World) -> None:
    for path in read_paths(world) + OPEN_PATHS:
        assert keyed.get(path).status_code == 200, path


def test_protect_reads_locks_reads_but_not_health_metrics_or_the_ui(
    locked: TestClient, world: World
) -> None:
    for path in read_paths(world):
        assert_refused(locked.get(path))
        assert locked.get(path, headers=GOOD).status_code == 200, path
    for path in OPEN_PATHS:
        assert locked.get(path).status_code == 200, path


def test_without_keys_on_a_public_address_writes_are_refused_and_reads_served(
    engine: Engine, world: World
) -> None:
    exposed = ServerSettings(host="0.0.0.0")
    with TestClient(create_app(engine, server=exposed)) as open_client:
        item = new_item()
        response = open_client.post("/v1/items", json=item)
        assert_refused(response)
        assert API_KEYS_ENV in response.json()["detail"][0]["msg"]
        assert item["item_id"] not in engine.catalogue
        assert open_client.get("/v1/trending").status_code == 200


def test_the_environment_variable_adds_keys(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_key = "from-the-env-0123456789ab"
    monkeypatch.setenv(API_KEYS_ENV, env_key)
    with serving(engine, host="0.0.0.0") as keyed_client:
        _, batch = click(world)
        headers = {"Authorization": f"Bearer {env_key}"}
        assert keyed_client.post("/v1/events", json=batch, headers=headers).status_code == 202
        assert keyed_client.post("/v1/events", json=batch, headers=GOOD).status_code == 202


def test_openapi_marks_the_write_operations_as_needing_a_key(keyed: TestClient) -> None:
    paths = keyed.get("/openapi.json").json()["paths"]
    assert paths["/v1/events"]["post"]["security"] == [{"ApiKey": []}]
    assert paths["/v1/items/{item_id}"]["delete"]["security"] == [{"ApiKey": []}]
    assert "security" not in paths["/v1/items/{item_id}"]["get"]


def test_cors_headers_are_absent_by_default(keyed: TestClient) -> None:
    response = keyed.get("/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers
    preflight = keyed.options("/v1/events", headers=preflight_headers(ORIGIN))
    assert "access-control-allow-origin" not in preflight.headers


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }


def test_cors_headers_are_sent_for_a_configured_origin_only(engine: Engine, world: World) -> None:
    with serving(engine, cors_origins=(ORIGIN,)) as cors:
        preflight = cors.options("/v1/events", headers=preflight_headers(ORIGIN))
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

        response = cors.get("/v1/trending", headers={"Origin": ORIGIN})
        assert response.headers["access-control-allow-origin"] == ORIGIN
        refused = cors.post("/v1/events", json=click(world)[1], headers={"Origin": ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == ORIGIN  # readable error

        other = cors.get("/v1/trending", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        evil = cors.options("/v1/events", headers=preflight_headers("https://evil.example"))
        assert evil.status_code == 400
