"""API keys: who may change the engine over HTTP (and, optionally, who may read from it).

Writes and anything under /admin/ need `Authorization: Bearer <key>`. The accepted keys are
the union of `server.api_keys` (settings file or `RECOMATRIX_SERVER__API_KEYS`) and the
comma-separated `RECOMATRIX_API_KEYS`, so a new key can be rolled out through the
environment without editing the file. With no key configured at all the demo still works
out of the box: writes are open while the server listens on loopback only, and refused
(401) on any other address, since then anyone on the network could change the catalogue.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping

from fastapi import HTTPException, Request
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from recomatrix.config import ServerSettings

API_KEYS_ENV = "RECOMATRIX_API_KEYS"
MIN_KEY_CHARS = 16
# Printable ASCII without spaces or commas: what survives an HTTP header and a CSV env var.
_KEY_SHAPE = re.compile(r"[!-+\--~]+")
_HOW_TO_MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"

log = logging.getLogger(__name__)


def parse_keys(raw: str) -> tuple[str, ...]:
    """Keys from a comma-separated list, ignoring blanks.

    >>> parse_keys(" alpha-key-0123456789 , ,beta-key-0123456789")
    ('alpha-key-0123456789', 'beta-key-0123456789')
    """
    return tuple(key.strip() for key in raw.split(",") if key.strip())


def configured_keys(server: ServerSettings, env: Mapping[str, str]) -> tuple[str, ...]:
    """Keys from the settings and the environment, validated; a bad one stops the start."""
    keys = (*server.api_keys, *parse_keys(env.get(API_KEYS_ENV, "")))
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_KEY_CHARS or not _KEY_SHAPE.fullmatch(key):
            # Never echo the key itself: it would end up in logs.
            raise ValueError(
                f"API key #{position} (from server.api_keys, then {API_KEYS_ENV}) must be at "
                f"least {MIN_KEY_CHARS} printable ASCII characters without spaces or commas; "
                f"make one with: {_HOW_TO_MAKE_ONE}"
            )
    return keys


def is_loopback(host: str) -> bool:
    """True when a bind address is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


class KeyRing:
    """The accepted keys, held as SHA-256 digests and checked in constant time.

    Hashing first makes every comparison the same length, so timing tells neither a key's
    length nor its prefix; every key is compared, so timing does not tell which one matched.

    >>> ring = KeyRing(["alpha-key-0123456789"])
    >>> ring.accepts("alpha-key-0123456789"), ring.accepts("alpha-key-012345678")
    (True, False)
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple({_digest(key) for key in keys})

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, presented: str) -> bool:
        digest = _digest(presented)
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)  # `|=`: no early exit
        return matched


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _unauthorized(msg: str) -> HTTPException:
    """A 401 in the app's error shape, naming the header to fix."""
    return HTTPException(
        status_code=401,
        detail=[{"loc": ["header", "authorization"], "msg": msg}],
        headers={"WWW-Authenticate": "Bearer"},
    )


class ApiKeyAuth(HTTPBearer):
    """A FastAPI dependency that lets a request through only with an accepted key.

    It is an `HTTPBearer`, so the OpenAPI schema (and /docs' Authorize button) shows which
    operations need a key; it does its own checking to give errors in the app's shape.
    """

    def __init__(self, ring: KeyRing, *, host: str) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="ApiKey",
            description=f"An API key from {API_KEYS_ENV} or server.api_keys.",
        )
        self.ring = ring
        self.host = host
        self.open = len(ring) == 0 and is_loopback(host)

    async def __call__(self, request: HTTPConnection) -> None:
        if self.open:
            return
        if len(self.ring) == 0:
            raise _unauthorized(
                f"no API keys are configured and the server listens on {self.host}, "
                f"which is not loopback: set {API_KEYS_ENV} and send 'Authorization: Bearer "
                "<key>'"
            )
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        if not self.ring.accepts(presented.strip()):
            raise _unauthorized("invalid API key")

    async def under_admin(self, request: Request) -> None:
        """An app-wide dependency: every route under /admin needs a key, whoever adds it."""
        if request.url.path == "/admin" or request.url.path.startswith("/admin/"):
            await self(request)


def api_key_auth(server: ServerSettings, env: Mapping[str, str]) -> ApiKeyAuth:
    """The key check for a server, with the start-up warning an open server deserves."""
    auth = ApiKeyAuth(KeyRing(configured_keys(server, env)), host=server.host)
    if auth.open:
        log.warning(
            "no API keys configured: anyone who can reach %s:%s may post events and items; "
            "set %s before exposing the server",
            server.host, server.port, API_KEYS_ENV,
        )  # fmt: skip
    elif len(auth.ring) == 0:
        log.warning(
            "no API keys configured and %s is not loopback: writes are refused (401) until "
            "%s is set",
            server.host, API_KEYS_ENV,
        )  # fmt: skip
    return auth


_ORIGIN_SHAPE = re.compile(r"https?://[^/\s]+")


def cors_origins(server: ServerSettings) -> list[str]:
    """The configured CORS origins, checked: a browser sends `scheme://host[:port]` exactly,
    so anything else (a path, a trailing slash) would silently never match."""
    for origin in server.cors_origins:
        if origin != "*" and not _ORIGIN_SHAPE.fullmatch(origin):
            raise ValueError(
                f"server.cors_origins: {origin!r} is not an origin; write it as "
                "scheme://host[:port] with no path or trailing slash, e.g. https://shop.example"
            )
    return list(server.cors_origins)
