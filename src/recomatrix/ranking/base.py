"""The ranking seam: a `Ranker` scores a batch of candidate feature rows per task.

This module imports neither torch nor onnxruntime, so the request path and other stages
can depend on the contract alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

# The tasks the ranker predicts, in output-column order of the model.
TASK_NAMES: tuple[str, ...] = ("click", "complete")

# Tensor names in the exported ONNX graph; the exporter and the scorer must agree.
ONNX_INPUT = "features"
ONNX_OUTPUT = "scores"


@dataclass(frozen=True, slots=True)
class Scores:
    """Per-candidate probabilities, float32 arrays of shape (n,), in the input row order."""

    click: NDArray[np.float32]  # p(click | impression)
    complete: NDArray[np.float32]  # p(completion | impression), the watch-time proxy

    def __len__(self) -> int:
        return len(self.click)


class Ranker(Protocol):
    """Scores a feature matrix of shape (n_candidates, len(feature_names)) in one call."""

    # Read-only, so a plain attribute of any sequence type satisfies the protocol.
    @property
    def feature_names(self) -> Sequence[str]: ...

    @property
    def version(self) -> str: ...

    def score(self, X: NDArray[np.float32]) -> Scores: ...
