"""The two towers of the retrieval model and their shapes (`TwoTowerConfig`).

The item tower reads an ID embedding plus content (text vector, genre), so a brand-new item
gets a vector from content alone; the user tower pools the user's recent item vectors.
Training and serving them: `two_tower`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class TwoTowerConfig:
    """Shapes and hyper-parameters; saved next to the weights."""

    n_items: int
    content_dim: int  # width of the content encoder's vectors
    n_genres: int  # genre ids are 0..n_genres-1; -1 means "no genre"
    dim: int = 64  # the retrieval space shared with the ANN index and session vectors
    hidden: int = 128  # width of the content MLP
    genre_dim: int = 16
    max_history: int = 50  # most recent positives pooled into a user vector
    temperature: float = 0.05  # softmax temperature over cosine similarities
    id_dropout: float = 0.4  # share of item rows trained content-only: new items land in-space
    genre_dropout: float = 0.3  # share trained without genre: the text must carry taste too


class ItemTower(nn.Module):
    """normalise(ID embedding + MLP([content, genre embedding]))."""

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        # Sparse gradients: a batch touches a few thousand of the items, Adam need not visit all.
        self.ids = nn.Embedding(config.n_items, config.dim, sparse=True)
        # Zero start: an item the training never saw is exactly its content-only vector.
        nn.init.zeros_(self.ids.weight)
        self.genres = nn.Embedding(config.n_genres + 1, config.genre_dim)  # last row: no genre
        self.content = nn.Sequential(
            nn.Linear(config.content_dim + config.genre_dim, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.dim),
        )

    def from_content(self, content: Tensor, genre: Tensor) -> Tensor:
        """Unnormalised content path; `genre` already maps "no genre" to the last row."""
        return self.content(torch.cat([content, self.genres(genre)], dim=1))  # type: ignore[no-any-return]

    def forward(self, items: Tensor, content: Tensor, genre: Tensor, keep_id: Tensor) -> Tensor:
        id_part = self.ids(items) * keep_id.unsqueeze(1)
        return F.normalize(id_part + self.from_content(content, genre), dim=1)


class UserTower(nn.Module):
    """normalise(pooled + MLP(pooled)): the residual starts the user at the mean of the history."""

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(config.dim, config.dim), nn.ReLU(), nn.Linear(config.dim, config.dim)
        )

    def forward(self, pooled: Tensor) -> Tensor:
        return F.normalize(pooled + self.mlp(pooled), dim=1)


class TwoTowerNet(nn.Module):
    """Both towers plus the item content they read (buffers, so the state_dict is complete)."""

    item_content: Tensor
    item_genre: Tensor

    def __init__(self, config: TwoTowerConfig, content: Tensor, genre: Tensor) -> None:
        super().__init__()
        self.item_tower = ItemTower(config)
        self.user_tower = UserTower(config)
        self.no_genre = config.n_genres
        self.register_buffer("item_content", content)
        self.register_buffer("item_genre", genre)

    def items(self, items: Tensor, keep_id: Tensor, hide_genre: Tensor | None = None) -> Tensor:
        genre = self.item_genre[items]
        if hide_genre is not None:
            genre = genre.masked_fill(hide_genre, self.no_genre)
        return self.item_tower(items, self.item_content[items], genre, keep_id)  # type: ignore[no-any-return]


def genre_rows(genre: np.ndarray, n_genres: int) -> Tensor:
    """Genre ids as embedding rows: "no genre" (-1) is the last row, `n_genres`."""
    genre = np.asarray(genre, dtype=np.int64)
    return torch.from_numpy(np.where(genre < 0, n_genres, genre))
