"""The DCN-v2 ranking model in one file: a cross network, a deep MLP on top, one head per task.

Reference: Wang et al. 2021, "DCN V2: Improved Deep & Cross Network and Practical Lessons for
Web-scale Learning to Rank Systems", WWW '21, https://arxiv.org/abs/2008.13535.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

CLAMP_SIGMAS = 5.0  # standardised features are clipped to +-5 standard deviations


@dataclass(frozen=True)
class DCNConfig:
    n_features: int  # width of the feature row the engine builds per candidate
    n_cross_layers: int = 3  # explicit interactions of order up to n_cross_layers + 1
    low_rank: int | None = None  # None: full-rank W (d x d); r: W = U V^T with U, V of d x r
    mlp_hidden: tuple[int, ...] = (256, 128)  # deep tower on the cross output; () for none
    dropout: float = 0.1  # after each hidden layer of the deep tower, training only
    n_tasks: int = 2  # output columns: 0 = p(click), 1 = p(complete)

    def __post_init__(self) -> None:
        if self.n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {self.n_features}")
        if self.n_cross_layers < 0:
            raise ValueError(f"n_cross_layers must be >= 0, got {self.n_cross_layers}")
        if self.low_rank is not None and self.low_rank < 1:
            raise ValueError(f"low_rank must be None or >= 1, got {self.low_rank}")
        if any(width < 1 for width in self.mlp_hidden):
            raise ValueError(f"mlp_hidden widths must be >= 1, got {self.mlp_hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {self.n_tasks}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DCNConfig:
        # JSON turns the mlp_hidden tuple into a list; the frozen config wants it hashable.
        return cls(**{**values, "mlp_hidden": tuple(values.get("mlp_hidden", (256, 128)))})


class CrossLayer(nn.Module):
    """One DCN-v2 cross layer: x_{l+1} = x0 * (W x_l + b) + x_l, with W full or low-rank."""

    def __init__(self, width: int, low_rank: int | None) -> None:
        super().__init__()
        if low_rank is None:
            self.project: nn.Module = nn.Linear(width, width)
        else:
            # The paper's low-rank cross, W = U V^T: 2 d r weights instead of d^2, for wide rows.
            self.project = nn.Sequential(
                nn.Linear(width, low_rank, bias=False), nn.Linear(low_rank, width)
            )

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x0 * self.project(x) + x
        return out


class DCNv2(nn.Module):
    """Stacked DCN-v2: normalise -> cross network -> deep MLP -> one logit per task.

    `forward` returns probabilities (sigmoid inside), so the exported ONNX graph does too;
    training uses `logits` with a numerically stable BCE.
    """

    # Declared so type checkers see tensors rather than nn.Module.__getattr__'s union.
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, config: DCNConfig) -> None:
        super().__init__()
        self.config = config
        d = config.n_features
        # Buffers, not parameters: saved in the state_dict and baked into the ONNX graph, so
        # serving feeds raw features exactly as training saw them before normalisation.
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        self.cross = nn.ModuleList(
            CrossLayer(d, config.low_rank) for _ in range(config.n_cross_layers)
        )
        deep: list[nn.Module] = []
        width = d
        for hidden in config.mlp_hidden:
            deep += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        self.deep = nn.Sequential(*deep)
        # One row of weights per task over the shared tower: the multi-task heads.
        self.heads = nn.Linear(width, config.n_tasks)

    def set_normalization(
        self, mean: NDArray[np.floating[Any]], std: NDArray[np.floating[Any]]
    ) -> None:
        """Fix the input standardisation; constant features (std ~ 0) pass through centred."""
        safe_std = np.where(std > 1e-6, std, 1.0)
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(safe_std, dtype=torch.float32))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw scores of shape (batch, n_tasks), before the sigmoid."""
        # Clamp standardised inputs: a serving value far outside the training range (a live
        # session when training rows rarely had one) must not saturate every head to 0 or 1.
        x0 = torch.clamp((x - self.feature_mean) / self.feature_std, -CLAMP_SIGMAS, CLAMP_SIGMAS)
        xl = x0
        for layer in self.cross:
            xl = layer(x0, xl)
        out: torch.Tensor = self.heads(self.deep(xl))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities of shape (batch, n_tasks): column 0 p(click), column 1 p(complete)."""
        return torch.sigmoid(self.logits(x))
