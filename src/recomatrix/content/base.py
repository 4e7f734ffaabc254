"""The ContentEncoder seam: text in, L2-normalised float32 vectors out; opened by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

# Called as progress(texts_done, texts_total) during long encodes.
ProgressFn = Callable[[int, int], None]


class ContentEncoder(Protocol):
    """Turns item text into vectors; `name` identifies the vector space (model + dim)."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 array of shape (len(texts), dim) with L2-normalised rows."""
        ...


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit L2 norm in place; all-zero rows stay zero (nothing to point at)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


def _open_minilm() -> ContentEncoder:
    # Imported here so that choosing the hashing encoder never loads torch.
    from recomatrix.content.sentence import SentenceEncoder

    return SentenceEncoder()


def _open_hashing() -> ContentEncoder:
    from recomatrix.content.hashing import HashingEncoder

    return HashingEncoder()


ENCODERS: dict[str, Callable[[], ContentEncoder]] = {
    "minilm": _open_minilm,
    "hashing": _open_hashing,
}


def open_encoder(name: str, *, cache_dir: Path | str | None = None) -> ContentEncoder:
    """The encoder registered as `name`; with `cache_dir`, vectors are kept on disk.

    >>> open_encoder("hashing").dim
    256
    """
    try:
        factory = ENCODERS[name]
    except KeyError:
        valid = ", ".join(sorted(ENCODERS))
        raise ValueError(f"unknown content encoder {name!r}; valid names: {valid}") from None
    encoder = factory()
    if cache_dir is None:
        return encoder
    from recomatrix.content.cache import CachedEncoder

    return CachedEncoder(encoder, cache_dir)
