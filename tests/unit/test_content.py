"""Content encoders: hashing determinism and geometry, the on-disk cache, the registry, MiniLM."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from recomatrix.content import CachedEncoder, HashingEncoder, open_encoder


class CountingEncoder:
    """A HashingEncoder that remembers which texts it was asked to encode."""

    def __init__(self) -> None:
        self.inner = HashingEncoder(dim=64)
        self.name = self.inner.name
        self.dim = self.inner.dim
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        return self.inner.encode(texts)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_hashing_vectors_are_float32_unit_rows_of_the_configured_dim() -> None:
    vectors = HashingEncoder(dim=128).encode(["a space opera", "cooking with garlic", "x"])
    assert vectors.shape == (3, 128)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_hashing_is_deterministic_across_calls_and_instances() -> None:
    texts = ["The quick brown fox", "jumps over the lazy dog", "fox"]
    first = HashingEncoder().encode(texts)
    np.testing.assert_array_equal(first, HashingEncoder().encode(texts))
    np.testing.assert_array_equal(first, HashingEncoder().encode(list(reversed(texts)))[::-1])


def test_hashing_is_identical_in_a_process_with_another_hash_seed() -> None:
    text = "a detective solves a murder in the rain"
    script = (
        "import sys; from recomatrix.content.hashing import HashingEncoder; "
        f"sys.stdout.write(HashingEncoder().encode([{text!r}]).tobytes().hex())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    other = np.frombuffer(bytes.fromhex(out), dtype=np.float32)
    np.testing.assert_array_equal(other, HashingEncoder().encode([text])[0])


def test_hashing_puts_similar_texts_closer_than_dissimilar_ones() -> None:
    a, b, c = HashingEncoder().encode(
        [
            "space opera with starships and aliens",
            "aliens attack starships in a space war",
            "a quiet cookbook of italian pasta recipes",
        ]
    )
    assert cosine(a, b) > cosine(a, c) + 0.2


def test_hashing_ignores_case_and_punctuation_and_gives_zero_for_no_words() -> None:
    encoder = HashingEncoder(dim=32)
    loud, quiet, empty = encoder.encode(["Hello, WORLD!", "hello world", " ?! "])
    np.testing.assert_array_equal(loud, quiet)
    assert not empty.any()


def test_bigrams_tell_word_order_apart() -> None:
    a, b = HashingEncoder().encode(["dog bites man", "man bites dog"])
    assert cosine(a, b) < 0.99


def test_open_encoder_by_name_and_unknown_name_lists_valid_ones() -> None:
    assert isinstance(open_encoder("hashing"), HashingEncoder)
    with pytest.raises(ValueError, match=r"hashing.*minilm"):
        open_encoder("word2vec")


def test_cache_serves_a_second_encoder_without_calling_the_model(tmp_path: Path) -> None:
    texts = ["first item", "second item", "first item", "third item"]
    cold_inner = CountingEncoder()
    cold = CachedEncoder(cold_inner, tmp_path).encode(texts)
    assert sorted(cold_inner.seen) == ["first item", "second item", "third item"]
    warm_inner = CountingEncoder()
    warm = CachedEncoder(warm_inner, tmp_path).encode(texts)
    assert warm_inner.seen == []
    np.testing.assert_array_equal(cold, warm)
    np.testing.assert_array_equal(cold, HashingEncoder(dim=64).encode(texts))


def test_cache_encodes_only_the_texts_it_has_not_seen(tmp_path: Path) -> None:
    inner = CountingEncoder()
    cached = CachedEncoder(inner, tmp_path)
    cached.encode(["old one", "old two"])
    inner.seen.clear()
    progress: list[tuple[int, int]] = []
    texts = ["old two", "brand new", "old one"]
    vectors = cached.encode(texts, progress=lambda done, total: progress.append((done, total)))
    assert inner.seen == ["brand new"]
    assert progress == [(1, 1)]
    np.testing.assert_array_equal(vectors, inner.inner.encode(texts))


def test_cache_keeps_encoders_with_different_names_apart(tmp_path: Path) -> None:
    narrow = open_encoder("hashing", cache_dir=tmp_path).encode(["same text"])
    wide = CachedEncoder(HashingEncoder(dim=512), tmp_path).encode(["same text"])
    assert narrow.shape == (1, 256)
    assert wide.shape == (1, 512)


@pytest.mark.slow
def test_minilm_loads_offline_and_knows_a_murder_from_a_puppy() -> None:
    encoder = open_encoder("minilm")
    murder, police, puppy = encoder.encode(
        ["a detective solves a murder", "police investigate a killing", "a cute cartoon puppy"]
    )
    assert encoder.dim == 384
    assert murder.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(murder), 1.0, rtol=1e-5)
    assert cosine(murder, police) > cosine(murder, puppy) + 0.3
