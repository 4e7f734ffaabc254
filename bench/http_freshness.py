"""Freshness and latency over HTTP against a running server (e.g. `recomatrix demo`).

    python bench/http_freshness.py [--url http://127.0.0.1:8000]

Measures: POST an event -> the user's features show it; POST an item -> similar items
answer; GET recommendations. Creates probe users and items, and deletes the items.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

import httpx
import numpy as np


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(samples, 50)), 2),
        "p99": round(float(np.percentile(samples, 99)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    client = httpx.Client(base_url=args.url, timeout=10)
    item_ids = [i["item_id"] for i in client.get("/v1/trending", params={"n": 100}).json()["items"]]
    item_ids = item_ids or ["item-0"]
    events, items, recs = [], [], []
    for i in range(100):
        user = f"probe-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        event = {"user_id": user, "item_id": item_ids[i % len(item_ids)], "type": "click"}
        client.post("/v1/events", json={"events": [event]}).raise_for_status()
        while not client.get(f"/v1/users/{user}/features").json()["windows"]["5m"].get("click"):
            pass
        events.append((time.perf_counter() - started) * 1000)
    for i in range(50):
        item_id = f"probe-item-{uuid.uuid4().hex[:8]}"
        body = {
            "item_id": item_id,
            "title": f"Midnight Chase {i}",
            "genres": ["thriller"],
            "description": "A detective hunts a killer through the rain-soaked city",
        }
        started = time.perf_counter()
        client.post("/v1/items", json=body).raise_for_status()
        client.get(f"/v1/items/{item_id}/similar", params={"n": 5}).raise_for_status()
        items.append((time.perf_counter() - started) * 1000)
        client.delete(f"/v1/items/{item_id}")
    for i in range(300):
        started = time.perf_counter()
        client.get(f"/v1/recommendations/user-{i}").raise_for_status()
        recs.append((time.perf_counter() - started) * 1000)
    print(json.dumps({"event_visible_ms": summary(events), "item_similar_ms": summary(items),
                      "recommendations_ms": summary(recs)}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
