"""The replay: walk the test log in time order, ask every system before each target event.

For every test event, in order: items due by then enter every system's catalogue; if the
event is a target, each system recommends top K for its user at the event's time, with
the items the user already touched excluded, and the event's item is scored; then the
event is fed to each system's update path. No system sees an event before it is scored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recomatrix.evaluation.metrics import RankingScores, Summary
from recomatrix.evaluation.split import Split, target_events
from recomatrix.types import Event, Item, ItemId, UserId

ReplayProgress = Callable[[int, int], None]  # (test events done, total)


class System(Protocol):
    """A recommender under evaluation: fitted on the train World before the replay."""

    name: str

    def recommend(
        self, user_id: UserId, *, k: int, exclude: Set[ItemId], now: float
    ) -> list[ItemId]:
        """Top `k` items for the user at event time `now`, none of them in `exclude`."""
        ...

    def observe(self, event: Event) -> None:
        """The update path: learn from one event that has just happened (or ignore it)."""
        ...

    def publish(self, items: Sequence[Item], *, now: float) -> None:
        """New items entering the catalogue at event time `now`."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayResult:
    """Per-system scores over all targets and over cold-start targets."""

    summaries: dict[str, Summary]
    cold_summaries: dict[str, Summary]
    recommend_ms: dict[str, float]  # mean time of one recommend call per system
    observe_s: dict[str, float]  # total time of each system's update path
    publish_s: float  # total time spent adding arriving items to every system
    random_cold_hit_rate: float  # exact expected cold-start HR@K of uniformly random lists
    targets: int
    candidate_users: int  # users with at least one target in the test log
    evaluated_users: int
    test_events: int
    seconds: float


def replay(
    split: Split,
    systems: Sequence[System],
    *,
    k: int = 10,
    sample_users: int | None = None,
    seed: int = 7,
    progress: ReplayProgress | None = None,
) -> ReplayResult:
    """Replay `split.test` through `systems` and score each target; see the module docstring.

    With `sample_users`, only the targets of that many users (a seeded sample among those
    with targets) are scored; every test event still goes through the update paths.
    """
    started = time.perf_counter()
    is_target = target_events(split.test, split.train.events)
    candidates = sorted({e.user_id for e, t in zip(split.test, is_target, strict=True) if t})
    evaluated = _sample(candidates, sample_users, seed)
    touched: dict[UserId, set[ItemId]] = {}
    for event in split.train.events:
        if event.type != "impression":
            touched.setdefault(event.user_id, set()).add(event.item_id)
    names = [s.name for s in systems]
    scores = {n: RankingScores(k=k) for n in names}
    cold = {n: RankingScores(k=k) for n in names}
    spent = dict.fromkeys(names, 0.0)
    observe_s = dict.fromkeys(names, 0.0)
    pending, total, publish_s = 0, len(split.test), 0.0
    random_cold = 0.0  # sum over cold targets of P(a random K-list holds the item)

    for done, (event, target) in enumerate(zip(split.test, is_target, strict=True)):
        due: list[Item] = []
        while pending < len(split.arrivals) and split.arrivals[pending].ts <= event.ts:
            due.append(split.arrivals[pending].item)
            pending += 1
        if due:
            t0 = time.perf_counter()
            for system in systems:
                system.publish(due, now=event.ts)
            publish_s += time.perf_counter() - t0
        if target and event.user_id in evaluated:
            exclude = frozenset(touched.get(event.user_id, ()))
            for system in systems:
                t0 = time.perf_counter()
                recommended = system.recommend(event.user_id, k=k, exclude=exclude, now=event.ts)
                spent[system.name] += time.perf_counter() - t0
                scores[system.name].add(recommended, event.item_id)
                if event.item_id in split.cold_items:
                    cold[system.name].add(recommended, event.item_id)
            if event.item_id in split.cold_items:
                # Touched items all have events, so they are all in the catalogue.
                allowed = len(split.train.items) + pending - len(exclude)
                random_cold += min(1.0, k / max(allowed, 1))
        for system in systems:
            t0 = time.perf_counter()
            system.observe(event)
            observe_s[system.name] += time.perf_counter() - t0
        if event.type != "impression":
            touched.setdefault(event.user_id, set()).add(event.item_id)
        if progress is not None and (done % 500 == 0 or done == total - 1):
            progress(done + 1, total)

    n_targets = scores[names[0]].targets if names else 0
    return ReplayResult(
        summaries={n: s.summary(catalogue_size=split.catalogue_size) for n, s in scores.items()},
        cold_summaries={n: s.summary(catalogue_size=split.catalogue_size) for n, s in cold.items()},
        recommend_ms={n: 1000.0 * spent[n] / max(n_targets, 1) for n in names},
        observe_s=observe_s,
        publish_s=publish_s,
        random_cold_hit_rate=random_cold / max(cold[names[0]].targets if names else 0, 1),
        targets=n_targets,
        candidate_users=len(candidates),
        evaluated_users=len(evaluated),
        test_events=total,
        seconds=time.perf_counter() - started,
    )


def _sample(users: Sequence[UserId], count: int | None, seed: int) -> frozenset[UserId]:
    """All `users`, or a seeded sample of `count` of them (users must be sorted)."""
    if count is None or count >= len(users):
        return frozenset(users)
    if count < 1:
        raise ValueError(f"sample_users must be at least 1, got {count}")
    picks = np.random.default_rng(seed).choice(len(users), size=count, replace=False)
    return frozenset(users[i] for i in picks.tolist())
