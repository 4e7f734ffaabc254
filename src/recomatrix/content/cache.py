"""An on-disk vector cache in front of any content encoder, so a restart re-encodes nothing.

One SQLite file per directory: rows of sha1(encoder name, text) -> float32 bytes. SQLite
gives atomic, crash-safe commits and safe sharing between processes without our own locking.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recomatrix.content.base import ContentEncoder, ProgressFn

# Misses are encoded and committed in chunks: an interrupted run keeps what it finished.
_CHUNK = 2048
# SQLite's default limit on host parameters per statement is 999 on older builds.
_LOOKUP_BATCH = 900


class CachedEncoder:
    """Wraps `inner`; texts seen before (by any process sharing `cache_dir`) are not re-encoded."""

    def __init__(self, inner: ContentEncoder, cache_dir: Path | str) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.path = Path(cache_dir) / "vectors.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB)")
        self._db.commit()

    def _key(self, text: str) -> bytes:
        # The separator keeps ("ab", "c") and ("a", "bc") apart.
        return hashlib.sha1(f"{self.name}\x00{text}".encode()).digest()

    def _lookup(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        width = self.dim * 4
        for start in range(0, len(keys), _LOOKUP_BATCH):
            batch = keys[start : start + _LOOKUP_BATCH]
            marks = ",".join("?" * len(batch))
            query = f"SELECT key, vec FROM vectors WHERE key IN ({marks})"
            for key, blob in self._db.execute(query, batch):
                # A row of the wrong width (a changed model under the same name) is a miss.
                if len(blob) == width:
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def encode(self, texts: Sequence[str], *, progress: ProgressFn | None = None) -> np.ndarray:
        """Same contract as the inner encoder; `progress(done, total)` counts texts to encode."""
        keys = [self._key(t) for t in texts]
        unique = list(dict.fromkeys(keys))
        with self._lock:
            vectors = self._lookup(unique)
        missing = [k for k in unique if k not in vectors]
        if missing:
            text_of = dict(zip(keys, texts, strict=True))
            for start in range(0, len(missing), _CHUNK):
                chunk = missing[start : start + _CHUNK]
                encoded = self.inner.encode([text_of[k] for k in chunk])
                rows = [(k, encoded[i].tobytes()) for i, k in enumerate(chunk)]
                with self._lock, self._db:
                    self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
                vectors.update(zip(chunk, encoded, strict=True))
                if progress is not None:
                    progress(min(start + _CHUNK, len(missing)), len(missing))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = vectors[key]
        return out

    def close(self) -> None:
        """Close the database; the encoder must not be used afterwards."""
        with self._lock:
            self._db.close()
