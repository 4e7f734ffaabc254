"""Point-in-time ranker rows from the offline Parquet log, built with DuckDB ASOF joins.

How this relates to the replay (`training.ranker_data`, ADR 0003): the replay runs the
log through the serving `StreamProcessor` and `build_features`, so its rows are exactly
the rows serving would have built, at the price of replaying every event in Python. This
module is the offline path for a long log (e.g. `recomatrix train` from the offline store):
one DuckDB query over the `ParquetLog` folders joins every exposure row to its user's and
its item's cumulative counters AS OF the row's time, with no replay. Its features are
those counters (`PIT_FEATURE_NAMES`, not the serving `FEATURE_NAMES`); its labels are
the replay's: engaged / completed within `LABEL_HORIZON_S` of the exposure.

Point in time: a row at time t counts the events with ts < t, strictly, so nothing at or
after its moment can leak in. Events sharing the row's exact timestamp are left out (the
log does not order them); the replay counts those earlier in log order. An event logged
twice (at-least-once delivery repeats one after a crash) counts once, as in the online
store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa

from recomatrix.features.offline import EVENT_SCHEMA, IMPRESSION_SCHEMA
from recomatrix.features.state import ENGAGED
from recomatrix.training.ranker_data import LABEL_HORIZON_S
from recomatrix.types import EVENT_TYPES

Exposures = Literal["served", "events"]

_ENGAGED_SQL = "type IN (" + ", ".join(f"'{t}'" for t in ENGAGED) + ")"
# Feature column -> which of the user's (item's) earlier events it counts.
USER_COUNTS: dict[str, str] = {f"user_{t}s": f"type = '{t}'" for t in EVENT_TYPES}
ITEM_COUNTS: dict[str, str] = {
    "item_impressions": "type = 'impression'",
    "item_engaged": _ENGAGED_SQL,
    "item_completes": "type = 'complete'",
    "item_skips": "type = 'skip'",
}
PIT_FEATURE_NAMES: tuple[str, ...] = (*USER_COUNTS, *ITEM_COUNTS)


@dataclass(frozen=True, slots=True)
class PointInTimeRows:
    """One row per exposure, ordered by (ts, user_id, item_id)."""

    user_id: np.ndarray  # (rows,) str
    item_id: np.ndarray  # (rows,) str
    ts: np.ndarray  # (rows,) float64, the exposure time
    X: np.ndarray  # (rows, len(PIT_FEATURE_NAMES)) float32 counts of strictly earlier events
    y: np.ndarray  # (rows, 2) float32: engaged, completed within the label horizon

    def __len__(self) -> int:
        return len(self.ts)


def point_in_time_rows(
    log_root: Path,
    *,
    exposures: Exposures = "served",
    label_horizon_s: float = LABEL_HORIZON_S,
) -> PointInTimeRows:
    """Training rows from the ParquetLog under `log_root` (its events/ and impressions/).

    `exposures="served"` makes a row of every impression the engine served (impressions/);
    `"events"` one of every `impression` event in the event log (what the replay uses).
    """
    if exposures not in ("served", "events"):
        raise ValueError(f"exposures must be 'served' or 'events', not {exposures!r}")
    if not (log_root / "events").is_dir():
        raise ValueError(f"no offline log at {log_root}: expected the events/ folder of a "
                         "ParquetLog (the engine's <home>/offline)")  # fmt: skip
    with duckdb.connect() as con:
        _register(con, "logged_events", log_root / "events", EVENT_SCHEMA)
        _register(con, "served", log_root / "impressions", IMPRESSION_SCHEMA)
        columns = con.execute(_query(exposures), [label_horizon_s]).fetchnumpy()
    return PointInTimeRows(
        user_id=np.asarray(columns["user_id"], dtype=object),
        item_id=np.asarray(columns["item_id"], dtype=object),
        ts=np.asarray(columns["ts"], dtype=np.float64),
        X=np.column_stack([np.asarray(columns[n], dtype=np.float32) for n in PIT_FEATURE_NAMES])
        if len(columns["ts"])
        else np.zeros((0, len(PIT_FEATURE_NAMES)), dtype=np.float32),
        y=np.column_stack([columns["engaged"], columns["completed"]]).astype(np.float32),
    )


def _register(con: duckdb.DuckDBPyConnection, name: str, folder: Path, schema: pa.Schema) -> None:
    """Expose the Parquet parts of `folder` as view `name` (an empty table if none yet)."""
    parts = sorted(str(p) for p in folder.glob("part-*.parquet")) if folder.is_dir() else []
    if parts:
        con.read_parquet(parts).create_view(name)
    else:
        con.register(name, schema.empty_table())


def _moments(key: str, counts: dict[str, str]) -> str:
    """Per `key` and distinct ts: running counts of its events up to and including ts."""
    running = ", ".join(
        f"CAST(sum(count(*) FILTER (WHERE {where})) OVER w AS BIGINT) AS {name}"
        for name, where in counts.items()
    )
    return f"""
        SELECT {key}, ts, {running} FROM events GROUP BY {key}, ts
        WINDOW w AS (PARTITION BY {key} ORDER BY ts ROWS UNBOUNDED PRECEDING)"""


def _query(exposures: Exposures) -> str:
    rows = (
        "SELECT user_id, item_id, ts FROM served"
        if exposures == "served"
        else "SELECT user_id, item_id, ts FROM events WHERE type = 'impression'"
    )
    features = ", ".join(
        f"coalesce({alias}.{name}, 0) AS {name}"
        for alias, names in (("u", USER_COUNTS), ("i", ITEM_COUNTS))
        for name in names
    )
    # ASOF joins pick, per row, the latest moment strictly before it (counters) and the
    # first engagement / completion at or after it (labels).
    return f"""
        WITH events AS (  -- a redelivered event is an exact copy: keep one per id
            SELECT any_value(user_id) AS user_id, any_value(item_id) AS item_id,
                any_value(type) AS type, any_value(ts) AS ts
            FROM logged_events GROUP BY event_id),
        user_moments AS ({_moments("user_id", USER_COUNTS)}),
        item_moments AS ({_moments("item_id", ITEM_COUNTS)}),
        engagements AS (SELECT user_id, item_id, ts FROM events WHERE {_ENGAGED_SQL}),
        completions AS (SELECT user_id, item_id, ts FROM events WHERE type = 'complete'),
        exposures AS ({rows})
        SELECT r.user_id, r.item_id, r.ts, {features},
            coalesce(g.ts <= r.ts + $1, false) AS engaged,
            coalesce(c.ts <= r.ts + $1, false) AS completed
        FROM exposures r
        ASOF LEFT JOIN user_moments u ON r.user_id = u.user_id AND r.ts > u.ts
        ASOF LEFT JOIN item_moments i ON r.item_id = i.item_id AND r.ts > i.ts
        ASOF LEFT JOIN engagements g
            ON r.user_id = g.user_id AND r.item_id = g.item_id AND r.ts <= g.ts
        ASOF LEFT JOIN completions c
            ON r.user_id = c.user_id AND r.item_id = c.item_id AND r.ts <= c.ts
        ORDER BY r.ts, r.user_id, r.item_id"""
