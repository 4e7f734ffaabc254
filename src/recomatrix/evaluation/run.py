"""One evaluation run: split a World in time, fit every system on train, replay the test log.

world -> split -> baselines + recomatrix (built on train) -> replay -> EvalReport
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from recomatrix.bootstrap import Progress
from recomatrix.config import Settings
from recomatrix.data.world import World
from recomatrix.evaluation.als import ALS
from recomatrix.evaluation.baselines import ItemKNN, MostPopular, RandomItems, RecentPopular
from recomatrix.evaluation.protocol import ReplayResult, System, replay
from recomatrix.evaluation.split import POSITIVE_TYPES, Split, split_by_time
from recomatrix.evaluation.systems import build_recomatrix


@dataclass(frozen=True, kw_only=True, slots=True)
class EvalConfig:
    """What one run evaluates and how; recorded whole in the JSON report."""

    dataset: str  # the name the report gives the data
    k: int = 10  # length of each recommendation list scored
    test_fraction: float = 0.2  # the last share of the log replayed as test
    cold_start: bool = False  # hold items out of training entirely (see cold_start_share)
    cold_start_share: float = 0.1  # share of the items existing at the split held out
    sample_users: int | None = None  # score only this many users' targets (seeded)
    seed: int = 7
    trending_window_hours: float = 24.0  # RecentPopular's sliding window of event time
    # Evaluate on a validation slice instead: the last share of the log *before* the test
    # split becomes the replayed log, and the test log is never read (for tuning).
    validation_fraction: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EvalReport:
    """Everything a run measured, shaped for the JSON report by `as_json`."""

    config: EvalConfig
    split: Split
    result: ReplayResult
    settings: Settings
    timings: dict[str, float]  # seconds per phase
    seconds: float  # the whole run

    def as_json(self) -> dict[str, Any]:
        k, split, result = self.config.k, self.split, self.result
        cold: dict[str, Any] = {n: s.as_dict(k) for n, s in result.cold_summaries.items()}
        cold["random-expected"] = {f"hr@{k}": round(result.random_cold_hit_rate, 6)}
        return {
            "dataset": self.config.dataset,
            "protocol": {
                "split": "time: the last test_fraction of the log (by position) is the test log",
                "test_fraction": self.config.test_fraction,
                "validation_fraction": self.config.validation_fraction,
                "split_ts": split.split_ts,
                "split_utc": datetime.fromtimestamp(split.split_ts, UTC).isoformat(),
                "train_events": len(split.train.events),
                "test_events": result.test_events,
                "targets": result.targets,
                "target_types": sorted(POSITIVE_TYPES),
                "target_rule": "a user's first positive event on an item they had not touched",
                "exclude": "items the user touched (any non-impression event) before the target",
                "k": k,
                "users_with_targets": result.candidate_users,
                "evaluated_users": result.evaluated_users,
                "sample_users": self.config.sample_users,
                "catalogue_size": split.catalogue_size,
                "items_arriving_after_split": len(split.arrivals),
                "cold_start": self.config.cold_start,
                "cold_items": len(split.cold_items),
                "frozen": "recomatrix-frozen: online state as of the split, never updated; "
                "shares models and catalogue (new items are published to both)",
            },
            "systems": {n: s.as_dict(k) for n, s in result.summaries.items()},
            "cold_start": cold if self.config.cold_start else None,
            "recommend_ms": {n: round(v, 3) for n, v in result.recommend_ms.items()},
            "update_seconds": {n: round(v, 2) for n, v in result.observe_s.items()},
            "publish_seconds": round(result.publish_s, 2),
            "seconds": round(self.seconds, 1),
            "timings": self.timings,
            "config": {
                **dataclasses.asdict(self.config),
                "encoder": self.settings.data.encoder,
                "retrieval_dim": self.settings.retrieval.dim,
                "two_tower_epochs": self.settings.training.two_tower_epochs,
                "two_tower_patience": self.settings.training.two_tower_patience,
                "ranker_epochs": self.settings.training.ranker_epochs,
                "ranker_rows": self.settings.training.ranker_rows,
                "session_weight": self.settings.retrieval.session_weight,
            },
        }


def evaluate(
    world: World, *, config: EvalConfig, settings: Settings, progress: Progress | None = None
) -> EvalReport:
    """Run the whole protocol on `world` (see `evaluation.protocol`) and report it."""
    report = progress or (lambda step, done, total: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(phase: str, since: float) -> float:
        now = time.perf_counter()
        timings[phase] = round(now - since, 2)
        return now

    if config.validation_fraction is not None:
        world = validation_world(world, test_fraction=config.test_fraction)
    split = split_by_time(
        world,
        test_fraction=config.validation_fraction or config.test_fraction,
        cold_start_share=config.cold_start_share if config.cold_start else 0.0,
        seed=config.seed,
    )
    mark = lap("split", started)
    train = split.train.events
    baselines: list[System] = [
        MostPopular(train=train),
        RecentPopular(train=train, window_s=config.trending_window_hours * 3600.0),
        ItemKNN(train=train),
        ALS(train=train, seed=config.seed),
        RandomItems(items=[item.item_id for item in split.train.items], seed=config.seed),
    ]
    mark = lap("fit_baselines", mark)
    upcoming = [arrival.item for arrival in split.arrivals]
    recomatrix = build_recomatrix(split.train, settings, upcoming=upcoming, progress=progress)
    timings.update({f"build_{step}": s for step, s in recomatrix.report.seconds.items()})
    mark = lap("build_recomatrix", mark)
    try:
        result = replay(
            split,
            [recomatrix.realtime, recomatrix.frozen, *baselines],
            k=config.k,
            sample_users=config.sample_users,
            seed=config.seed,
            progress=lambda done, total: report("replay test events", done, total),
        )
    finally:
        recomatrix.realtime.engine.close()
        recomatrix.frozen.engine.close()
    lap("replay", mark)
    return EvalReport(
        config=config,
        split=split,
        result=result,
        settings=settings,
        timings=timings,
        seconds=time.perf_counter() - started,
    )


def validation_world(world: World, *, test_fraction: float) -> World:
    """`world` cut at the test split: the events before it, the catalogue as of then."""
    return split_by_time(world, test_fraction=test_fraction).train


__all__ = ["EvalConfig", "EvalReport", "evaluate", "validation_world"]
