"""Offline evaluation: time split, replay of the test log, metrics, and baselines."""

from recomatrix.evaluation.metrics import RankingScores, Summary, rank_of
from recomatrix.evaluation.protocol import ReplayResult, System, replay
from recomatrix.evaluation.run import EvalConfig, EvalReport, evaluate
from recomatrix.evaluation.split import POSITIVE_TYPES, Arrival, Split, split_by_time

__all__ = [
    "POSITIVE_TYPES",
    "Arrival",
    "EvalConfig",
    "EvalReport",
    "RankingScores",
    "ReplayResult",
    "Split",
    "Summary",
    "System",
    "evaluate",
    "rank_of",
    "replay",
    "split_by_time",
]
