"""The API-key check on its own: parsing, validation, constant-time matching, and the
dependency's answers on a one-route app (in process, no sockets)."""

from __future__ import annotations

import hmac

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from recomatrix.config import ServerSettings, load_settings
from recomatrix.server import auth
from recomatrix.server.auth import API_KEYS_ENV, ApiKeyAuth, KeyRing

FILE_KEY = "file-key-0123456789abcdef"
ENV_KEY = "env-key-0123456789abcdef"


def test_keys_are_split_on_commas_and_blanks_are_ignored() -> None:
    assert auth.parse_keys(f" {FILE_KEY} ,, {ENV_KEY},") == (FILE_KEY, ENV_KEY)
    assert auth.parse_keys("") == ()
    assert auth.parse_keys(" , ") == ()


def test_env_keys_are_added_to_the_settings_keys() -> None:
    server = ServerSettings(api_keys=(FILE_KEY,))
    assert auth.configured_keys(server, {API_KEYS_ENV: ENV_KEY}) == (FILE_KEY, ENV_KEY)
    assert auth.configured_keys(server, {}) == (FILE_KEY,)
    assert auth.configured_keys(ServerSettings(), {API_KEYS_ENV: ENV_KEY}) == (ENV_KEY,)


def test_settings_read_keys_from_env_like_any_other_tuple() -> None:
    settings = load_settings(env={"RECOMATRIX_SERVER__API_KEYS": f"{FILE_KEY},{ENV_KEY}"})
    assert settings.server.api_keys == (FILE_KEY, ENV_KEY)
    assert FILE_KEY not in repr(settings)  # keys never reach a log line through repr


@pytest.mark.parametrize("bad", ["short-key", "has space 0123456789", "ünïcödé-0123456789ab"])
def test_a_weak_or_unsendable_key_stops_the_start_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError, match="API key #2") as err:
        auth.configured_keys(ServerSettings(api_keys=(FILE_KEY, bad)), {})
    assert bad not in str(err.value)
    assert "secrets.token_urlsafe" in str(err.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert auth.is_loopback(host) is loopback


def test_key_ring_accepts_exactly_the_configured_keys() -> None:
    ring = KeyRing([FILE_KEY, ENV_KEY])
    assert ring.accepts(FILE_KEY) and ring.accepts(ENV_KEY)
    for wrong in ("", FILE_KEY[:-1], FILE_KEY + "x", FILE_KEY.upper(), f"{FILE_KEY},{ENV_KEY}"):
        assert not ring.accepts(wrong)
    assert not KeyRing([]).accepts("")


def test_key_ring_compares_against_every_key_even_after_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = [f"key-{i}-0123456789abcdef" for i in range(5)]
    ring = KeyRing(keys)
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(len(b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for key in [keys[0], keys[-1], "not-a-key-0123456789"]:
        calls.clear()
        ring.accepts(key)
        assert calls == [32] * len(keys)  # every key, always as a 32-byte digest


def guarded_app(guard: ApiKeyAuth) -> FastAPI:
    app = FastAPI(dependencies=[Depends(guard.under_admin)])

    @app.post("/write", dependencies=[Depends(guard)])
    def write() -> dict[str, bool]:
        return {"done": True}

    @app.post("/admin/reload")
    def reload() -> dict[str, bool]:
        return {"reloaded": True}

    @app.get("/administrators")
    def not_admin() -> dict[str, bool]:
        return {"open": True}

    return app


def detail_msg(response: httpx.Response) -> str:
    body = response.json()
    assert body["detail"][0]["loc"] == ["header", "authorization"]
    msg: str = body["detail"][0]["msg"]
    return msg


@pytest.mark.parametrize("path", ["/write", "/admin/reload"])
def test_keyed_guard_answers_401_in_the_app_error_shape_unless_the_key_is_right(
    path: str,
) -> None:
    client = TestClient(guarded_app(ApiKeyAuth(KeyRing([FILE_KEY]), host="0.0.0.0")))
    cases = {
        "missing": {},
        "other scheme": {"Authorization": f"Basic {FILE_KEY}"},
        "empty bearer": {"Authorization": "Bearer "},
        "wrong key": {"Authorization": "Bearer not-the-key-0123456789"},
    }
    for name, headers in cases.items():
        response = client.post(path, headers=headers)
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"] == "Bearer"
        assert "key" in detail_msg(response)
    ok = client.post(path, headers={"Authorization": f"bearer  {FILE_KEY} "})
    assert ok.status_code == 200
    assert client.get("/administrators").status_code == 200


def test_without_keys_writes_are_open_on_loopback_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="recomatrix.server.auth"):
        local = auth.api_key_auth(ServerSettings(host="127.0.0.1"), {})
    assert "no API keys configured" in caplog.text
    assert TestClient(guarded_app(local)).post("/write").status_code == 200

    exposed = auth.api_key_auth(ServerSettings(host="0.0.0.0"), {})
    response = TestClient(guarded_app(exposed)).post(
        "/write", headers={"Authorization": "Bearer anything-0123456789"}
    )
    assert response.status_code == 401
    assert API_KEYS_ENV in detail_msg(response) and "0.0.0.0" in detail_msg(response)


def test_a_key_from_the_environment_opens_the_guard_on_any_host() -> None:
    guard = auth.api_key_auth(ServerSettings(host="0.0.0.0"), {API_KEYS_ENV: ENV_KEY})
    client = TestClient(guarded_app(guard))
    assert client.post("/write").status_code == 401
    assert client.post("/write", headers={"Authorization": f"Bearer {ENV_KEY}"}).status_code == 200


@pytest.mark.parametrize("bad", ["https://shop.example/", "shop.example", "https://a.example/app"])
def test_cors_origin_that_a_browser_would_never_send_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="scheme://host"):
        auth.cors_origins(ServerSettings(cors_origins=(bad,)))
    good = ("https://shop.example", "http://127.0.0.1:5173")
    assert auth.cors_origins(ServerSettings(cors_origins=good)) == list(good)
