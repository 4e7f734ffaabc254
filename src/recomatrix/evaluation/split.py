"""The time split of an evaluation: a train World every system learns from, and the test log.

Items that do not exist yet at the split (and cold-start items held out of training)
are not in the train World: they arrive during the replay, as they would in production.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recomatrix.data.world import World
from recomatrix.types import Event, Item, ItemId

# Event types that say "the user wanted this item": the ones a recommender should predict.
POSITIVE_TYPES: frozenset[str] = frozenset({"click", "like", "complete"})


@dataclass(frozen=True, slots=True)
class Arrival:
    """An item entering the catalogue during the replay, at event time `ts`."""

    ts: float
    item: Item


@dataclass(frozen=True, kw_only=True, slots=True)
class Split:
    """What the systems train on, and what is replayed to them afterwards."""

    train: World  # events strictly before the test log, catalogue as of the split
    test: list[Event]  # the last `test_fraction` of the log, time-ordered
    split_ts: float  # time of the first test event
    arrivals: list[Arrival]  # items not in `train`, ordered by arrival time
    cold_items: frozenset[ItemId]  # held out of training entirely (cold start)
    catalogue_size: int  # every item of the world: the denominator of coverage


def split_by_time(
    world: World, *, test_fraction: float = 0.2, cold_start_share: float = 0.0, seed: int = 7
) -> Split:
    """Leave the last `test_fraction` of `world`'s events for test, all earlier ones for train.

    The cut is by position in the time-ordered log, so the test log holds exactly
    `round(test_fraction * len(events))` events; events sharing the boundary timestamp keep
    their log order. With `cold_start_share`, that share of the items existing at the split
    (seeded) is dropped from training, events included; they arrive at their first test
    event as new uploads (`created_at` = that time). Items created after the split arrive
    at their creation time (or first test event, whichever is earlier).

    >>> from recomatrix.types import Event, Item
    >>> log = [Event(f"e{i}", "u", "a", "click", float(i)) for i in range(10)]
    >>> split = split_by_time(World(name="w", items=[Item("a", "A")], users=["u"], events=log))
    >>> len(split.train.events), [e.event_id for e in split.test], split.split_ts
    (8, ['e8', 'e9'], 8.0)
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if not 0.0 <= cold_start_share < 1.0:
        raise ValueError(f"cold_start_share must be in [0, 1), got {cold_start_share}")
    n_test = round(test_fraction * len(world.events))
    if n_test < 1 or n_test >= len(world.events):
        raise ValueError(
            f"world {world.name!r}: {len(world.events)} events leave no train or no test "
            f"events at test_fraction={test_fraction}"
        )
    cut = len(world.events) - n_test
    train_log, test = world.events[:cut], world.events[cut:]
    split_ts = test[0].ts
    in_train_log = {e.item_id for e in train_log}
    existing = [
        it for it in world.all_items if it.created_at < split_ts or it.item_id in in_train_log
    ]
    cold = _hold_out(existing, cold_start_share, seed)
    train_items = [it for it in existing if it.item_id not in cold]
    train_events = [e for e in train_log if e.item_id not in cold]
    train_users = {e.user_id for e in train_events}
    train = World(
        name=world.name,
        items=train_items,
        users=[u for u in world.users if u in train_users],
        events=train_events,
        late_items=[],
        genres=list(world.genres),
    )
    return Split(
        train=train,
        test=test,
        split_ts=split_ts,
        arrivals=_arrivals(world.all_items, {it.item_id for it in train_items}, cold, test),
        cold_items=frozenset(cold),
        catalogue_size=len(world.all_items),
    )


def _hold_out(items: Sequence[Item], share: float, seed: int) -> set[ItemId]:
    """A seeded sample of `share` of the items, by id so it does not depend on list order."""
    count = round(share * len(items))
    if count == 0:
        return set()
    ids = sorted(it.item_id for it in items)
    picks = np.random.default_rng(seed).choice(len(ids), size=count, replace=False)
    return {ids[i] for i in picks.tolist()}


def _arrivals(
    items: Sequence[Item], in_train: set[ItemId], cold: set[ItemId], test: Sequence[Event]
) -> list[Arrival]:
    first_seen: dict[ItemId, float] = {}
    for event in test:
        first_seen.setdefault(event.item_id, event.ts)
    out = []
    for item in items:
        if item.item_id in in_train:
            continue
        seen = first_seen.get(item.item_id)
        if item.item_id in cold:
            if seen is not None:  # a held-out item never seen again never arrives
                # It stands for a new upload: published when it arrives, not long before.
                out.append(Arrival(seen, dataclasses.replace(item, created_at=seen)))
        else:
            out.append(
                Arrival(item.created_at if seen is None else min(item.created_at, seen), item)
            )
    out.sort(key=lambda a: a.ts)
    return out


def target_events(test: Sequence[Event], train: Sequence[Event]) -> list[bool]:
    """For each test event: is it a target, a user's first positive contact with an item?

    A positive event on an item the user already touched (clicked, skipped, rated, ...)
    cannot be recommended (those items are excluded), so only the first counts.
    Impressions are not contact: a synthetic user clicks items of the slate just shown.
    """
    touched = {(e.user_id, e.item_id) for e in train if e.type != "impression"}
    out = []
    for event in test:
        key = (event.user_id, event.item_id)
        out.append(event.type in POSITIVE_TYPES and key not in touched)
        if event.type != "impression":
            touched.add(key)
    return out
