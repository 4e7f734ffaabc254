"""Candidate retrieval: the item catalogue, vector indexes and candidate sources."""

from recomatrix.retrieval.base import Neighbours, VectorIndex
from recomatrix.retrieval.catalog import Catalogue, ItemColumns
from recomatrix.retrieval.index import ExactIndex, HnswIndex, normalise
from recomatrix.retrieval.sources import CandidateSources, SourceSizes
from recomatrix.retrieval.tiered import TieredIndex

__all__ = [
    "CandidateSources",
    "Catalogue",
    "ExactIndex",
    "HnswIndex",
    "ItemColumns",
    "Neighbours",
    "SourceSizes",
    "TieredIndex",
    "VectorIndex",
    "normalise",
]
