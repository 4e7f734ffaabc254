"""Ranking: the DCN-v2 model, its training and ONNX export, and the ONNX Runtime scorer.

Serving needs only the scorer (ONNX Runtime); the model and its training load torch, which
costs ~250 MB of memory and a second of start-up, so they are imported on first use.
"""

from typing import Any

from recomatrix.ranking.base import TASK_NAMES, Ranker, Scores
from recomatrix.ranking.scorer import OnnxScorer

_TRAINING = {
    "DCNConfig": "model",
    "DCNv2": "model",
    "TrainedRanker": "train",
    "load_trained": "train",
    "roc_auc": "train",
    "train_ranker": "train",
}

__all__ = ["TASK_NAMES", "OnnxScorer", "Ranker", "Scores", *_TRAINING]


def __getattr__(name: str) -> Any:
    module = _TRAINING.get(name)
    if module is None:
        raise AttributeError(f"module 'recomatrix.ranking' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"recomatrix.ranking.{module}"), name)
