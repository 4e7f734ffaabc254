"""In-process measurements on a built engine: the request path stage by stage, and the
naive monolith (the whole catalogue through the ranker for one request)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence

import numpy as np

from recomatrix.bench.common import percentiles
from recomatrix.engine import Engine
from recomatrix.ranking.features import UserView, build_features
from recomatrix.retrieval.query import query_vector
from recomatrix.types import Event

STAGES = ("features", "retrieval", "enrich", "ranking", "rules")


def request_mix(
    engine: Engine, *, users: Sequence[str], items: Sequence[str], n: int, seed: int = 0,
    warmup: int = 200,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """`n` requests after `warmup`: 70 % known users, 15 % with a live session started just
    before (3 clicks, applied before the request), 15 % cold. Per-stage and total latency."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {}
    for r in range(warmup + n):
        kind = rng.random()
        if kind < 0.70:
            user = rng.choice(users)
        elif kind < 0.85:
            user = f"live-{seed}-{r}"
            now = time.time()
            engine.ingest(
                [Event(uuid.uuid4().hex, user, rng.choice(items), "click", now) for _ in range(3)]
            )
            engine.wait_idle(timeout_s=5)
        else:
            user = f"cold-{seed}-{r}"
        timings = engine.recommend(user, n=20).timings_ms
        if r >= warmup:
            for stage, ms in timings.items():
                samples.setdefault(stage, []).append(ms)
    return {stage: percentiles(values) for stage, values in samples.items()}


def monolith_ms(engine: Engine, user_id: str, *, n: int = 20, chunk: int = 65_536) -> float:
    """Milliseconds to rank every item in the catalogue for one user with the DCN-v2 (the
    same features and model as the two-stage path, without retrieval), then take the top n."""
    started = time.perf_counter()
    now = time.time()
    user = engine.store.get_users([user_id])[0]
    long_term = user.long_term if user is not None else None
    query = query_vector(long_term, None, session_weight=engine.settings.retrieval.session_weight)
    view = UserView.of(user, now=now, query=query, session=None, long_term=long_term,
                       recent_genres=[])  # fmt: skip
    items = engine.catalogue.items()
    best_scores = np.empty(0, dtype=np.float32)
    best_ids: list[str] = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        ids = [it.item_id for it in part]
        features = build_features(
            view, part, engine.store.get_items(ids), engine.catalogue.vectors(ids), now=now
        )
        scores = engine.models.ranker.score(features)
        score = scores.click * (1.0 + scores.complete)
        merged = np.concatenate([best_scores, score])
        keep = np.argsort(-merged)[:n]
        all_ids = best_ids + ids
        best_scores, best_ids = merged[keep], [all_ids[k] for k in keep]
    return (time.perf_counter() - started) * 1000
