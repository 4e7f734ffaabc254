"""Offline learning: the two-tower retrieval model (`training.two_tower`) and the ranker.

Submodules are imported by name so that loading one trainer never imports another's deps.
"""
