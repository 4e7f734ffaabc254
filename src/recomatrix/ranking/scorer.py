"""Score candidate batches with an exported DCN-v2 graph on ONNX Runtime (no torch needed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from recomatrix.ranking.base import ONNX_INPUT, ONNX_OUTPUT, TASK_NAMES, Scores

__all__ = ["OnnxScorer", "Scores"]


class OnnxScorer:
    """A `Ranker` over model.onnx: one session, one `run` per request batch.

    One intra-op thread by default: at ~300 candidates a request is latency-bound and
    thread hand-offs cost more than they save; concurrency comes from serving requests in
    parallel. `InferenceSession.run` is thread-safe, so one scorer serves all threads.
    """

    def __init__(
        self,
        *,
        model_path: Path,
        feature_names: Sequence[str],
        intra_op_threads: int = 1,
        version: str | None = None,
    ) -> None:
        self.feature_names: tuple[str, ...] = tuple(feature_names)
        self.version = version if version is not None else model_path.parent.name
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._check_graph(model_path)

    @classmethod
    def from_dir(cls, directory: Path, *, intra_op_threads: int = 1) -> OnnxScorer:
        """Open a saved ranker directory; its name is the model version."""
        metadata = json.loads((directory / "metadata.json").read_text())
        return cls(
            model_path=directory / "model.onnx",
            feature_names=metadata["feature_names"],
            intra_op_threads=intra_op_threads,
            version=directory.name,
        )

    def score(self, X: NDArray[np.float32]) -> Scores:
        """p(click) and p(complete) for each row of X, shape (n, len(feature_names))."""
        n_features = len(self.feature_names)
        if X.ndim != 2 or X.shape[1] != n_features:
            raise ValueError(
                f"expected features of shape (n, {n_features}) for model {self.version}, "
                f"got {X.shape}"
            )
        if len(X) == 0:
            empty = np.empty(0, dtype=np.float32)
            return Scores(click=empty, complete=empty.copy())
        rows = np.ascontiguousarray(X, dtype=np.float32)
        (probabilities,) = self._session.run([ONNX_OUTPUT], {ONNX_INPUT: rows})
        # Columns of a row-major (n, 2) array are strided views: copy into packed arrays.
        return Scores(
            click=np.ascontiguousarray(probabilities[:, 0]),
            complete=np.ascontiguousarray(probabilities[:, 1]),
        )

    def _check_graph(self, model_path: Path) -> None:
        """Fail at load, not on the first request, when graph and feature names disagree."""
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        if ONNX_INPUT not in inputs or ONNX_OUTPUT not in outputs:
            raise ValueError(
                f"{model_path} must map input {ONNX_INPUT!r} to output {ONNX_OUTPUT!r}, "
                f"has inputs {sorted(inputs)} and outputs {sorted(outputs)}"
            )
        graph_features = inputs[ONNX_INPUT][1]
        if graph_features != len(self.feature_names):
            raise ValueError(
                f"{model_path} expects {graph_features} features, "
                f"but {len(self.feature_names)} feature names were given"
            )
        graph_tasks = outputs[ONNX_OUTPUT][1]
        if graph_tasks != len(TASK_NAMES):
            raise ValueError(
                f"{model_path} outputs {graph_tasks} scores per row, "
                f"expected {len(TASK_NAMES)} {TASK_NAMES}"
            )
