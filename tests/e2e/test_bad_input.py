"""Bad input gets a 4xx naming the field, nothing of a rejected batch is applied, and the
server stays healthy."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from recomatrix.data import World


def locs(response: httpx.Response) -> list[list[Any]]:
    return [d["loc"] for d in response.json()["detail"]]


def features(http: httpx.Client, user: str) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"/v1/users/{user}/features").json()
    return body


def test_malformed_json_is_422(http: httpx.Client) -> None:
    response = http.post(
        "/v1/events", content=b'{"events": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert locs(response)[0][0] == "body"


def test_unknown_event_type_names_the_field_and_applies_nothing(
    http: httpx.Client, world: World
) -> None:
    user = f"bad-{uuid.uuid4().hex[:6]}"
    item = world.items[0].item_id
    batch = [
        {"user_id": user, "item_id": item, "type": "click"},
        {"user_id": user, "item_id": item, "type": "purchase"},
    ]
    response = http.post("/v1/events", json={"events": batch})
    assert response.status_code == 422
    assert ["body", "events", 1, "type"] in locs(response)
    http.get("/healthz")
    assert features(http, user)["windows"]["5m"] == {}


def test_missing_ids_are_named(http: httpx.Client, world: World) -> None:
    response = http.post("/v1/events", json={"events": [{"type": "click"}]})
    assert response.status_code == 422
    assert ["body", "events", 0, "user_id"] in locs(response)
    assert ["body", "events", 0, "item_id"] in locs(response)


def test_unknown_item_names_the_field_and_applies_nothing(http: httpx.Client, world: World) -> None:
    user = f"bad-{uuid.uuid4().hex[:6]}"
    batch = [
        {"user_id": user, "item_id": world.items[0].item_id, "type": "click"},
        {"user_id": user, "item_id": "no-such-item", "type": "click"},
    ]
    response = http.post("/v1/events", json={"events": batch})
    assert response.status_code == 422 and locs(response) == [["body", "events", 1, "item_id"]]
    assert features(http, user)["windows"]["5m"] == {}


def test_100k_events_in_one_batch_is_refused_naming_events(
    http: httpx.Client, world: World
) -> None:
    user = f"bad-{uuid.uuid4().hex[:6]}"
    event = {"user_id": user, "item_id": world.items[0].item_id, "type": "view"}
    response = http.post("/v1/events", json={"events": [event] * 100_000})
    assert response.status_code == 422
    assert locs(response) == [["body", "events"]]
    assert features(http, user)["windows"]["5m"] == {}


def test_10mb_description_is_refused_naming_description(http: httpx.Client) -> None:
    item_id = f"huge-{uuid.uuid4().hex[:6]}"
    body = {"item_id": item_id, "title": "Huge", "description": "x" * 10_000_000}
    response = http.post("/v1/items", json=body)
    assert response.status_code == 422
    assert locs(response) == [["body", "description"]]
    assert http.get(f"/v1/items/{item_id}").status_code == 404


def test_body_over_the_limit_is_413_before_parsing(http: httpx.Client) -> None:
    response = http.post(
        "/v1/events",
        content=b"x" * (17 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert locs(response) == [["body"]]


def test_absurd_values_are_named(http: httpx.Client, world: World) -> None:
    item = world.items[0].item_id
    cases = {
        "ts": {"user_id": "u", "item_id": item, "type": "click", "ts": -5},
        "watch_seconds": {"user_id": "u", "item_id": item, "type": "view", "watch_seconds": 1e9},
        "user_id": {"user_id": "u" * 500, "item_id": item, "type": "click"},
    }
    for field, event in cases.items():
        response = http.post("/v1/events", json={"events": [event]})
        assert response.status_code == 422, field
        assert any(field in loc for loc in locs(response)), (field, locs(response))


def test_bad_query_parameters_are_named(http: httpx.Client) -> None:
    response = http.get("/v1/recommendations/u1", params={"n": 0})
    assert response.status_code == 422 and ["query", "n"] in locs(response)
    assert http.get("/v1/items/none-such/similar").status_code == 404


def test_server_is_healthy_after_all_of_it(http: httpx.Client, world: World) -> None:
    assert http.get("/healthz").status_code == 200
    assert http.get(f"/v1/recommendations/{world.users[0]}").status_code == 200
