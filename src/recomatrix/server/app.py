"""The HTTP API: routes translate JSON to engine calls and back, nothing more."""

from __future__ import annotations

import math
import os
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recomatrix.config import ServerSettings
from recomatrix.degrade import BusUnavailable, Unavailable, unavailable_errors
from recomatrix.engine import Engine
from recomatrix.server.auth import api_key_auth, cors_origins
from recomatrix.server.limits import BodySizeLimit
from recomatrix.server.schemas import EventBatch, ItemIn, ReloadIn
from recomatrix.types import Candidate, Event, Item

# The web UI: plain HTML, CSS and JS modules, served as they are (no build step).
STATIC_DIR = Path(__file__).with_name("static")


class ORJSONResponse(JSONResponse):
    """Serialise once with orjson: the default encoder costs milliseconds per response."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def field_error(status: int, loc: list[str | int], msg: str) -> ORJSONResponse:
    """An error in FastAPI's 422 shape, naming the offending field by its path."""
    return ORJSONResponse({"detail": [{"loc": loc, "msg": msg}]}, status_code=status)


def _epoch(ts: float | datetime | None) -> float:
    """A validated timestamp (already epoch seconds) or now."""
    if ts is None:
        return time.time()
    return ts.timestamp() if isinstance(ts, datetime) else float(ts)


def _candidate_json(c: Candidate, explain: bool, title: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "item_id": c.item_id,
        "title": title,
        "score": round(c.score, 6),
        "source": c.source,
        "genre": c.genre,
        "creator_id": c.creator_id,
        "sponsored": c.sponsored,
    }
    if explain:
        out["explain"] = c.explain or {}
    return out


def _item_json(item: Item) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "title": item.title,
        "description": item.description,
        "genres": list(item.genres),
        "creator_id": item.creator_id,
        "tags": list(item.tags),
        "created_at": item.created_at,
        "sponsored": item.sponsored,
    }


def unavailable(detail: str, *, retry_after_s: float) -> ORJSONResponse:
    """503 with `Retry-After` in whole seconds (at least 1): the request may be sent again."""
    retry_after = max(1, math.ceil(retry_after_s))
    return ORJSONResponse({"detail": detail}, status_code=503,
                          headers={"Retry-After": str(retry_after)})  # fmt: skip


def _page(name: str) -> HTMLResponse:
    return HTMLResponse((STATIC_DIR / name).read_text(encoding="utf-8"))


def create_app(engine: Engine, *, server: ServerSettings | None = None) -> FastAPI:
    """The FastAPI application serving `engine` (with `server` settings, default the engine's)."""
    limits = server if server is not None else engine.settings.server
    auth = api_key_auth(limits, os.environ)
    writes = [Depends(auth)]
    reads = writes if limits.protect_reads else []
    app = FastAPI(
        title="recomatrix",
        version="0.1.0",
        description="Real-time two-stage recommendations.",
        default_response_class=ORJSONResponse,
        dependencies=[Depends(auth.under_admin)],
    )
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    if limits.cors_origins:  # added last, so outermost: 401 and 413 answers carry CORS too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins(limits),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def title(item_id: str) -> str:
        item = engine.catalogue.get(item_id)
        return item.title if item is not None else ""

    async def _backend_down(_: Request, exc: Exception) -> ORJSONResponse:
        # Any endpoint that needs the store or the bus (items, features, trending, readyz):
        # recommendations degrade instead, and events answer their own 503.
        retry_after_s = exc.retry_after_s if isinstance(exc, Unavailable) else 1.0
        detail = (f"a backend is unreachable ({exc}): send the same request again after "
                  "Retry-After seconds (item writes are idempotent)")  # fmt: skip
        return unavailable(detail, retry_after_s=retry_after_s)

    for error in unavailable_errors():
        app.add_exception_handler(error, _backend_down)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> ORJSONResponse:
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return ORJSONResponse({"detail": errors}, status_code=422)

    @app.get("/v1/recommendations/{user_id}", dependencies=reads)
    def recommendations(
        user_id: str,
        n: int = Query(20, ge=1, le=200),
        explain: bool = False,
        exclude: str = Query("", max_length=20_000, description="Comma-separated item ids."),
    ) -> ORJSONResponse:
        if not user_id.strip() or len(user_id) > 128:
            return field_error(422, ["path", "user_id"], "user_id must be 1-128 characters")
        excluded = [i for i in exclude.split(",") if i]
        recs = engine.recommend(user_id, n=n, exclude=excluded, explain=explain)
        return ORJSONResponse(
            {
                "user_id": recs.user_id,
                "items": [_candidate_json(c, explain, title(c.item_id)) for c in recs.items],
                "model_version": recs.model_version,
                "personalised": recs.personalised,
                "degraded": recs.degraded,
                "timings_ms": {k: round(v, 3) for k, v in recs.timings_ms.items()},
            }
        )

    @app.post("/v1/events", status_code=202, dependencies=writes)
    def post_events(batch: EventBatch) -> ORJSONResponse:
        if len(batch.events) > limits.max_events_per_batch:
            return field_error(
                422, ["body", "events"],
                f"at most {limits.max_events_per_batch} events per batch; got "
                f"{len(batch.events)}: split the batch",
            )  # fmt: skip
        for i, e in enumerate(batch.events):
            if e.item_id not in engine.catalogue:
                return field_error(
                    422, ["body", "events", i, "item_id"],
                    f"unknown item {e.item_id!r}: create it with POST /v1/items first",
                )  # fmt: skip
        events = [
            Event(
                event_id=e.event_id or uuid.uuid4().hex,
                user_id=e.user_id,
                item_id=e.item_id,
                type=e.type,
                ts=_epoch(e.ts),
                watch_seconds=e.watch_seconds,
                context=e.context,
                ts_given=e.ts is not None,
            )
            for e in batch.events
        ]
        try:
            accepted = engine.ingest(events)
        except OverflowError as err:
            return unavailable(str(err), retry_after_s=1.0)
        except BusUnavailable as err:  # never a silent drop: the client sends the batch again
            detail = ("the event bus is unreachable and the batch was not accepted: send it "
                      "again after Retry-After seconds, with the same event_id values")  # fmt: skip
            return unavailable(detail, retry_after_s=err.retry_after_s)
        return ORJSONResponse({"accepted": accepted}, status_code=202)

    @app.post("/v1/items", status_code=201, dependencies=writes)
    def post_item(body: ItemIn) -> ORJSONResponse:
        if len(body.description) > limits.max_text_chars:
            return field_error(
                422, ["body", "description"],
                f"description is {len(body.description)} characters; at most "
                f"{limits.max_text_chars} are accepted",
            )  # fmt: skip
        item = Item(
            item_id=body.item_id,
            title=body.title,
            description=body.description,
            tags=tuple(body.tags),
            genres=tuple(g.lower() for g in body.genres),
            creator_id=body.creator_id,
            created_at=_epoch(body.created_at),
            sponsored=body.sponsored,
        )
        replaced = item.item_id in engine.catalogue
        seconds = engine.put_items([item])
        return ORJSONResponse(
            {"item": _item_json(item), "replaced": replaced, "indexed_ms": round(seconds * 1e3, 3)},
            status_code=200 if replaced else 201,
        )

    @app.get("/v1/items/{item_id}", dependencies=reads)
    def get_item(item_id: str) -> ORJSONResponse:
        item = engine.catalogue.get(item_id)
        if item is None:
            return field_error(404, ["path", "item_id"], f"no item {item_id!r}")
        return ORJSONResponse(_item_json(item))

    @app.delete("/v1/items/{item_id}", dependencies=writes)
    def delete_item(item_id: str) -> Response:
        if not engine.delete_item(item_id):
            return field_error(404, ["path", "item_id"], f"no item {item_id!r}")
        return Response(status_code=204)

    @app.get("/v1/items/{item_id}/similar", dependencies=reads)
    def similar(item_id: str, n: int = Query(10, ge=1, le=200)) -> ORJSONResponse:
        found = engine.similar(item_id, n=n)
        if found is None:
            return field_error(404, ["path", "item_id"], f"no item {item_id!r}")
        return ORJSONResponse(
            {
                "item_id": item_id,
                "items": [_candidate_json(c, False, title(c.item_id)) for c in found],
            }
        )

    @app.get("/v1/trending", dependencies=reads)
    def trending(n: int = Query(20, ge=1, le=200)) -> ORJSONResponse:
        top = [(engine.catalogue.get(i), score) for i, score in engine.store.top_trending(n)]
        items = [
            {"item_id": it.item_id, "title": it.title, "genre": it.genre,
             "creator_id": it.creator_id, "score": round(score, 6)}
            for it, score in top
            if it is not None
        ]  # fmt: skip
        return ORJSONResponse({"items": items})

    @app.get("/v1/users/{user_id}/features", dependencies=reads)
    def user_features(user_id: str) -> ORJSONResponse:
        return ORJSONResponse(engine.user_features(user_id))

    @app.post("/admin/models/reload")
    def reload_models(body: ReloadIn | None = None) -> ORJSONResponse:
        root = engine.settings.data.home / "models"
        version_dir = None
        if body is not None and body.version is not None:
            if "/" in body.version or "\\" in body.version or body.version.startswith("."):
                return field_error(422, ["body", "version"], "a version is a folder name")
            version_dir = root / body.version
            if not version_dir.is_dir():
                return field_error(404, ["body", "version"], f"no model version {body.version!r}")
        previous = engine.models.version
        try:
            version = engine.reload_models(version_dir)
        except ValueError as err:
            return field_error(422, ["body", "version"], str(err))
        return ORJSONResponse({"model_version": version, "previous_version": previous})

    @app.get("/healthz")
    def healthz() -> ORJSONResponse:
        return ORJSONResponse({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> ORJSONResponse:
        processing = engine.processor.running or not engine.process_events  # tier: workers do
        ready = processing and len(engine.catalogue) > 0
        body = {
            "ready": ready,
            "pid": os.getpid(),  # which API process answered (server tier: --workers N)
            "items": len(engine.catalogue),
            "model_version": engine.models.version,
            "event_lag": engine.bus.lag(engine.processor.group),
        }
        return ORJSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    def homepage() -> HTMLResponse:
        return _page("index.html")

    @app.get("/dashboard", response_class=HTMLResponse)
    def dashboard() -> HTMLResponse:
        return _page("dashboard.html")

    return app
