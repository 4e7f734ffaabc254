"""recomatrix under evaluation: the real-time engine and the same engine frozen at the split.

Both are built once by `build_engine` on the train World. The real-time one applies every
test event through the stream processor (synchronously: the replay is single-threaded);
the frozen one reads a snapshot of the online state taken at the split (user windows,
sessions, recent items, item counters, trending) and never sees an event. They share the
trained models and the catalogue, so both can recommend items published after the split.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence, Set
from dataclasses import dataclass

from recomatrix.bootstrap import BuildReport, Progress, build_engine
from recomatrix.config import Settings
from recomatrix.data.world import World
from recomatrix.engine import Engine
from recomatrix.events import open_bus
from recomatrix.events.base import EventBus
from recomatrix.features.base import ItemCount, OnlineStore
from recomatrix.features.state import ItemState, UserState
from recomatrix.training.registry import embedder_inputs
from recomatrix.types import Event, Item, ItemId, UserId


class SnapshotStore:
    """A read-only `OnlineStore`: copies of another store's state at one moment.

    Reads answer from the copies; writes raise, so a frozen engine cannot drift.
    """

    def __init__(
        self,
        *,
        users: Mapping[UserId, UserState],
        items: Mapping[ItemId, ItemState],
        trending: Mapping[ItemId, float],
    ) -> None:
        self._users, self._items = dict(users), dict(items)
        # Never changes: ranked once, not by a heap over the whole table per request.
        self._trending = sorted(trending.items(), key=lambda kv: kv[1], reverse=True)

    @classmethod
    def of(
        cls, store: OnlineStore, *, user_ids: Sequence[UserId], item_ids: Sequence[ItemId]
    ) -> SnapshotStore:
        """Deep copies of the listed users and items and of the whole trending table."""
        users = store.get_users(user_ids)
        items = store.get_items(item_ids)
        return cls(
            users={u: s.copy() for u, s in zip(user_ids, users, strict=True) if s is not None},
            items={i: s.copy() for i, s in zip(item_ids, items, strict=True) if s is not None},
            trending=dict(store.top_trending(len(item_ids) + 1)),
        )

    def seen_events(
        self, event_ids: Sequence[str], times: Sequence[float | None] | None = None
    ) -> list[bool]:
        return [False] * len(event_ids)

    def get_users(self, user_ids: Sequence[UserId]) -> list[UserState | None]:
        return [self._users.get(u) for u in user_ids]

    def get_items(self, item_ids: Sequence[ItemId]) -> list[ItemState | None]:
        return [self._items.get(i) for i in item_ids]

    def top_trending(self, k: int) -> list[tuple[ItemId, float]]:
        return self._trending[:k]

    def put_users(
        self,
        states: Sequence[UserState],
        *,
        applied_events: Sequence[str] = (),
        changed: Mapping[UserId, Collection[str]] | None = None,
        applied_times: Sequence[float | None] | None = None,
    ) -> None:
        raise TypeError("SnapshotStore is read-only: a frozen engine applies no events")

    def add_item_counts(self, counts: Sequence[ItemCount]) -> None:
        raise TypeError("SnapshotStore is read-only: a frozen engine applies no events")

    def delete_items(self, item_ids: Sequence[ItemId]) -> None:
        raise TypeError("SnapshotStore is read-only: a frozen engine applies no events")

    def set_trending(self, scores: Mapping[ItemId, float]) -> None:
        raise TypeError("SnapshotStore is read-only: a frozen engine applies no events")


class RecomatrixSystem:
    """An `Engine` behind the evaluation's `System` interface."""

    def __init__(self, *, name: str, engine: Engine, live: bool, publishes: bool) -> None:
        self.name, self.engine = name, engine
        self.live = live  # apply test events through the stream processor
        self.publishes = publishes  # put new items (False when another system shares the catalogue)
        self._cooled_at = -math.inf  # event time trending was last re-scored as a whole

    def recommend(
        self, user_id: UserId, *, k: int, exclude: Set[ItemId], now: float
    ) -> list[ItemId]:
        found = self.engine.recommend(user_id, n=k, exclude=list(exclude), now=now)
        return [candidate.item_id for candidate in found.items]

    def observe(self, event: Event) -> None:
        if self.live:
            # In place: nobody reads concurrently in the single-threaded replay.
            processor = self.engine.processor
            processor.apply([event], copy_on_write=False)
            # What the stream processor's loop does every `trending_refresh_s` of wall
            # time, in event time: cooling items leave the trending table.
            if event.ts - self._cooled_at >= processor.settings.trending_refresh_s:
                processor.cool_trending(now=event.ts)
                self._cooled_at = event.ts

    def publish(self, items: Sequence[Item], *, now: float) -> None:
        if self.publishes:
            self.engine.put_items(items)


@dataclass(frozen=True, slots=True)
class RecomatrixPair:
    realtime: RecomatrixSystem
    frozen: RecomatrixSystem
    report: BuildReport


def build_recomatrix(
    train: World,
    settings: Settings,
    *,
    upcoming: Sequence[Item] = (),
    progress: Progress | None = None,
) -> RecomatrixPair:
    """Train recomatrix on `train` and wrap it as the real-time and the frozen system.

    The texts of `upcoming` items (published during the replay) are encoded after the
    build, in one batch, into the content encoder's vector cache. The encoder is a pure
    function of the text, so this changes no vector and nothing any system knows: each
    arrival still goes through the item tower and into the indexes at its own time, but
    the replay does not pay the sentence model one text at a time (~15 ms each).
    """
    built, report = build_engine(train, settings, progress=progress)
    if upcoming:  # the engine's own encoder: loaded already, its cache is the one it reads
        encoder, _ = embedder_inputs(built.models)
        encoder.encode([item.text() for item in upcoming])
    # The replay drives state itself, in event time: no background thread (it would
    # re-score trending at wall-clock time) and no offline log of every evaluation request.
    built.close()
    if train.events:  # the frozen copy's trending as the worker would have left it then
        built.processor.cool_trending(now=train.events[-1].ts, k=len(train.all_items) + 1)
    snapshot = SnapshotStore.of(
        built.store, user_ids=train.users, item_ids=[item.item_id for item in train.all_items]
    )
    realtime = _engine_like(built, store=built.store, bus=built.bus)
    frozen = _engine_like(built, store=snapshot, bus=open_bus("memory://"))
    return RecomatrixPair(
        realtime=RecomatrixSystem(name="recomatrix", engine=realtime, live=True, publishes=True),
        frozen=RecomatrixSystem(
            name="recomatrix-frozen", engine=frozen, live=False, publishes=False
        ),
        report=report,
    )


def _engine_like(built: Engine, *, store: OnlineStore, bus: EventBus) -> Engine:
    """An engine with `built`'s models, catalogue and indexes over another store, unlogged."""
    return Engine(
        settings=built.settings,
        catalogue=built.catalogue,
        index=built.index,
        fresh=built.fresh,
        store=store,
        bus=bus,
        models=built.models,
        popular=built.sources.popular,
        offline=None,
    )
