"""Train the DCN-v2 ranker on (features, click, complete) rows, evaluate it, export it to ONNX.

A trained ranker is saved as a directory: model.onnx (served), model.pt (reloadable torch
weights and config) and metadata.json (feature names, metrics, config).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from recomatrix.ranking.base import ONNX_INPUT, ONNX_OUTPUT, TASK_NAMES
from recomatrix.ranking.model import DCNConfig, DCNv2

ONNX_OPSET = 17
# Training never takes more than 2 threads: the machines have 2 cores shared with serving.
# 1 is the default because the model is small: 200k x 32 rows for 3 epochs took 3.1 s on 1
# or 2 threads with idle cores, but 4-12 s on 1 and 50-107 s on 2 while other processes held
# the cores (OpenMP workers spin at every barrier when their core is taken).
MAX_TRAIN_THREADS = 2


def roc_auc(labels: NDArray[Any], scores: NDArray[Any]) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U), ties sharing their mean rank.

    NaN when the labels hold a single class, where AUC is undefined.

    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    positive = np.asarray(labels).astype(bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ordered = np.asarray(scores)[order]
    # Runs of equal scores [start, end) share the mean of the 1-based ranks start+1 .. end.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    ranks = np.empty(len(ordered), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass
class TrainedRanker:
    """A trained DCN-v2 with the feature layout it expects and its validation metrics."""

    model: DCNv2
    config: DCNConfig
    feature_names: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)

    def predict(self, X: NDArray[np.float32]) -> NDArray[np.float32]:
        """Torch probabilities of shape (n, n_tasks), in eval mode (no dropout)."""
        self.model.eval()
        with torch.inference_mode():
            probabilities = self.model(torch.as_tensor(X, dtype=torch.float32))
        out: NDArray[np.float32] = probabilities.numpy()
        return out

    def export_onnx(self, path: Path) -> None:
        """Write an ONNX graph (opset 17, dynamic batch) mapping "features" to "scores"."""
        self.model.eval()
        example = torch.zeros(2, self.config.n_features)
        with warnings.catch_warnings():
            # The torch.export-based exporter needs onnxscript, which we do not ship; the
            # TorchScript exporter handles this static graph exactly and warns it is legacy.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                self.model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
            )
        onnx.checker.check_model(str(path), full_check=True)

    def save(self, directory: Path) -> None:
        """Write model.onnx, model.pt and metadata.json into `directory` (created if missing)."""
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"state_dict": self.model.state_dict(), "config": self.config.to_dict()},
            directory / "model.pt",
        )
        metadata = {
            "feature_names": list(self.feature_names),
            "tasks": list(TASK_NAMES),
            # JSON has no NaN: an undefined AUC (single-class validation labels) becomes null.
            "metrics": {k: None if math.isnan(v) else v for k, v in self.metrics.items()},
            "config": self.config.to_dict(),
        }
        (directory / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        # model.onnx appears last and whole (rename is atomic): a registry that finds it
        # finds a complete directory, never a half-written graph.
        partial = directory / "model.onnx.partial"
        self.export_onnx(partial)
        partial.replace(directory / "model.onnx")


def load_trained(directory: Path) -> TrainedRanker:
    """Reload a ranker written by `TrainedRanker.save` as a torch model in eval mode."""
    metadata = json.loads((directory / "metadata.json").read_text())
    checkpoint = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
    config = DCNConfig.from_dict(checkpoint["config"])
    model = DCNv2(config)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    metrics = {k: math.nan if v is None else v for k, v in metadata["metrics"].items()}
    return TrainedRanker(model, config, tuple(metadata["feature_names"]), metrics)


def train_ranker(
    X: NDArray[np.floating[Any]],
    y: NDArray[Any],
    *,
    feature_names: Sequence[str],
    config: DCNConfig | None = None,
    epochs: int = 3,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    val_fraction: float = 0.1,
    progress: Callable[[int, int], None] | None = None,
    threads: int = 1,
) -> TrainedRanker:
    """Fit DCN-v2 on X (n, n_features) and binary labels y (n, 2) = (click, complete).

    A random `val_fraction` of rows is held out for AUC and log loss; normalisation stats
    come from the training rows only. `progress(batches_done, batches_total)` is called
    after every batch. Torch uses `threads` (at most 2) intra-op threads meanwhile.
    """
    n_tasks = len(TASK_NAMES)
    config = config or DCNConfig(n_features=len(feature_names))
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise ValueError(
            f"X must have shape (n, {len(feature_names)}) to match feature_names, got {X.shape}"
        )
    if config.n_features != X.shape[1] or config.n_tasks != n_tasks:
        raise ValueError(
            f"config needs n_features={X.shape[1]} and n_tasks={n_tasks}, "
            f"got {config.n_features} and {config.n_tasks}"
        )
    if y.shape != (len(X), n_tasks):
        raise ValueError(
            f"y must have shape ({len(X)}, {n_tasks}) (click, complete), got {y.shape}"
        )
    if min(epochs, batch_size, threads) < 1:
        raise ValueError(
            f"epochs, batch_size and threads must be >= 1, got {epochs}, {batch_size}, {threads}"
        )
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, round(len(X) * val_fraction))
    if len(X) - n_val < 1:
        raise ValueError(f"need at least 2 rows to train and validate, got {len(X)}")

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, MAX_TRAIN_THREADS))
    try:
        torch.manual_seed(seed)
        shuffled = torch.as_tensor(np.random.default_rng(seed).permutation(len(X)))
        val_rows, train_rows = shuffled[:n_val], shuffled[n_val:]
        features = torch.as_tensor(np.asarray(X, dtype=np.float32))
        labels = torch.as_tensor(np.asarray(y, dtype=np.float32))
        x_train, y_train = features[train_rows], labels[train_rows]

        model = DCNv2(config)
        x_train_np = x_train.numpy()
        model.set_normalization(x_train_np.mean(axis=0), x_train_np.std(axis=0))
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        batches_per_epoch = math.ceil(len(train_rows) / batch_size)
        total = epochs * batches_per_epoch
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(train_rows))
            for b in range(batches_per_epoch):
                batch = order[b * batch_size : (b + 1) * batch_size]
                logits = model.logits(x_train[batch])
                # Mean BCE per task, summed: each task weighs the same whatever its base rate.
                per_task = F.binary_cross_entropy_with_logits(
                    logits, y_train[batch], reduction="none"
                ).mean(dim=0)
                loss = per_task.sum()
                optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                optimizer.step()
                if progress is not None:
                    progress(epoch * batches_per_epoch + b + 1, total)
        model.eval()
        metrics = _validation_metrics(model, features[val_rows], labels[val_rows])
    finally:
        torch.set_num_threads(previous_threads)
    metrics |= {"n_train": len(train_rows), "n_val": n_val}
    return TrainedRanker(model, config, tuple(feature_names), metrics)


def _validation_metrics(model: DCNv2, x_val: torch.Tensor, y_val: torch.Tensor) -> dict[str, float]:
    """AUC per task and the mean binary log loss over tasks on the held-out rows."""
    with torch.inference_mode():
        logits = model.logits(x_val)
        logloss = F.binary_cross_entropy_with_logits(logits, y_val).item()
        probabilities = torch.sigmoid(logits).numpy()
    labels = y_val.numpy()
    metrics = {
        f"val_auc_{task}": roc_auc(labels[:, i], probabilities[:, i])
        for i, task in enumerate(TASK_NAMES)
    }
    return metrics | {"val_logloss": logloss}
