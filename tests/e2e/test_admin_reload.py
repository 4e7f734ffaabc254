"""POST /admin/models/reload: a running server switches model versions between requests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from recomatrix.engine import Engine


@pytest.fixture
def second_version(engine: Engine) -> Iterator[str]:
    """A copy of the serving version under a new name, as `recomatrix train` would add."""
    current = engine.settings.data.home / "models" / engine.models.version
    copy = current.with_name(current.name + "-copy")
    shutil.copytree(current, copy)
    yield copy.name
    engine.reload_models(current)  # leave the session engine as the other tests expect it
    shutil.rmtree(copy)


def test_reload_switches_the_served_version(
    http: httpx.Client, engine: Engine, second_version: str
) -> None:
    before = http.get("/v1/recommendations/u1").json()["model_version"]
    answer = http.post("/admin/models/reload", json={"version": second_version})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"model_version": second_version, "previous_version": before}
    after = http.get("/v1/recommendations/u1").json()
    assert after["model_version"] == second_version and len(after["items"]) == 20
    assert http.get("/readyz").json()["model_version"] == second_version


@pytest.mark.parametrize(
    ("version", "status"), [("v-no-such", 404), ("../..", 422), ("", 422), (".hidden", 422)]
)
def test_a_bad_version_is_refused_and_the_served_one_stays(
    http: httpx.Client, engine: Engine, version: str, status: int
) -> None:
    served = engine.models.version
    answer = http.post("/admin/models/reload", json={"version": version})
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "version"]
    assert engine.models.version == served
