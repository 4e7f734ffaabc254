"""Reading the offline log back: a redelivered batch's repeated rows count once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa

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


def clicks(n: int, tag: str = "e") -> list[Event]:
    return [Event(f"{tag}{k}", "u1", f"i{k}", "click", 100.0 + k) for k in range(n)]


def test_a_full_part_is_written_by_the_flusher_not_by_the_appending_thread(
    tmp_path: Path,
) -> None:
    log = ParquetLog(root=tmp_path, flush_rows=10, flush_interval_s=60)
    writers: list[str] = []
    write = log._write

    def recorded(kind: str, stamp: str, table: pa.Table) -> None:
        write(kind, stamp, table)  # the part is in place before the test looks for it
        writers.append(threading.current_thread().name)

    log._write = recorded  # type: ignore[method-assign]
    log.append_events(clicks(10))  # a whole part: wakes the flusher, long before 60 s
    deadline = time.monotonic() + 10
    while not writers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writers == ["offline-log"]
    assert read_events(tmp_path).num_rows == 10
    log.close()


def test_appends_write_themselves_once_the_flusher_is_far_behind(tmp_path: Path) -> None:
    log = ParquetLog(root=tmp_path, flush_rows=10, flush_interval_s=60)
    log._stop.set()  # the flusher is gone: nothing else writes
    log._wake.set()
    log._flusher.join(timeout=10)
    log.append_events(clicks(39))
    assert read_events(tmp_path).num_rows == 0  # buffered: under BEHIND_FLUSHES parts
    log.append_events(clicks(1, tag="f"))  # 40 rows = BEHIND_FLUSHES x flush_rows
    assert read_events(tmp_path).num_rows == 40
