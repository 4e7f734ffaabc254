"""Request-path benchmark on the demo world, in process: per-stage latency percentiles,
event -> visible latency and new item -> searchable latency.

    python bench/request_path.py [--items 50000 --users 20000 --requests 2000 --encoder minilm]

Writes bench/results/request_path-<items>.json. Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

from recomatrix.bench.common import machine, percentiles
from recomatrix.bench.request_path import request_mix
from recomatrix.bootstrap import build_engine
from recomatrix.config import load_settings
from recomatrix.data import generate_world
from recomatrix.engine import Engine
from recomatrix.types import Event, Item

HERE = Path(__file__).parent


def event_visible_latency(engine: Engine, items: list[str], n: int) -> dict[str, float]:
    """From `ingest` returning to the user's window count showing the event."""
    samples = []
    for r in range(n):
        user = f"visible-{r}"
        started = time.perf_counter()
        engine.ingest([Event(uuid.uuid4().hex, user, items[r % len(items)], "click", time.time())])
        while True:
            state = engine.store.get_users([user])[0]
            if state is not None and state.windows.get("5m", now=time.time()).get("click"):
                break
            time.sleep(0.0002)
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def item_searchable_latency(engine: Engine, n: int) -> dict[str, float]:
    """From `put_items` being called to the item being the top hit of its own vector."""
    samples = []
    for r in range(n):
        item = Item(f"bench-new-{r}", f"Night chase {r}", "A detective hunts a smuggler.",
                    ("noir",), ("thriller",), "creator-bench", time.time())  # fmt: skip
        started = time.perf_counter()
        engine.put_items([item])
        vector = engine.catalogue.vector(item.item_id)
        assert vector is not None
        key = engine.catalogue.key(item.item_id)
        assert engine.index.search(vector, 1).row(0)[0][0] == key
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--home", type=Path, default=Path(".recomatrix"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    settings = load_settings(overrides={"data": {"encoder": args.encoder, "home": args.home}})
    world = generate_world(n_items=args.items, n_users=args.users, n_events=args.events)
    started = time.perf_counter()
    engine, report = build_engine(world, settings)
    build_s = time.perf_counter() - started
    item_ids = [i.item_id for i in world.items]
    result = {
        "machine": machine(),
        "items": len(engine.catalogue),
        "users": len(world.users),
        "events": len(world.events),
        "requests": args.requests,
        "encoder": args.encoder,
        "build_s": round(build_s, 1),
        "build_steps_s": report.seconds,
        "stages_ms": request_mix(
            engine, users=world.users, items=item_ids, n=args.requests, seed=2
        ),
        "event_visible_ms": event_visible_latency(engine, item_ids, 500),
        "item_searchable_ms": item_searchable_latency(engine, 200),
        "model_metrics": report.metrics,
    }
    engine.close()
    output = args.output or HERE / "results" / f"request_path-{args.items}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["stages_ms"], indent=2))
    print("event visible ms", result["event_visible_ms"])
    print("item searchable ms", result["item_searchable_ms"])


if __name__ == "__main__":
    main()
