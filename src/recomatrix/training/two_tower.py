"""The two-tower retrieval model: item and user vectors in one 64-d cosine space.

The item tower reads an ID embedding plus content (text vector, genre), so a brand-new item
gets a vector from content alone; the user tower pools the user's recent item vectors, so any
user's vector is computable from their history at serving time without retraining.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recomatrix.training.towers import TwoTowerConfig, TwoTowerNet, genre_rows

__all__ = [
    "HistoryExamples",
    "TwoTowerConfig",
    "TwoTowerModel",
    "TwoTowerNet",
    "build_history_examples",
    "load_two_tower",
    "train_two_tower",
]

log = logging.getLogger(__name__)

# Called as progress(steps_done, steps_total) while training.
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class HistoryExamples:
    """One training example per positive: the user's positives strictly before it -> the item.

    Histories are windows into `history_items` (all positives sorted by user, then time):
    example i sees history_items[start[i]:end[i]], oldest first, at most max_history long.
    """

    history_items: np.ndarray
    start: np.ndarray
    end: np.ndarray
    target: np.ndarray
    ts: np.ndarray

    def histories(self, rows: np.ndarray, max_history: int) -> np.ndarray:
        """(len(rows), max_history) item indices, most recent last, left-padded with -1."""
        end = self.end[rows, None]
        positions = end - max_history + np.arange(max_history)
        valid = positions >= self.start[rows, None]
        return np.where(valid, self.history_items[np.clip(positions, 0, None)], -1)


def build_history_examples(
    user_idx: np.ndarray, item_idx: np.ndarray, ts: np.ndarray, *, max_history: int = 50
) -> HistoryExamples:
    """Examples in (user, time) order. Positives sharing a timestamp never see each other."""
    order = np.lexsort((ts, user_idx))
    users, items, times = user_idx[order], item_idx[order], ts[order]
    n = len(order)
    positions = np.arange(n)
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = users[1:] != users[:-1]
    new_moment = new_user.copy()
    new_moment[1:] |= times[1:] != times[:-1]
    user_start = np.maximum.accumulate(np.where(new_user, positions, 0))
    # The history ends where the run of positives with this exact (user, ts) begins.
    end = np.maximum.accumulate(np.where(new_moment, positions, 0))
    start = np.maximum(user_start, end - max_history)
    return HistoryExamples(history_items=items, start=start, end=end, target=items, ts=times)


class TwoTowerModel:
    """A trained two-tower model: item vectors, content-only vectors, user vectors (numpy out)."""

    def __init__(self, *, config: TwoTowerConfig, net: TwoTowerNet, metrics: dict[str, float]):
        self.config = config
        self.net = net.eval()
        self.metrics = metrics
        self._item_vectors: np.ndarray | None = None

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) float32 unit vectors of every trained item, ID and content."""
        if self._item_vectors is None:
            chunks = []
            for start in range(0, self.config.n_items, 8192):
                items = torch.arange(start, min(start + 8192, self.config.n_items))
                chunks.append(self.net.items(items, torch.ones(len(items))))
            self._item_vectors = torch.cat(chunks).numpy()
        return self._item_vectors

    @torch.no_grad()
    def content_vectors(self, content: np.ndarray, genre: np.ndarray) -> np.ndarray:
        """(n, dim) unit vectors for items known only by content (cold start): genre -1 = none."""
        content_t = torch.from_numpy(np.asarray(content, dtype=np.float32)).reshape(
            -1, self.config.content_dim
        )
        genre_t = genre_rows(np.atleast_1d(genre), self.config.n_genres)
        raw = self.net.item_tower.from_content(content_t, genre_t)
        return F.normalize(raw, dim=1).numpy()

    def user_vector_from_item_vectors(self, history_vectors: np.ndarray) -> np.ndarray:
        """(dim,) user vector from the vectors of their positives, oldest first (any items).

        The request path calls this for a user whose trained vector went stale, so it runs
        the user tower in numpy on views of its weights (~3x faster than a torch call for
        one row; always the current weights, equal to `UserTower.forward` within 1e-6).
        """
        recent = np.asarray(history_vectors, dtype=np.float32)[-self.config.max_history :]
        pooled = recent.mean(axis=0) if len(recent) else np.zeros(self.config.dim, np.float32)
        first, second = (m for m in self.net.user_tower.mlp if isinstance(m, nn.Linear))
        w1, b1, w2, b2 = (
            t.detach().numpy() for t in (first.weight, first.bias, second.weight, second.bias)
        )
        out = pooled + w2 @ np.maximum(w1 @ pooled + b1, 0.0) + b2
        unit: np.ndarray = (out / max(float(np.linalg.norm(out)), 1e-12)).astype(np.float32)
        return unit

    def user_vector(self, history_item_idx: Sequence[int]) -> np.ndarray:
        """(dim,) user vector from item indices of their positives, oldest first."""
        vector: np.ndarray = self.user_vectors([history_item_idx])[0]
        return vector

    @torch.no_grad()
    def user_vectors(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(histories), dim) user vectors; an empty history gives the cold-user vector."""
        vectors = self.item_vectors()
        pooled = np.zeros((len(histories), self.config.dim), dtype=np.float32)
        for row, history in enumerate(histories):
            recent = np.asarray(history, dtype=np.int64)[-self.config.max_history :]
            if len(recent):
                pooled[row] = vectors[recent].mean(axis=0)
        return self.net.user_tower(torch.from_numpy(pooled)).numpy()  # type: ignore[no-any-return]

    def save(self, directory: Path | str) -> None:
        """Write weights.pt (state_dict) and config.json (config + metrics) into `directory`."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), path / "weights.pt.tmp")
        os.replace(path / "weights.pt.tmp", path / "weights.pt")
        meta = {"config": asdict(self.config), "metrics": self.metrics}
        (path / "config.json.tmp").write_text(json.dumps(meta, indent=2))
        os.replace(path / "config.json.tmp", path / "config.json")


def load_two_tower(directory: Path | str) -> TwoTowerModel:
    """The model that `TwoTowerModel.save(directory)` wrote."""
    path = Path(directory)
    meta = json.loads((path / "config.json").read_text())
    config = TwoTowerConfig(**meta["config"])
    content = torch.zeros(config.n_items, config.content_dim)
    net = TwoTowerNet(config, content, torch.zeros(config.n_items, dtype=torch.int64))
    net.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
    return TwoTowerModel(config=config, net=net, metrics=dict(meta["metrics"]))


def _batch_loss(
    net: TwoTowerNet,
    histories: np.ndarray,
    targets: np.ndarray,
    log_q: Tensor,
    config: TwoTowerConfig,
) -> Tensor:
    """In-batch sampled softmax with logQ correction over one batch of examples."""
    hist = torch.from_numpy(histories)
    target = torch.from_numpy(targets)
    in_history = hist >= 0
    example_of, _ = in_history.nonzero(as_tuple=True)
    # Each distinct item goes through the item tower once, however often the batch uses it.
    items, inverse = torch.unique(torch.cat([hist[in_history], target]), return_inverse=True)
    keep_id = (torch.rand(len(items)) >= config.id_dropout).float()
    vectors = net.items(items, keep_id, torch.rand(len(items)) < config.genre_dropout)
    # Mean-pool only the real history entries (padding would cost 5-50x the gather).
    summed = vectors.new_zeros(len(target), config.dim)
    summed = summed.index_add(0, example_of, vectors[inverse[: len(example_of)]])
    counts = in_history.sum(dim=1, keepdim=True).clamp(min=1)
    users = net.user_tower(summed / counts)
    item_vecs = vectors[inverse[len(example_of) :]]
    logits = users @ item_vecs.T / config.temperature - log_q[target][None, :]
    # Another row's positive that is this row's own item is no negative.
    same = target[:, None] == target[None, :]
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(target)))


@torch.no_grad()
def _recall_at(
    model: TwoTowerModel,
    examples: HistoryExamples,
    rows: np.ndarray,
    k: int,
    *,
    content_only: bool = True,
) -> dict[str, float]:
    """Share of held-out positives ranked in the top k of all items: full and content-only."""
    config = model.config
    hist = examples.histories(rows, config.max_history)
    users = model.user_vectors([h[h >= 0] for h in hist])
    spaces = [("", model.item_vectors())]
    if content_only:
        genre = model.net.item_genre.numpy()
        genre = np.where(genre == config.n_genres, -1, genre)
        content = model.content_vectors(model.net.item_content.numpy(), genre)
        spaces.append(("_content_only", content))
    targets = examples.target[rows]
    recall: dict[str, float] = {}
    for label, items in spaces:
        hits = 0
        for start in range(0, len(rows), 512):
            scores = users[start : start + 512] @ items.T
            mine = scores[np.arange(len(scores)), targets[start : start + 512]]
            hits += int(((scores > mine[:, None]).sum(axis=1) < k).sum())
        recall[f"recall_at_{k}{label}"] = hits / len(rows)
    return recall


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Use n intra-op threads, then give the process back its previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_two_tower(
    *,
    item_content: np.ndarray,
    item_genre: np.ndarray,
    n_genres: int,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    ts: np.ndarray,
    dim: int = 64,
    epochs: int = 2,
    patience: int | None = None,
    batch_size: int = 1024,
    lr: float = 3e-3,
    max_history: int = 50,
    validation_fraction: float = 0.1,
    max_validation: int = 5000,
    num_threads: int = 2,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> TwoTowerModel:
    """Train on positives (click/like/complete) and report recall@50 on the latest ones.

    Loss: in-batch sampled softmax with logQ popularity correction (Yi et al. 2019,
    "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations"):
    each in-batch logit is reduced by the log of the item's share of training positives,
    so popular items are not over-punished as the negatives they most often are.
    The latest `validation_fraction` of positives (by ts) is held out; `model.metrics`
    holds recall@50 on up to `max_validation` of them, for the full item vectors, the
    content-only vectors (cold start) and a most-popular baseline.

    `epochs` passes, or with `patience` early stopping: at most `epochs` passes, ending
    after `patience` passes without a better held-out recall@50; the number of passes that
    scored best is then trained again from the start on every positive, held-out ones
    included (they are the newest, the ones serving needs most).
    `num_threads` torch threads train (restored after); on tiny data 1 is faster.
    """
    user_idx, item_idx = np.asarray(user_idx, np.int64), np.asarray(item_idx, np.int64)
    ts = np.asarray(ts, np.float64)
    n_items = len(item_content)
    if not len(user_idx) == len(item_idx) == len(ts):
        raise ValueError("user_idx, item_idx and ts must have the same length")
    if len(item_genre) != n_items:
        raise ValueError(f"item_genre has {len(item_genre)} rows, item_content {n_items}")
    if len(item_idx) and (item_idx.min() < 0 or item_idx.max() >= n_items):
        raise ValueError(f"item_idx must lie in 0..{n_items - 1} (rows of item_content)")
    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    content = torch.from_numpy(np.ascontiguousarray(item_content, dtype=np.float32))
    config = TwoTowerConfig(
        n_items=n_items, content_dim=content.shape[1], n_genres=n_genres, dim=dim,
        max_history=max_history,
    )  # fmt: skip
    examples = build_history_examples(user_idx, item_idx, ts, max_history=max_history)
    cutoff = np.quantile(examples.ts, 1.0 - validation_fraction) if validation_fraction else np.inf
    train_rows = np.flatnonzero(examples.ts < cutoff)
    held_out = np.flatnonzero(examples.ts >= cutoff)
    if len(train_rows) == 0:
        raise ValueError("no positives before the validation cut-off: lower validation_fraction")
    rows = rng.choice(held_out, size=min(len(held_out), max_validation), replace=False)
    fit = _Fit(config, content, genre_rows(item_genre, n_genres), examples, batch_size, lr, seed)
    early = patience is not None and len(rows) > 0
    with _torch_threads(num_threads):
        net, scores = fit.run(train_rows, epochs, rows if early else None, patience, progress)
        best_epochs = int(np.argmax(scores)) + 1 if scores else epochs
        if early:
            all_rows = np.arange(len(examples.ts))
            net, _ = fit.run(all_rows, best_epochs, None, None, progress)
        metrics = {
            "train_examples": float(len(train_rows) if not early else len(examples.ts)),
            "epochs": float(best_epochs),
            "final_epoch_loss": fit.last_loss,
            "train_seconds": time.perf_counter() - began,
            **{f"held_out_recall_at_50_epoch_{e + 1}": r for e, r in enumerate(scores)},
        }
        model = TwoTowerModel(config=config, net=net, metrics=metrics)
        if len(rows):
            # After a refit these positives were trained on: the figures are optimistic.
            metrics.update(_recall_at(model, examples, rows, 50))
            counts = np.bincount(examples.target[train_rows], minlength=n_items)
            top = np.argsort(-counts, kind="stable")[:50]
            metrics["recall_at_50_popular"] = float(np.isin(examples.target[rows], top).mean())
            metrics["recall_at_50_random"] = min(50 / n_items, 1.0)
            metrics["validation_examples"] = float(len(rows))
    log.info("two-tower trained: %s", metrics)
    return model


class _Fit:
    """One training run's fixed inputs; `run` trains a fresh net from the same seed."""

    def __init__(
        self,
        config: TwoTowerConfig,
        content: Tensor,
        genre: Tensor,
        examples: HistoryExamples,
        batch_size: int,
        lr: float,
        seed: int,
    ) -> None:
        self.config, self.content, self.genre, self.examples = config, content, genre, examples
        self.batch_size, self.lr, self.seed = batch_size, lr, seed
        self.last_loss = 0.0

    def run(
        self,
        rows: np.ndarray,
        epochs: int,
        held_out: np.ndarray | None,
        patience: int | None,
        progress: ProgressFn | None,
    ) -> tuple[TwoTowerNet, list[float]]:
        """Train on `rows`; with `held_out`, score recall@50 after each pass and stop after
        `patience` passes without a better one. Returns the net as trained (the last pass)
        and the score of each pass: the caller refits for the best number of passes."""
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        config, examples = self.config, self.examples
        net = TwoTowerNet(config, self.content, self.genre)
        counts = np.bincount(examples.target[rows], minlength=config.n_items)
        log_q = torch.from_numpy(np.log(np.maximum(counts, 1) / len(rows))).float()
        id_params = list(net.item_tower.ids.parameters())
        dense_params = [p for p in net.parameters() if all(p is not q for q in id_params)]
        optimisers = [
            torch.optim.SparseAdam(id_params, lr=self.lr),
            torch.optim.Adam(dense_params, lr=self.lr),
        ]
        batches_per_epoch = -(-len(rows) // self.batch_size)
        scores: list[float] = []
        for epoch in range(epochs):
            net.train()
            order, epoch_loss = rng.permutation(rows), 0.0
            for b, start in enumerate(range(0, len(order), self.batch_size)):
                batch = order[start : start + self.batch_size]
                hist = examples.histories(batch, config.max_history)
                loss = _batch_loss(net, hist, examples.target[batch], log_q, config)
                for optimiser in optimisers:
                    optimiser.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                for optimiser in optimisers:
                    optimiser.step()
                epoch_loss += loss.item() / batches_per_epoch
                if progress is not None:
                    progress(epoch * batches_per_epoch + b + 1, epochs * batches_per_epoch)
            self.last_loss = epoch_loss
            log.info("two-tower epoch %d/%d: mean loss %.4f", epoch + 1, epochs, epoch_loss)
            if held_out is None:
                continue
            probe = TwoTowerModel(config=config, net=net, metrics={})
            scores.append(_recall_at(probe, examples, held_out, 50, content_only=False)[
                "recall_at_50"])  # fmt: skip
            log.info("two-tower epoch %d: held-out recall@50 %.4f", epoch + 1, scores[-1])
            # np.argmax: the first best pass (ties keep the earlier one).
            if patience is not None and len(scores) - 1 - int(np.argmax(scores)) >= patience:
                break
        return net.eval(), scores
