"""A serving engine over a scale world: the production request path, synthetic models.

Everything on the request path is the real component (usearch HNSW + delta + fresh pool,
MemoryOnlineStore with live windows, the 25 ranker features, DCN-v2 on ONNX Runtime, the
rules). What is synthetic is where the numbers come from: item vectors are the world's
(no two-tower training over a million items), the DCN-v2 is trained on synthetic rows of
the production shape (cost, not quality, is measured here), and a new item is placed by
its genre's cluster centre plus a hashing of its text (standing in for the item tower).

The ranker is trained in a child process: the serving process never imports torch, as a
production API process would not, so its memory is what serving costs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recomatrix.config import Settings
from recomatrix.content.hashing import HashingEncoder
from recomatrix.data.catalogue import GENRES
from recomatrix.data.scale import CLUSTERS, ScaleWorld, live_events
from recomatrix.engine import Engine, Models
from recomatrix.events import open_bus
from recomatrix.features import MemoryOnlineStore, UserProfiles
from recomatrix.ranking import OnnxScorer
from recomatrix.ranking.features import FEATURE_NAMES
from recomatrix.retrieval import Catalogue, ExactIndex, TieredIndex, main_index_of, normalise
from recomatrix.retrieval.main_index import FILE_SUFFIX
from recomatrix.types import Item

_TRAIN = (
    "import sys; from pathlib import Path; "
    "from recomatrix.bench.scale_engine import train_synthetic_ranker; "
    "train_synthetic_ranker(Path(sys.argv[1]))"
)


@dataclass(frozen=True, slots=True)
class ScaleBuild:
    engine: Engine
    seconds: dict[str, float]  # build step -> seconds
    live_events: int


class GenreCentreEmbedder:
    """New item -> its genre's first cluster centre, nudged by a hashing of its text."""

    def __init__(self, centres: np.ndarray) -> None:
        self.centres = centres
        self.encoder = HashingEncoder(dim=centres.shape[1])
        # Cluster c holds genre c % len(GENRES): a genre's first cluster is its index.
        self.genre_cluster = {g: c for c, g in enumerate(GENRES) if c < CLUSTERS}

    def __call__(self, items: Sequence[Item]) -> np.ndarray:
        base = self.centres[[self.genre_cluster.get(it.genre, 0) for it in items]]
        return normalise(base + 0.3 * self.encoder.encode([it.text() for it in items]))


def mean_of_history(history_vectors: np.ndarray) -> np.ndarray:
    """A user vector for a user newer than the profiles: the mean of their items."""
    vector: np.ndarray = normalise(history_vectors.mean(axis=0, keepdims=True))[0]
    return vector


def train_synthetic_ranker(directory: Path, *, rows: int = 60_000, seed: int = 3) -> None:
    """Train and export a DCN-v2 on synthetic rows of the serving shape (child process)."""
    from recomatrix.ranking.train import train_ranker

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, len(FEATURE_NAMES))).astype(np.float32)
    logit = 1.5 * X[:, 0] + 0.8 * X[:, 5] * X[:, 10] - 0.5 * X[:, 12] - 1.0
    click = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    complete = click & (rng.random(rows) < 1.0 / (1.0 + np.exp(-(X[:, 1] - X[:, 11]))))
    y = np.stack([click, complete], axis=1).astype(np.float32)
    trained = train_ranker(X, y, feature_names=FEATURE_NAMES, epochs=2, batch_size=512)
    trained.save(directory)


def cached_index_path(world: ScaleWorld, settings: Settings, folder: Path) -> Path:
    """Where the main index of this exact world (size, seed, dimension, graph degree) is
    saved in an index cache folder."""
    retrieval = settings.retrieval
    name = (f"scale-{world.n_items}-{world.seed}-{retrieval.dim}-m{retrieval.hnsw_connectivity}"
            f"-{retrieval.hnsw_dtype}")  # fmt: skip
    return folder / f"{name}{FILE_SUFFIX[retrieval.main_index]}"


def build_scale_engine(
    world: ScaleWorld,
    settings: Settings,
    *,
    home: Path,
    n_live_events: int = 200_000,
    active_users: int = 50_000,
    index_threads: int = 2,
    index_cache: Path | None = None,
) -> ScaleBuild:
    """Index the world, load the user profiles, replay a live stream, start the engine.

    With `index_cache`, the main index of this exact world (size, seed, dimension, graph
    degree) is loaded from that folder when saved there before, and saved after a build.
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    ranker_dir = home / "models" / "scale-ranker"
    child = subprocess.Popen(  # trains while this process indexes
        [sys.executable, "-c", _TRAIN, str(ranker_dir)], stdout=subprocess.DEVNULL
    )

    dim = settings.retrieval.dim
    catalogue = Catalogue(ndim=dim, capacity=world.n_items + 4096)
    columns = world.item_columns()
    keys = catalogue.load(columns, world.item_vectors)
    item_ids = columns.item_ids
    del columns  # the catalogue keeps the ids, not the rest
    seconds["catalogue"] = time.perf_counter() - started

    mark = time.perf_counter()
    retrieval = settings.retrieval
    cached = None if index_cache is None else cached_index_path(world, settings, index_cache)
    if cached is not None and cached.exists():
        main = main_index_of(retrieval, threads=index_threads, path=cached)
        seconds["index_loaded"] = time.perf_counter() - mark
    else:
        main = main_index_of(retrieval, threads=index_threads)
        main.add(keys, world.item_vectors)
        seconds["index"] = time.perf_counter() - mark
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            main.save(cached)
    fresh = ExactIndex(ndim=dim, capacity=settings.retrieval.fresh_pool)
    newest = np.argsort(world.item_created_at, kind="stable")[-settings.retrieval.fresh_pool :]
    fresh.add(keys[newest], world.item_vectors[newest])

    mark = time.perf_counter()
    profiles = UserProfiles(
        user_ids=[world.user_id(u) for u in range(world.n_users)],
        vectors=world.user_vectors,
        indptr=world.history_indptr,
        history=world.history_items,
        item_ids=item_ids,
    )
    store = MemoryOnlineStore(profiles=profiles)
    seconds["profiles"] = time.perf_counter() - mark

    if child.wait() != 0:
        raise RuntimeError(f"training the benchmark ranker failed (exit {child.returncode})")
    models = Models(
        version="scale-bench",
        ranker=OnnxScorer(
            model_path=ranker_dir / "model.onnx", feature_names=FEATURE_NAMES, version="scale"
        ),
        embed_items=GenreCentreEmbedder(world.cluster_centres),
        embed_user=mean_of_history,
    )
    popular = np.argsort(-world.item_popularity)[:1000]
    engine = Engine(
        settings=settings,
        catalogue=catalogue,
        index=TieredIndex(main=main, compact_at=settings.retrieval.compact_at),
        fresh=fresh,
        store=store,
        bus=open_bus("memory://"),
        models=models,
        popular=[item_ids[i] for i in popular],
    )
    mark = time.perf_counter()
    events = live_events(world, n_events=n_live_events, active_users=active_users)
    store.copy_on_write = False  # nobody reads yet
    for start in range(0, len(events), 5000):
        engine.processor.apply(events[start : start + 5000], copy_on_write=False)
    store.copy_on_write = True
    seconds["live_replay"] = time.perf_counter() - mark
    engine.start()
    seconds["total"] = time.perf_counter() - started
    return ScaleBuild(engine, {k: round(v, 2) for k, v in seconds.items()}, len(events))


__all__ = [
    "GenreCentreEmbedder",
    "ScaleBuild",
    "build_scale_engine",
    "cached_index_path",
    "train_synthetic_ranker",
]
