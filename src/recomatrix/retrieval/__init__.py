"""Candidate retrieval: the item catalogue, vector indexes and candidate sources."""

from recomatrix.retrieval.base import MainIndex, Neighbours, VectorIndex
from recomatrix.retrieval.catalog import Catalogue, ItemColumns
from recomatrix.retrieval.graph import GraphIndex
from recomatrix.retrieval.index import ExactIndex, HnswIndex, normalise
from recomatrix.retrieval.main_index import main_index, main_index_of
from recomatrix.retrieval.sources import CandidateSources, SourceSizes
from recomatrix.retrieval.tiered import TieredIndex

__all__ = [
    "CandidateSources",
    "Catalogue",
    "ExactIndex",
    "GraphIndex",
    "HnswIndex",
    "ItemColumns",
    "MainIndex",
    "Neighbours",
    "SourceSizes",
    "TieredIndex",
    "VectorIndex",
    "main_index",
    "main_index_of",
    "normalise",
]
