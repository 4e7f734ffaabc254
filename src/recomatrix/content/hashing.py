"""A tiny deterministic text encoder: signed feature hashing of word unigrams and bigrams.

No model to load, the same vector in every process; the fallback when MiniLM is unwanted.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from recomatrix.content.base import ProgressFn, normalise_rows

_TOKEN = re.compile(r"[a-z0-9]+")

# Bounds the feature memo so a stream of unique words cannot grow it without limit.
_MAX_MEMO = 1_000_000
# Texts per vectorised step: bounds the float64 scratch of bincount (chunk * dim values).
_CHUNK = 8192


class _FeatureCodes(dict[str, int]):
    """feature -> 2 * column + sign bit, computed on first use (dict lookups stay in C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def __missing__(self, feature: str) -> int:
        h = zlib.crc32(feature.encode("utf-8"))
        # Column from the low bits, sign from the top bit: independent enough for hashing.
        code = 2 * (h % self.dim) + (h >> 31)
        if len(self) >= _MAX_MEMO:
            self.clear()
        self[feature] = code
        return code


class HashingEncoder:
    """Feature hashing (Weinberger et al. 2009) of lower-cased unigrams and bigrams.

    crc32 picks column and sign, so vectors are stable across processes and Python versions
    (Python's own `hash()` is salted per process). 50k short texts take 1-2 s on one core.

    >>> enc = HashingEncoder(dim=64)
    >>> bool(np.allclose(enc.encode(["red fox"]), enc.encode(["Red  fox!"])))
    True
    """

    def __init__(self, *, dim: int = 256) -> None:
        if dim < 2:
            raise ValueError(f"dim must be at least 2, got {dim}")
        self.dim = dim
        self.name = f"hashing-{dim}"
        self._codes = _FeatureCodes(dim)

    def encode(self, texts: Sequence[str], *, progress: ProgressFn | None = None) -> np.ndarray:
        """Float32 (len(texts), dim), unit rows; a text without words gives a zero row."""
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            chunk = texts[start : start + _CHUNK]
            vectors[start : start + len(chunk)] = self._counts(chunk)
            if progress is not None:
                progress(start + len(chunk), len(texts))
        return normalise_rows(vectors)

    def _counts(self, texts: Sequence[str]) -> np.ndarray:
        lookup = self._codes.__getitem__
        codes: list[int] = []
        lengths: list[int] = []
        for text in texts:
            tokens = _TOKEN.findall(text.lower())
            before = len(codes)
            codes.extend(map(lookup, tokens))
            codes.extend(map(lookup, map(" ".join, pairwise(tokens))))
            lengths.append(len(codes) - before)
        code = np.asarray(codes, dtype=np.int64)
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        signs = 1.0 - 2.0 * (code & 1)
        flat = np.bincount(rows * self.dim + (code >> 1), signs, len(texts) * self.dim)
        return flat.reshape(len(texts), self.dim)
