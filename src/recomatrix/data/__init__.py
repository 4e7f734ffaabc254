"""Datasets as Worlds: the synthetic streaming platform and MovieLens ml-latest-small."""

from recomatrix.data.movielens import MOVIELENS_DIR, load_movielens, rating_event
from recomatrix.data.synthetic import generate_world, stream_live_events
from recomatrix.data.world import World

__all__ = [
    "MOVIELENS_DIR",
    "World",
    "generate_world",
    "load_movielens",
    "rating_event",
    "stream_live_events",
]
