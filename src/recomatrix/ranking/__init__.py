"""Ranking: the DCN-v2 model, its training and ONNX export, and the ONNX Runtime scorer."""

from recomatrix.ranking.base import TASK_NAMES, Ranker, Scores
from recomatrix.ranking.model import DCNConfig, DCNv2
from recomatrix.ranking.scorer import OnnxScorer
from recomatrix.ranking.train import TrainedRanker, load_trained, roc_auc, train_ranker

__all__ = [
    "TASK_NAMES",
    "DCNConfig",
    "DCNv2",
    "OnnxScorer",
    "Ranker",
    "Scores",
    "TrainedRanker",
    "load_trained",
    "roc_auc",
    "train_ranker",
]
