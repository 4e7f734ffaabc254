"""Builds a running engine from a World: encode content, train both models, index, replay.

    world -> content vectors -> two-tower -> HNSW index -> replay log (+ ranker rows)
          -> DCN-v2 -> ONNX -> registry version -> Engine

This is what `recomatrix demo`/`serve` run at start-up and what `recomatrix train` saves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from recomatrix.config import Settings
from recomatrix.content import open_encoder
from recomatrix.content.base import ContentEncoder
from recomatrix.data.world import World
from recomatrix.engine import Engine, Models
from recomatrix.events import open_bus
from recomatrix.features import MemoryOnlineStore
from recomatrix.features.offline import ParquetLog
from recomatrix.ranking import OnnxScorer
from recomatrix.ranking.features import FEATURE_NAMES
from recomatrix.ranking.train import train_ranker
from recomatrix.retrieval import Catalogue, ExactIndex, TieredIndex, main_index_of
from recomatrix.stream.processor import StreamProcessor
from recomatrix.training.ranker_data import replay_with_rows
from recomatrix.training.registry import new_version_dir, write_metadata
from recomatrix.training.two_tower import TwoTowerModel, train_two_tower
from recomatrix.types import Event, Item

log = logging.getLogger(__name__)

# progress(step_name, done, total): the CLI draws a bar from it.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What the build made, for the demo's one-line summary."""

    items: int
    users: int
    events: int
    ranker_rows: int
    model_version: str
    seconds: dict[str, float]
    metrics: dict[str, float]


class ItemEmbedder:
    """New item -> retrieval vector from content alone: text encoder, then the item tower."""

    def __init__(self, *, encoder: ContentEncoder, tower: TwoTowerModel, genres: Sequence[str]):
        self.encoder, self.tower = encoder, tower
        self.genre_index = {g: i for i, g in enumerate(genres)}

    def __call__(self, items: Sequence[Item]) -> np.ndarray:
        content = self.encoder.encode([item.text() for item in items])
        genre = np.array([self.genre_index.get(item.genre, -1) for item in items], dtype=np.int64)
        return self.tower.content_vectors(content, genre)


def build_engine(
    world: World, settings: Settings, *, progress: Progress | None = None
) -> tuple[Engine, BuildReport]:
    """Train on the whole log of `world` and return a started engine holding its state."""
    seconds: dict[str, float] = {}
    report = progress or (lambda step, done, total: None)

    @contextmanager
    def timed(step: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        seconds[step] = round(time.perf_counter() - started, 2)
        log.info("%s took %.1f s", step, seconds[step])

    home = settings.data.home
    items = world.all_items
    item_index = {item.item_id: i for i, item in enumerate(items)}
    with timed("encode"):
        encoder = open_encoder(settings.data.encoder, cache_dir=home / "cache" / "content")
        content = _encode(encoder, items, lambda d, t: report("encode item text", d, t))
    with timed("two_tower"):
        tower = _train_tower(world, items, item_index, content, settings, report)
    with timed("index"):
        catalogue, index, fresh = _build_indexes(items, tower.item_vectors(), settings)
    store = MemoryOnlineStore()
    bus = open_bus("memory://")
    processor = StreamProcessor(
        bus=bus, store=store, item_vector=catalogue.vector, settings=settings.stream
    )
    with timed("replay"):
        store.copy_on_write = False  # nobody reads during the replay: mutate in place
        rows = replay_with_rows(
            world.events,
            processor=processor,
            store=store,
            catalogue=catalogue,
            user_vector=tower.user_vector_from_item_vectors,
            half_life_s=settings.stream.session_half_life_s,
            session_weight=settings.retrieval.session_weight,
            seed=settings.data.seed,
            sample_rate=settings.training.ranker_sample_rate,
            use_impressions=settings.training.ranker_rows == "impressions",
            progress=lambda d, t: report("replay event log", d, t),
        )
        store.copy_on_write = True
        _set_long_term_vectors(store, world.users, tower, catalogue)
    version_dir = new_version_dir(home / "models")
    with timed("ranker"):
        trained = train_ranker(
            rows.X, rows.y, feature_names=FEATURE_NAMES, seed=settings.data.seed,
            epochs=settings.training.ranker_epochs,
            # ~100 optimiser steps per epoch whatever the data size: a small world with
            # batches of 1,024 would stop after a dozen steps, barely past initialisation.
            batch_size=int(np.clip(len(rows) // 100, 64, 1024)),
            progress=lambda d, t: report("train DCN-v2 ranker", d, t),
        )  # fmt: skip
        trained.save(version_dir / "ranker")
        tower.save(version_dir / "two_tower")
        write_metadata(version_dir, settings=settings, events=world.events,
                       two_tower_metrics=tower.metrics, ranker_metrics=trained.metrics)  # fmt: skip
        scorer = OnnxScorer(
            model_path=version_dir / "ranker" / "model.onnx",
            feature_names=FEATURE_NAMES,
            version=version_dir.name,
        )
    models = Models(
        version=version_dir.name,
        ranker=scorer,
        embed_items=ItemEmbedder(encoder=encoder, tower=tower, genres=world.genres),
        embed_user=tower.user_vector_from_item_vectors,
    )
    # Load the text model now (cached vectors may have spared it so far), so the first
    # POST /v1/items does not pay seconds of model loading.
    encoder.encode(["warm-up: load the content encoder before serving"])
    engine = Engine(
        settings=settings,
        catalogue=catalogue,
        index=index,
        fresh=fresh,
        store=store,
        bus=bus,
        models=models,
        popular=_popular(world.events, catalogue, since=world.end_ts - 86400.0),
        offline=ParquetLog(root=home / "offline"),
    )
    engine.start()
    return engine, BuildReport(
        items=len(catalogue),
        users=len(world.users),
        events=len(world.events),
        ranker_rows=len(rows),
        model_version=models.version,
        seconds=seconds,
        metrics={**tower.metrics, **trained.metrics},
    )


def _encode(
    encoder: ContentEncoder, items: Sequence[Item], progress: Callable[[int, int], None]
) -> np.ndarray:
    texts = [item.text() for item in items]
    chunks = []
    for start in range(0, len(texts), 2048):
        chunks.append(encoder.encode(texts[start : start + 2048]))
        progress(min(start + 2048, len(texts)), len(texts))
    return np.vstack(chunks)


def _train_tower(
    world: World,
    items: Sequence[Item],
    item_index: dict[str, int],
    content: np.ndarray,
    settings: Settings,
    report: Progress,
) -> TwoTowerModel:
    positives = [e for e in world.events if e.type in ("click", "like", "complete")]
    user_index = {u: i for i, u in enumerate(world.users)}
    genre_index = {g: i for i, g in enumerate(world.genres)}
    return train_two_tower(
        item_content=content,
        item_genre=np.array([genre_index.get(it.genre, -1) for it in items], dtype=np.int64),
        n_genres=len(world.genres),
        user_idx=np.array([user_index[e.user_id] for e in positives], dtype=np.int64),
        item_idx=np.array([item_index[e.item_id] for e in positives], dtype=np.int64),
        ts=np.array([e.ts for e in positives], dtype=np.float64),
        dim=settings.retrieval.dim,
        epochs=settings.training.two_tower_epochs,
        patience=settings.training.two_tower_patience or None,
        num_threads=settings.training.two_tower_threads,
        seed=settings.data.seed,
        progress=lambda d, t: report("train two-tower", d, t),
    )


def _build_indexes(
    items: Sequence[Item], vectors: np.ndarray, settings: Settings
) -> tuple[Catalogue, TieredIndex, ExactIndex]:
    retrieval = settings.retrieval
    catalogue = Catalogue(ndim=retrieval.dim, capacity=len(items) + 1024)
    keys = catalogue.put(items, vectors)
    main = main_index_of(retrieval)
    main.add(keys, vectors)
    fresh = ExactIndex(ndim=retrieval.dim, capacity=retrieval.fresh_pool)
    newest = np.argsort([item.created_at for item in items])[-retrieval.fresh_pool :]
    fresh.add(keys[newest], vectors[newest])
    return catalogue, TieredIndex(main=main, compact_at=retrieval.compact_at), fresh


def _set_long_term_vectors(
    store: MemoryOnlineStore, users: Sequence[str], tower: TwoTowerModel, catalogue: Catalogue
) -> None:
    states = [s for s in store.get_users(users) if s is not None and s.history]
    for state in states:
        state.long_term = tower.user_vector_from_item_vectors(catalogue.vectors(state.history))
    store.put_users(states)


def _popular(events: Sequence[Event], catalogue: Catalogue, *, since: float) -> list[str]:
    """Items with the most engagement in the last day of the log (all time as tie-break)."""
    recent: dict[str, int] = {}
    total: dict[str, int] = {}
    for e in events:
        if e.type in ("click", "like", "complete"):
            total[e.item_id] = total.get(e.item_id, 0) + 1
            if e.ts >= since:
                recent[e.item_id] = recent.get(e.item_id, 0) + 1
    ranked = sorted(total, key=lambda i: (recent.get(i, 0), total[i]), reverse=True)
    return [i for i in ranked if i in catalogue][:1000]


__all__ = ["BuildReport", "ItemEmbedder", "Progress", "build_engine"]
