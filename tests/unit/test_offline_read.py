"""Reading the offline log back: a redelivered batch's repeated rows count once."""

from __future__ import annotations

from pathlib import Path

from recomatrix.features.offline import ParquetLog, read_events
from recomatrix.types import Event


def test_events_appended_again_by_a_redelivery_are_read_once_in_log_order(
    tmp_path: Path,
) -> None:
    first = [Event(f"e{k}", "u1", f"i{k}", "click", 100.0 + k) for k in range(3)]
    log = ParquetLog(root=tmp_path, flush_interval_s=60)
    log.append_events(first)
    log.flush()  # one part: the batch as the worker that then died wrote it
    log.append_events([first[2], first[1], Event("e3", "u2", "i3", "like", 104.0)])
    log.close()  # the batch delivered again, plus a new event
    rows = read_events(tmp_path).to_pylist()
    assert [r["event_id"] for r in rows] == ["e0", "e1", "e2", "e3"]
    assert rows[3]["type"] == "like" and rows[1]["item_id"] == "i1"


def test_an_empty_log_reads_as_an_empty_table(tmp_path: Path) -> None:
    ParquetLog(root=tmp_path, flush_interval_s=60).close()
    assert read_events(tmp_path).num_rows == 0
