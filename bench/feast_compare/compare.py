"""recomatrix's RedisOnlineStore against Feast's Redis online store, same values, same
redis-server, same run: an online feature fetch of 1 user + 300 items.

    /tmp/feast-venv/bin/python bench/feast_compare/compare.py [--items 2000 --users 1000]

(see README.md beside this file for the venv). Starts a redis-server on a free port,
applies a synthetic event log to our store with the stream processor's own code, then
writes the same numbers into Feast with `write_to_online_store`: per item the 7 counters
of its 1 h window, per user the 7 counters of its 1 h window and its 64-d long-term
vector. Checks that both stores return the same numbers, then times both, interleaved
in rounds so both see the same machine. Writes bench/results/tier-feast-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `bench.*` from the checkout, without installing it

import numpy as np  # noqa: E402  (after the path above)
import pandas as pd  # noqa: E402
from bench.feast_compare.timing import Fetch, ours, sample_calls  # noqa: E402
from bench.tier_setup import make_events  # noqa: E402
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig  # noqa: E402
from feast.types import Array, Float32  # noqa: E402
from feast.value_type import ValueType  # noqa: E402

from recomatrix.bench.common import machine, percentiles, versions  # noqa: E402
from recomatrix.events.redis import RedisStreamsBus  # noqa: E402
from recomatrix.features.redis import RedisOnlineStore  # noqa: E402
from recomatrix.features.state import UserState  # noqa: E402
from recomatrix.features.windows import FIELDS  # noqa: E402
from recomatrix.loopback import redis_server  # noqa: E402
from recomatrix.stream.processor import StreamProcessor  # noqa: E402
from recomatrix.types import Event  # noqa: E402

DIM = 64
Json = dict[str, Any]


def seed_ours(url: str, users: list[str], items: list[str], n_events: int) -> None:
    """Apply `n_events` over the last half hour to our store, as a stream worker would,
    and give every user a long-term vector (what training leaves in the user state)."""
    store, bus = RedisOnlineStore.from_url(url), RedisStreamsBus.from_url(url)
    processor = StreamProcessor(bus=bus, store=store, item_vector=lambda _: None)
    events = make_events("feast", n_events, users, items)
    rng = random.Random(1)
    events = [Event(e.event_id, e.user_id, e.item_id, e.type, e.ts - rng.uniform(0, 1800),
                    watch_seconds=float(rng.randint(0, 600))) for e in events]  # fmt: skip
    for k in range(0, len(events), 5000):
        processor.apply(events[k : k + 5000])
    vectors = np.random.default_rng(2).normal(size=(len(users), DIM)).astype(np.float32)
    states = [s or UserState(u) for u, s in zip(users, store.get_users(users), strict=True)]
    for state, vector in zip(states, vectors, strict=True):
        state.long_term = vector
    store.put_users(states)
    store.close()
    bus.close()


def feast_frames(url: str, users: list[str], items: list[str]) -> tuple[pd.DataFrame, ...]:
    """The numbers our store holds now, as Feast rows: 1 h counters (+ the user vector)."""
    store, now = RedisOnlineStore.from_url(url), time.time()
    stamp = pd.Timestamp.now(tz="UTC")
    user_rows = []
    for state in store.get_users(users):
        assert state is not None and state.long_term is not None
        window = state.windows.get("1h", now=now)
        user_rows.append({"user_id": state.user_id, "event_timestamp": stamp,
                          **{f: float(window.get(f, 0.0)) for f in FIELDS},
                          "long_term": state.long_term.tolist()})  # fmt: skip
    item_rows = []
    for item_id, item in zip(items, store.get_items(items), strict=True):
        window = {} if item is None else item.windows.get("1h", now=now)
        item_rows.append({"item_id": item_id, "event_timestamp": stamp,
                          **{f: float(window.get(f, 0.0)) for f in FIELDS}})  # fmt: skip
    store.close()
    return pd.DataFrame(user_rows), pd.DataFrame(item_rows)


def feast_store(folder: Path, url: str, users: pd.DataFrame, items: pd.DataFrame) -> FeatureStore:
    """A Feast repo in `folder`: two feature views on Redis, filled by write_to_online_store."""
    host_port = url.removeprefix("redis://").split("/")[0]
    config = RepoConfig(
        project="rxbench",
        registry=str(folder / "registry.db"),
        provider="local",
        online_store={"type": "redis", "connection_string": f"{host_port},db=0"},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    views = []
    for name, key, frame in (("user_1h", "user_id", users), ("item_1h", "item_id", items)):
        path = folder / f"{name}.parquet"
        frame.to_parquet(path)
        schema = [Field(name=f, dtype=Float32) for f in FIELDS]
        if name == "user_1h":
            schema.append(Field(name="long_term", dtype=Array(Float32)))
        entity = Entity(name=key.removesuffix("_id"), join_keys=[key], value_type=ValueType.STRING)
        source = FileSource(path=str(path), timestamp_field="event_timestamp")
        view = FeatureView(name=name, entities=[entity], schema=schema, source=source,
                           ttl=datetime.timedelta(days=1), online=True)  # fmt: skip
        views += [entity, view]
    store.apply(views)
    store.write_to_online_store("user_1h", df=users)
    store.write_to_online_store("item_1h", df=items)
    return store


def feast_fetch(store: FeatureStore, *, split: bool) -> Fetch:
    """One get_online_features over (user, item) rows, or (`split`) one for the user and one
    for the items, as our store does; the read is `to_dict()`."""
    user_features = [f"user_1h:{f}" for f in (*FIELDS, "long_term")]
    item_features = [f"item_1h:{f}" for f in FIELDS]

    def fetch(user: str, chosen: list[str]) -> Any:
        if not split:
            response = store.get_online_features(
                features=user_features + item_features, full_feature_names=True,
                entity_rows=[{"user_id": user, "item_id": i} for i in chosen],
            )  # fmt: skip
            return response.to_dict
        one = store.get_online_features(features=user_features, entity_rows=[{"user_id": user}])
        many = store.get_online_features(
            features=item_features, entity_rows=[{"item_id": i} for i in chosen]
        )
        return lambda: (one.to_dict(), many.to_dict())

    return fetch


def same_numbers(url: str, store: FeatureStore, users: list[str], items: list[str]) -> None:
    """Both stores answer the same values for a sample of keys (else the race is void)."""
    ours_store, now = RedisOnlineStore.from_url(url), time.time()
    user, sample = users[0], items[:50]
    theirs = store.get_online_features(
        features=[f"item_1h:{f}" for f in FIELDS] + ["user_1h:click", "user_1h:long_term"],
        entity_rows=[{"user_id": user, "item_id": i} for i in sample],
        full_feature_names=True,
    ).to_dict()
    state = ours_store.get_users([user])[0]
    assert state is not None and state.long_term is not None
    assert np.allclose(theirs["user_1h__long_term"][0], state.long_term)
    assert theirs["user_1h__click"][0] == state.windows.get("1h", now=now).get("click", 0.0)
    for k, item in enumerate(ours_store.get_items(sample)):
        window = {} if item is None else item.windows.get("1h", now=now)
        for name in FIELDS:
            assert theirs[f"item_1h__{name}"][k] == window.get(name, 0.0), (sample[k], name)
    ours_store.close()


def interleaved(fetches: dict[str, Fetch], users: list[str], items: list[str], *, rounds: int,
                calls: int) -> Json:  # fmt: skip
    """Each fetch timed in `rounds` turns of `calls` calls; percentiles over all of them."""
    samples: dict[str, dict[str, list[float]]] = {n: {} for n in fetches}
    for r in range(rounds):
        for name, fetch in fetches.items():
            turn = sample_calls(fetch, users, items, calls=calls, per_call=300, seed=r)
            for key, values in turn.items():
                samples[name].setdefault(key, []).extend(values)
        print(f"round {r + 1}/{rounds}", flush=True)
    return {name: {key: percentiles(values) for key, values in by_key.items()}
            for name, by_key in samples.items()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200, help="per store and round")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() before timing (no gen-2 collections over the setup's objects); "
        "writes tier-feast-gc-freeze-<date>.json",
    )
    args = parser.parse_args()
    users = [f"user-{k}" for k in range(args.users)]
    items = [f"item-{k}" for k in range(args.items)]
    with tempfile.TemporaryDirectory(prefix="rx-feast-") as tmp, redis_server(Path(tmp)) as url:
        seed_ours(url, users, items, args.events)
        feast = feast_store(Path(tmp), url, *feast_frames(url, users, items))
        same_numbers(url, feast, users, items)
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        cached = RedisOnlineStore.from_url(url)
        uncached = RedisOnlineStore.from_url(url + "?decoded_items=0")
        fetches = {"recomatrix": ours(cached), "recomatrix_no_decode_cache": ours(uncached),
                   "feast_one_call": feast_fetch(feast, split=False),
                   "feast_two_calls": feast_fetch(feast, split=True)}  # fmt: skip
        timings = interleaved(fetches, users, items, rounds=args.rounds, calls=args.calls)
        cached.close()
        uncached.close()
    best_feast = min(("feast_one_call", "feast_two_calls"),
                     key=lambda n: timings[n]["fetch_and_read_ms"]["p50"])  # fmt: skip
    ratio = {f"{ours_name}_{p}": round(timings[best_feast]["fetch_and_read_ms"][p]
                                       / timings[ours_name]["fetch_and_read_ms"][p], 2)
             for ours_name in ("recomatrix", "recomatrix_no_decode_cache")
             for p in ("p50", "p99")}  # fmt: skip
    result = {"machine": machine(), "versions": versions("feast", "redis", "pandas", "numpy"),
              "items": args.items, "users": args.users, "events": args.events,
              "calls": args.rounds * args.calls, "gc_freeze": args.gc_freeze, "timings": timings,
              "feast_speed_ratio_vs": {"feast": best_feast, **ratio}}  # fmt: skip
    name = "tier-feast-gc-freeze" if args.gc_freeze else "tier-feast"
    out = ROOT / "bench" / "results" / f"{name}-{datetime.date.today().isoformat()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
