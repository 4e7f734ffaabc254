"""The engine: the request path stage by stage, plus the write paths for events and items.

    features -> retrieval -> enrich -> ranking -> rules

Each stage is one batch call into its component and is timed. Components are built by
`recomatrix.bootstrap`; the engine only wires them together.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recomatrix import metrics
from recomatrix.config import Settings
from recomatrix.degrade import Fallback
from recomatrix.events.base import EventBus
from recomatrix.features.base import OnlineStore
from recomatrix.features.offline import Impression, ParquetLog
from recomatrix.features.state import UserState
from recomatrix.ranking.base import Ranker
from recomatrix.ranking.features import UserView, build_features
from recomatrix.retrieval import CandidateSources, Catalogue, ExactIndex, TieredIndex, normalise
from recomatrix.retrieval.query import query_vector
from recomatrix.rules import apply_rules
from recomatrix.stream.processor import StreamProcessor
from recomatrix.types import Candidate, Event, Item, ItemId, RuleContext, UserId

ItemEmbedder = Callable[[Sequence[Item]], np.ndarray]
UserEmbedder = Callable[[np.ndarray], np.ndarray]  # history item vectors -> user vector
ItemsPut = Callable[[Sequence[Item], np.ndarray], None]  # items and their unit vectors


@dataclass(frozen=True, slots=True)
class Models:
    """What one trained model version brings: ranker, item tower (new items), user tower."""

    version: str
    ranker: Ranker
    embed_items: ItemEmbedder
    embed_user: UserEmbedder


@dataclass(frozen=True, slots=True)
class Recommendations:
    user_id: UserId
    items: list[Candidate]
    model_version: str
    timings_ms: dict[str, float]
    personalised: bool
    degraded: bool = False  # the online store was unreachable: served from last-known state


@dataclass(slots=True)
class _Clock:
    marks: dict[str, float] = field(default_factory=dict)
    last: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.marks[stage] = now - self.last
        self.last = now


class Engine:
    """recomatrix without HTTP: recommend, ingest events, publish and delete items."""

    def __init__(
        self,
        *,
        settings: Settings,
        catalogue: Catalogue,
        index: TieredIndex,
        fresh: ExactIndex,
        store: OnlineStore,
        bus: EventBus,
        models: Models,
        popular: Sequence[ItemId],
        offline: ParquetLog | None = None,
        process_events: bool = True,
    ) -> None:
        self.settings = settings
        # False in the server tier's API processes: `recomatrix worker` applies the events.
        self.process_events = process_events
        # Told of every item change before it applies here, so the server tier can broadcast
        # it to the other API processes; an exception refuses the change.
        self.on_items_put: list[ItemsPut] = []
        self.on_item_deleted: list[Callable[[ItemId], None]] = []
        self.catalogue, self.index, self.fresh = catalogue, index, fresh
        self.store, self.bus, self.models, self.offline = store, bus, models, offline
        self.sources = CandidateSources(
            catalogue=catalogue,
            index=index,
            fresh=fresh,
            store=store,
            popular=popular,
            sizes=settings.retrieval.sizes,
        )
        self.processor = StreamProcessor(
            bus=bus,
            store=store,
            item_vector=catalogue.vector,
            offline_sink=offline.append_events if offline else None,
            settings=settings.stream,
        )
        self._backfill: tuple[Candidate, ...] | None = None  # popular items, as candidates
        self._accepted_at: dict[str, float] = {}
        self._accepted_lock = threading.Lock()
        self.processor.on_applied.append(self._observe_applied)
        metrics.MODEL_INFO.labels(version=models.version).set(1)

    # -- read path ---------------------------------------------------------------------

    def recommend(
        self,
        user_id: UserId,
        *,
        n: int = 20,
        exclude: Sequence[ItemId] = (),
        explain: bool = False,
        now: float | None = None,
    ) -> Recommendations:
        """The top `n` items for `user_id` now, with the source and score of each.

        While the online store is unreachable this still answers, `degraded`: from the
        user's state as of their last request here, the last trending list seen, and no
        live item counters.
        """
        now = time.time() if now is None else now
        models = self.models  # one version for the whole request, even during a reload
        clock = _Clock()
        reads = self._fallback.reads()

        user = reads.get_users([user_id])[0]
        session, long_term = self._user_vectors(user, models, now)
        query = query_vector(
            long_term, session, session_weight=self.settings.retrieval.session_weight
        )
        clock.lap("features")

        candidates = self._sources_reading(reads).retrieve(query)
        clock.lap("retrieval")

        states = reads.get_items([c.item_id for c in candidates])
        recent = user.recent_items[:20] if user else []
        view = UserView.of(
            user, now=now, query=query, session=session, long_term=long_term,
            recent_genres=self.catalogue.primary_genres(recent),
        )  # fmt: skip
        vectors = self.catalogue.vectors_at(np.fromiter((c.key for c in candidates), np.int64))
        features = build_features(view, candidates, states, vectors, now=now)
        clock.lap("enrich")

        scores = models.ranker.score(features)
        for row, candidate in enumerate(candidates):
            # Expected engagement: a click, worth more when the item is likely finished.
            candidate.score = float(scores.click[row] * (1.0 + scores.complete[row]))
            if explain:
                candidate.explain = {
                    "p_click": float(scores.click[row]),
                    "p_complete": float(scores.complete[row]),
                    "retrieval_similarity": float(candidate.retrieval_score),
                    **{
                        name: float(v)
                        for name, v in zip(models.ranker.feature_names, features[row], strict=True)
                    },
                }
        order = sorted(range(len(candidates)), key=lambda r: -candidates[r].score)
        ranked = [candidates[r] for r in order]
        clock.lap("ranking")

        final = apply_rules(self._rule_context(user_id, user, n, exclude, now), ranked)
        clock.lap("rules")

        timings = {stage: seconds * 1000.0 for stage, seconds in clock.marks.items()}
        timings["total"] = sum(timings.values())
        for stage, seconds in clock.marks.items():
            metrics.STAGE_SECONDS.labels(stage=stage).observe(seconds)
        metrics.STAGE_SECONDS.labels(stage="total").observe(timings["total"] / 1000.0)
        metrics.RECOMMENDATIONS.inc()
        if self.offline is not None:
            rows = {c.item_id: features[order[i]] for i, c in enumerate(ranked)}
            self._log_impressions(user_id, final, rows, models, now)
        return Recommendations(
            user_id, final, models.version, timings, query is not None, reads.degraded
        )

    @functools.cached_property
    def _fallback(self) -> Fallback:
        """This engine's outage state (breakers, last-known reads), made on first use."""
        return Fallback(self.store)

    def _sources_reading(self, reads: OnlineStore) -> CandidateSources:
        """The candidate sources reading the store (trending) through one request's view."""
        sources = copy.copy(self.sources)  # shallow: shares the indexes and the popular list
        sources.store = reads
        return sources

    def _user_vectors(
        self, user: UserState | None, models: Models, now: float
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(session vector decayed to now, long-term vector) of a user, None where unknown."""
        if user is None:
            return None, None
        session = user.session.at(now, half_life_s=self.settings.stream.session_half_life_s)
        long_term = user.long_term
        if long_term is None and user.history:  # a user newer than the last training
            long_term = models.embed_user(self.catalogue.vectors(user.history))
        return session, long_term

    def _rule_context(
        self, user_id: UserId, user: UserState | None, n: int, exclude: Sequence[ItemId], now: float
    ) -> RuleContext:
        rules = self.settings.rules
        backfill = self._backfill
        if backfill is None:  # rebuilt after the catalogue changes
            popular = self.sources.popular[: 3 * self.settings.retrieval.sizes.popular]
            backfill = self._backfill = tuple(self.catalogue.candidates_of(popular, "popular"))
        return RuleContext(
            user_id=user_id,
            now=now,
            n=n,
            watched=dict(user.watched) if user else {},
            exclude=frozenset(exclude) | self._recently_skipped(user, now),
            backfill=backfill,
            watched_window_s=rules.watched_window_hours * 3600.0,
            max_adjacent_same_genre=rules.max_adjacent_same_genre,
            max_per_creator=rules.max_per_creator,
            sponsored_positions=rules.sponsored_positions,
            fresh_window_s=rules.fresh_window_hours * 3600.0,
            fresh_positions=rules.fresh_positions,
            min_fresh_similarity=rules.min_fresh_similarity,
        )

    def _recently_skipped(self, user: UserState | None, now: float) -> frozenset[ItemId]:
        if user is None:
            return frozenset()
        window = self.settings.rules.skipped_window_hours * 3600.0
        return frozenset(i for i, ts in user.skipped.items() if now - ts < window)

    def _log_impressions(
        self, user_id: UserId, served: list[Candidate], rows: dict[ItemId, np.ndarray],
        models: Models, now: float,
    ) -> None:  # fmt: skip
        assert self.offline is not None
        request_id = uuid.uuid4().hex
        version, width = models.version, len(models.ranker.feature_names)  # the request's own
        self.offline.append_impressions(
            [
                Impression(request_id, user_id, c.item_id, pos, c.source, c.score, version, now,
                           rows.get(c.item_id, np.zeros(width, dtype=np.float32)).tolist())
                for pos, c in enumerate(served)
            ]
        )  # fmt: skip

    # -- write paths -------------------------------------------------------------------

    def ingest(self, events: Sequence[Event]) -> int:
        """Put events on the bus (all or none); the stream processor applies them.

        `BusUnavailable` when the bus cannot be reached (the caller retries the batch),
        `OverflowError` when it is full; the batch was not accepted in either case.
        """
        now = time.monotonic()
        if self.process_events:  # only this process's processor ever pops these (lag metric)
            with self._accepted_lock:
                for event in events:
                    self._accepted_at[event.event_id] = now
        try:
            self._fallback.bus_breaker.call(lambda: self.bus.publish(events))
        except Exception:
            with self._accepted_lock:  # never applied: no lag to observe
                for event in events:
                    self._accepted_at.pop(event.event_id, None)
            raise
        metrics.EVENTS_ACCEPTED.inc(len(events))
        return len(events)

    def _observe_applied(self, events: Sequence[Event]) -> None:
        now = time.monotonic()
        metrics.EVENTS_APPLIED.inc(len(events))
        with self._accepted_lock:
            for event in events:
                accepted = self._accepted_at.pop(event.event_id, None)
                if accepted is not None:
                    metrics.EVENT_LAG_SECONDS.observe(now - accepted)

    def put_items(
        self, items: Sequence[Item], *, vectors: np.ndarray | None = None, notify: bool = True
    ) -> float:
        """Create or replace items: embedded from content and searchable on return.

        `vectors`: already embedded (an item change broadcast by another process);
        `notify=False` does not tell `on_items_put`. Returns the seconds it took until the
        items were searchable.
        """
        started = time.perf_counter()
        vectors = normalise(self.models.embed_items(items) if vectors is None else vectors)
        for listener in self.on_items_put if notify else ():
            listener(items, vectors)
        keys = self.catalogue.put(items, vectors)
        self.index.add(keys, vectors)
        self.fresh.add(keys, vectors)
        self._backfill = None
        elapsed = time.perf_counter() - started
        metrics.ITEMS_INDEXED_SECONDS.observe(elapsed)
        self._update_index_gauges()
        return elapsed

    def delete_item(self, item_id: ItemId, *, notify: bool = True) -> bool:
        """Remove an item from the catalogue and every candidate source; False if unknown."""
        if item_id not in self.catalogue:
            return False
        for listener in self.on_item_deleted if notify else ():
            listener(item_id)
        key = self.catalogue.delete(item_id)
        if key is None:
            return False
        keys = np.array([key], dtype=np.int64)
        self.index.remove(keys)
        self.fresh.remove(keys)
        self.store.delete_items([item_id])
        self._backfill = None
        self._update_index_gauges()
        return True

    def similar(self, item_id: ItemId, *, n: int = 10) -> list[Candidate] | None:
        """Items nearest to `item_id` in the retrieval space; None for an unknown item."""
        vector = self.catalogue.vector(item_id)
        if vector is None:
            return None
        keys, similarities = self.index.search(vector, n + 1).columns(0)
        out = [c for c in self.catalogue.candidates(keys, similarities, "similar")
               if c.item_id != item_id]  # fmt: skip
        for candidate in out:
            candidate.score = candidate.retrieval_score
        return out[:n]

    def user_features(self, user_id: UserId, *, now: float | None = None) -> dict[str, object]:
        """What the engine knows about a user now (the /features debugging view)."""
        now = time.time() if now is None else now
        user = self.store.get_users([user_id])[0]
        if user is None:
            user = UserState(user_id)
        session = user.session.at(now, half_life_s=self.settings.stream.session_half_life_s)
        return {
            "user_id": user_id,
            "known": user.last_ts > 0 or user.long_term is not None,
            "windows": user.windows.all(now=now),
            "recent_items": list(user.recent_items),
            "watched": dict(user.watched),
            "skipped": dict(user.skipped),
            "session_vector_norm": 0.0 if session is None else float(np.linalg.norm(session)),
            "has_long_term_vector": user.long_term is not None,
        }

    def swap_models(self, models: Models) -> None:
        """Serve a new model version from the next request on; in-flight ones finish on the old."""
        self.models = models
        metrics.MODEL_INFO.clear()
        metrics.MODEL_INFO.labels(version=models.version).set(1)

    def reload_models(self, version_dir: Path | None = None) -> str:
        """Serve a saved version's ranker (default: the newest complete version) from the
        next request on; requests in flight finish on the models they started with.

        The retrieval towers stay those the index was built with: the catalogue's vectors
        and users' long-term vectors live in that tower's space, and a new tower's vectors
        would not be comparable until everything is re-embedded and re-indexed (a restart
        or `recomatrix train` + `serve`). Returns the version now served; ValueError for an
        unknown or incomplete version, and the served models are then unchanged.
        """
        # Imported here: the registry loads torch, which answering requests never needs.
        from recomatrix.training import registry

        root = self.settings.data.home / "models"
        chosen = version_dir if version_dir is not None else registry.latest_version_dir(root)
        if chosen is None:
            raise ValueError(f"no complete model version under {root}: run `recomatrix train`")
        encoder, genres = registry.embedder_inputs(self.models)
        loaded = registry.load_models(chosen, encoder=encoder, genres=genres)
        current = self.models
        self.swap_models(
            Models(loaded.version, loaded.ranker, current.embed_items, current.embed_user)
        )
        return loaded.version

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the background stream processor (unless `process_events` is False)."""
        if self.process_events:
            self.processor.start()
        self._update_index_gauges()

    def wait_idle(self, *, timeout_s: float = 5.0) -> bool:
        """Block until every ingested event is applied (tests, demos); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.bus.lag(self.processor.group) > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def close(self) -> None:
        self.processor.stop()
        if self.offline is not None:
            self.offline.close()

    def _update_index_gauges(self) -> None:
        metrics.INDEX_ITEMS.labels(part="main").set(len(self.index.main))
        metrics.INDEX_ITEMS.labels(part="delta").set(len(self.index.delta))
