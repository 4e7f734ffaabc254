"""One tree of frozen settings with defaults that run the embedded demo.

Values come from, in order of precedence: explicit overrides (CLI flags), environment
variables `RECOMATRIX_<SECTION>__<FIELD>` (e.g. `RECOMATRIX_RULES__MAX_PER_CREATOR=2`),
an optional TOML file with one table per section, then the defaults below. Unknown
sections or fields are an error, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recomatrix.retrieval.main_index import MAIN_INDEXES
from recomatrix.retrieval.sources import SourceSizes
from recomatrix.stream.settings import StreamSettings


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"  # bind address; loopback unless you mean to expose it
    port: int = 8000
    workers: int = 1  # API processes (the embedded tier runs one)
    max_body_bytes: int = 16 * 1024 * 1024  # larger request bodies get 413 before parsing
    max_events_per_batch: int = 10_000  # larger event batches get 422
    max_text_chars: int = 20_000  # longest accepted item description
    # Bearer keys for writes and /admin; RECOMATRIX_API_KEYS (comma-separated) adds more.
    # None at all: writes are open on a loopback host and refused (401) on any other.
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # never printed with settings
    protect_reads: bool = False  # reads (recommendations, items, features) need a key too
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API; () = no CORS


@dataclass(frozen=True, slots=True)
class RetrievalSettings:
    dim: int = 64  # dimension of the shared user/item vector space
    # The main HNSW index: "hnswlib" searches ~2.5x faster; "usearch" can be memory-mapped
    # (the Redis tier's API processes always view a usearch file) and offers i8 vectors.
    main_index: str = "hnswlib"
    # Vector precision in the usearch graph: f32 | f16 | i8 (i8: ~40 % less index memory,
    # recall@100 0.950 at ef 256 at 1M items). hnswlib keeps f32.
    hnsw_dtype: str = "f32"
    hnsw_connectivity: int = 16  # graph degree M: more = better recall, more memory
    hnsw_expansion_search: int = 96  # ef at query time: more = better recall, slower
    # Threads inserting into the graph (build, compaction). 1 gives the same graph for the
    # same data (threads insert in a racy order: 38 % of top-50 answers differed between
    # two 2-thread builds of 20k items), so evaluation reruns agree; 2 halves a 1M build.
    hnsw_build_threads: int = 1
    compact_at: int = 2_000  # delta size that triggers folding new items into HNSW
    fresh_pool: int = 5_000  # newest items searched exactly by the fresh source
    session_weight: float = 1.0  # weight of the live session vector in the query
    sizes: SourceSizes = field(default_factory=SourceSizes)

    def __post_init__(self) -> None:
        if self.main_index not in MAIN_INDEXES:
            raise ValueError(
                f"setting retrieval.main_index: {self.main_index!r} is not one of "
                f"{', '.join(MAIN_INDEXES)}"
            )
        if self.hnsw_dtype not in ("f32", "f16", "i8"):
            raise ValueError(f"setting retrieval.hnsw_dtype: {self.hnsw_dtype!r} is not one "
                             "of f32, f16, i8")  # fmt: skip
        if self.hnsw_dtype != "f32" and self.main_index != "usearch":
            raise ValueError(f"setting retrieval.hnsw_dtype = {self.hnsw_dtype!r} needs "
                             "retrieval.main_index = 'usearch' (hnswlib keeps f32)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class RulesSettings:
    watched_window_hours: float = 48.0  # a completed item is hidden this long
    skipped_window_hours: float = 24.0  # a skipped item is hidden this long
    max_adjacent_same_genre: int = 2
    max_per_creator: int = 3
    sponsored_positions: tuple[int, ...] = (2, 9)  # 0-based slots for sponsored items
    fresh_window_hours: float = 24.0  # items published this recently count as fresh
    fresh_positions: tuple[int, ...] = (4,)  # 0-based slots relevant fresh items move up to
    min_fresh_similarity: float = 0.5  # how well a fresh item must match the user's query


@dataclass(frozen=True, slots=True)
class DataSettings:
    dataset: str = "synthetic"  # synthetic | movielens
    n_items: int = 50_000  # synthetic world size
    n_users: int = 20_000
    n_events: int = 400_000
    encoder: str = "minilm"  # minilm (sentence embeddings) | hashing (tiny, for tests)
    home: Path = Path(".recomatrix")  # models, caches and the offline log live here
    seed: int = 7
    live_events_per_s: float = 50.0  # demo: rate of the simulated live stream (0 = off)


@dataclass(frozen=True, slots=True)
class TrainingSettings:
    two_tower_epochs: int = 30  # passes over the positives for the retrieval model (at most)
    # Stop after this many passes without a better held-out recall@50, then refit on all
    # positives for the best number of passes; 0 = always train `two_tower_epochs`. (The
    # best count differs by data: 1 on the synthetic world, 5 on MovieLens.)
    two_tower_patience: int = 2
    # Torch threads training the two-tower model. 1 trains the same weights every run (on
    # 2 threads runs differed by ~1e-6, enough to flip float16 item vectors and every
    # figure downstream: the same eval gave NDCG@10 0.0402 and 0.0425); 2 is faster alone.
    two_tower_threads: int = 1
    ranker_epochs: int = 3  # passes over the impression rows for DCN-v2
    ranker_sample_rate: float = 0.25  # share of logged impressions turned into ranker rows
    # Ranker rows: "sampled" (each interaction against uniformly sampled negatives) or
    # "impressions" (the log's impressions labelled by what followed; see ranker_data).
    ranker_rows: str = "sampled"

    def __post_init__(self) -> None:
        if self.ranker_rows not in ("sampled", "impressions"):
            raise ValueError(
                f"setting training.ranker_rows: {self.ranker_rows!r} is neither 'sampled' "
                "nor 'impressions'"
            )


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    rules: RulesSettings = field(default_factory=RulesSettings)
    data: DataSettings = field(default_factory=DataSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)


def load_settings(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Settings from a TOML file, `RECOMATRIX_<SECTION>__<FIELD>` env vars and overrides."""
    tree: dict[str, dict[str, Any]] = {}
    if path is not None:
        with path.open("rb") as fh:
            tree = {k: dict(v) for k, v in tomllib.load(fh).items()}
    for key, value in (os.environ if env is None else env).items():
        if key.startswith("RECOMATRIX_") and "__" in key:
            section, name = key.removeprefix("RECOMATRIX_").lower().split("__", 1)
            tree.setdefault(section, {})[name] = value
    for section, values in (overrides or {}).items():
        tree.setdefault(section, {}).update(values)
    settings: Settings = _build(Settings, tree, "settings")
    return settings


def _build(cls: type[Any], values: Mapping[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(
            f"unknown setting {where}.{sorted(unknown)[0]}; valid: {', '.join(sorted(fields))}"
        )
    kwargs: dict[str, Any] = {}
    default = cls()
    for name, value in values.items():
        current = getattr(default, name)
        if dataclasses.is_dataclass(current):
            kwargs[name] = _build(type(current), value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, current, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(value: Any, current: Any, where: str) -> Any:
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(current, tuple):
            items = value.split(",") if isinstance(value, str) else value
            return tuple(type(current[0])(v) if current else v for v in items if str(v).strip())
        if isinstance(current, Path):
            return Path(value)
        return type(current)(value)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"setting {where}: cannot read {value!r} as {type(current).__name__}"
        ) from err
