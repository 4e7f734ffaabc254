"""Write a synthetic world as an interactions file and an items file, the inputs of
`recomatrix eval --interactions FILE --items FILE` (issue #4's 1M-row run time check).

    python bench/interactions_file.py --events 1000000 --out /tmp/world-1m
    recomatrix eval --interactions /tmp/world-1m/interactions.csv \
        --items /tmp/world-1m/items.csv --encoder hashing --sample-users 500

Rows are `user_id,item_id,timestamp,type` (epoch seconds, one of the event types);
items are `item_id,title,description,genres,tags,creator_id,created_at` with `|` lists.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from recomatrix.data import generate_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--out", type=Path, required=True, help="folder for the two CSV files")
    args = parser.parse_args()

    started = time.perf_counter()
    world = generate_world(
        n_items=args.items, n_users=args.users, n_events=args.events, days=args.days,
        end_ts=1_700_000_000.0,  # fixed, so the same arguments write the same files
    )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "interactions.csv").open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["user_id", "item_id", "timestamp", "type"])
        rows.writerows((e.user_id, e.item_id, f"{e.ts:.3f}", e.type) for e in world.events)
    with (args.out / "items.csv").open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["item_id", "title", "description", "genres", "tags", "creator_id",
                       "created_at"])  # fmt: skip
        rows.writerows(
            (
                i.item_id,
                i.title,
                i.description,
                "|".join(i.genres),
                "|".join(i.tags),
                i.creator_id,
                f"{i.created_at:.3f}",
            )
            for i in world.all_items
        )
    print(f"{len(world.events):,} interactions, {len(world.all_items):,} items "
          f"in {args.out} ({time.perf_counter() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
