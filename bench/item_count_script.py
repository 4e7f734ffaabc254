"""Redis's own time per item in the item counting script (`ITEM_COUNT_LUA`), on full blobs.

    .venv/bin/python bench/item_count_script.py [--rounds 40]
    PYTHONPATH=/path/to/older/src .venv/bin/python bench/item_count_script.py   # A/B

Starts its own redis-server, fills 256 items with a day of counts (every window holds all
its rows: ~2.9 KB blobs), then adds rounds of 6 counts per item landing in each window's
newest row, as a stream worker's flush does under load, and reads `INFO commandstats`:
the script's microseconds per item, and those of the commands it called. Not a test.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import redis

from recomatrix.features.base import ItemCount
from recomatrix.features.redis import RedisOnlineStore
from recomatrix.loopback import redis_server

ITEMS = 256
PER_ITEM = 6  # counts per item and flush: 46,000 events/s over 2,000 items every 0.25 s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="rx-itemscript-") as tmp,
        redis_server(Path(tmp)) as url,
    ):
        client = redis.Redis.from_url(url)
        store = RedisOnlineStore(client=client)
        now = time.time()
        items = [f"item-{k}" for k in range(ITEMS)]
        fill = [ItemCount(uuid.uuid4().hex, item, "click", now - 86_000 + s)
                for item in items for s in range(0, 86_400, 600)]  # fmt: skip
        fill += [ItemCount(uuid.uuid4().hex, item, "impression", now - 3_500 + s)
                 for item in items for s in range(0, 3_600, 10)]  # fmt: skip
        store.add_item_counts(fill)
        blob = len(client.get(f"rx:i:{{{items[0]}}}") or b"")
        for r in range(args.rounds + 1):  # the first opens each item's newest rows: unmeasured
            if r == 1:
                client.config_resetstat()
            ts = now + 100 + r * 0.01
            kinds = ("click", "impression")
            store.add_item_counts([ItemCount(uuid.uuid4().hex, item, kinds[e % 2], ts)
                                   for item in items for e in range(PER_ITEM)])  # fmt: skip
        stats = client.info("commandstats")
        client.close()
    updates = args.rounds * ITEMS
    per_item = {name.removeprefix("cmdstat_"): round(row["usec"] / updates, 2)
                for name, row in stats.items() if "config" not in name}  # fmt: skip
    print(json.dumps({"blob_bytes": blob, "item_updates": updates, "counts_per_item": PER_ITEM,
                      "redis_us_per_item": per_item}))  # fmt: skip


if __name__ == "__main__":
    main()
