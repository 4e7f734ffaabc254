"""Schema-driven fuzzing of every operation in the OpenAPI schema (schemathesis): valid and
invalid requests alike never get a 5xx, and requests that break the schema get a 4xx.

Runs in process over the session engine with a key configured, so the write handlers are
reached, not just the key check. Items the fuzzer manages to create are deleted again so
the other tests' catalogue stays as it was. Seeded and bounded, so CI sees the same run.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection

from recomatrix.config import ServerSettings
from recomatrix.data import World
from recomatrix.engine import Engine
from recomatrix.server.app import create_app

KEY = "fuzz-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
SERVER = ServerSettings(api_keys=(KEY,))

# The schema comes from the routes alone: building the app touches no engine until a request
# arrives, so it is loaded at import (schemathesis' fixture loader does not run on pytest 9).
NO_ENGINE: Any = None
schema = schemathesis.openapi.from_dict(create_app(NO_ENGINE, server=SERVER).openapi())
# Our key goes in every request; a generated Authorization header would only test 401s.
schema.config.generation.update(modes=["positive", "negative"], with_security_parameters=False)


@pytest.fixture(scope="module")
def app(engine: Engine) -> FastAPI:
    return create_app(engine, server=SERVER)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx_and_invalid_input_is_4xx(
    case: Any, app: FastAPI, engine: Engine
) -> None:
    response = case.call(app=app, headers=AUTH)
    if case.method == "POST" and case.path == "/v1/items" and response.status_code == 201:
        engine.delete_item(response.json()["item"]["item_id"])
    case.validate_response(response, checks=[not_a_server_error, negative_data_rejection])


LONE = "\ud800"  # a lone surrogate: json.dumps sends it as the escape "\\ud800"


def surrogate_bodies(item_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    event = {"user_id": "u", "item_id": item_id, "type": "click"}
    return {
        "description": ("/v1/items", {"item_id": "s-1", "title": "t", "description": LONE}),
        "title": ("/v1/items", {"item_id": "s-2", "title": LONE}),
        "tags": ("/v1/items", {"item_id": "s-3", "title": "t", "tags": [LONE]}),
        "user_id": ("/v1/events", {"events": [{**event, "user_id": LONE}]}),
        "context": ("/v1/events", {"events": [{**event, "context": {"k": LONE}}]}),
    }


@pytest.mark.parametrize("field", sorted(surrogate_bodies("")))
def test_lone_surrogates_in_text_are_422_naming_the_field(
    field: str, app: FastAPI, world: World
) -> None:
    """Hypothesis never generates lone surrogates, but JSON can carry them; a description
    with one used to be a 500."""
    path, body = surrogate_bodies(world.items[0].item_id)[field]
    headers = {**AUTH, "content-type": "application/json"}
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(path, content=json.dumps(body), headers=headers)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"][0]["loc"]
