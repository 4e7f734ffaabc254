"""Content encoders: item text -> unit vectors (MiniLM sentence embeddings, or hashing)."""

from recomatrix.content.base import ENCODERS, ContentEncoder, normalise_rows, open_encoder
from recomatrix.content.cache import CachedEncoder
from recomatrix.content.hashing import HashingEncoder
from recomatrix.content.sentence import SentenceEncoder

__all__ = [
    "ENCODERS",
    "CachedEncoder",
    "ContentEncoder",
    "HashingEncoder",
    "SentenceEncoder",
    "normalise_rows",
    "open_encoder",
]
