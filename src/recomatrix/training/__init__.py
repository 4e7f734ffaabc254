"""Offline learning: the two-tower retrieval model (`training.two_tower`), ranker rows by
replay (`training.ranker_data`) or by DuckDB ASOF joins over the offline log
(`training.pit`), and the model registry (`training.registry`).

Submodules are imported by name so that loading one trainer never imports another's deps.
"""
