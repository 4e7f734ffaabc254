"""DCN-v2 ranking: it learns feature interactions, exports faithfully to ONNX, and round-trips."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from recomatrix.ranking import (
    DCNConfig,
    OnnxScorer,
    Ranker,
    TrainedRanker,
    load_trained,
    roc_auc,
    train_ranker,
)

N_FEATURES = 8
FEATURE_NAMES = [f"f{i}" for i in range(N_FEATURES)]
SMALL = DCNConfig(n_features=N_FEATURES, n_cross_layers=2, mlp_hidden=(32, 16))


def interaction_world(n: int, seed: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Click iff f0 * f1 > 0 (an XOR no linear model can rank), complete iff f2 > 0.

    Features are shifted and scaled so the model must use its normalisation buffers.
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, N_FEATURES))
    click = z[:, 0] * z[:, 1] > 0
    complete = z[:, 2] > 0
    flip = rng.random((n, 2)) < 0.05  # label noise: the model must not need exact labels
    y = np.stack([click, complete], axis=1) ^ flip
    X = z * np.arange(1, N_FEATURES + 1) + 10.0
    return X.astype(np.float32), y.astype(np.float32)


@pytest.fixture(scope="module")
def trained() -> TrainedRanker:
    X, y = interaction_world(4000, seed=1)
    return train_ranker(
        X, y, feature_names=FEATURE_NAMES, config=SMALL, epochs=2, batch_size=128, lr=1e-2
    )


@pytest.fixture(scope="module")
def saved_dir(trained: TrainedRanker, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("registry") / "ranker-v7"
    trained.save(directory)
    return directory


def test_cross_layers_alone_learn_a_feature_interaction_a_linear_model_cannot() -> None:
    X, y = interaction_world(4000, seed=1)
    X_test, y_test = interaction_world(2000, seed=2)

    def held_out_click_auc(n_cross_layers: int) -> float:
        # No deep tower: whatever the model ranks beyond a linear score, the cross layers found.
        config = DCNConfig(n_features=N_FEATURES, n_cross_layers=n_cross_layers, mlp_hidden=())
        ranker = train_ranker(
            X, y, feature_names=FEATURE_NAMES, config=config, epochs=2, batch_size=64, lr=1e-2
        )
        return roc_auc(y_test[:, 0], ranker.predict(X_test)[:, 0])

    assert held_out_click_auc(n_cross_layers=1) > 0.8
    assert held_out_click_auc(n_cross_layers=0) < 0.6


def test_full_model_learns_both_tasks_on_held_out_rows(trained: TrainedRanker) -> None:
    X_test, y_test = interaction_world(2000, seed=2)
    probabilities = trained.predict(X_test)
    assert roc_auc(y_test[:, 0], probabilities[:, 0]) > 0.8
    assert roc_auc(y_test[:, 1], probabilities[:, 1]) > 0.8
    assert trained.metrics["val_auc_click"] > 0.8
    assert trained.metrics["val_auc_complete"] > 0.8
    assert 0 < trained.metrics["val_logloss"] < 2 * np.log(2)
    assert (trained.metrics["n_train"], trained.metrics["n_val"]) == (3600, 400)


def test_low_rank_cross_layers_learn_the_interaction_too() -> None:
    X, y = interaction_world(4000, seed=1)
    X_test, y_test = interaction_world(2000, seed=2)
    config = DCNConfig(n_features=N_FEATURES, n_cross_layers=1, low_rank=2, mlp_hidden=())
    ranker = train_ranker(
        X, y, feature_names=FEATURE_NAMES, config=config, epochs=2, batch_size=64, lr=1e-2
    )
    assert roc_auc(y_test[:, 0], ranker.predict(X_test)[:, 0]) > 0.8


def test_onnx_scores_equal_torch_scores(trained: TrainedRanker, saved_dir: Path) -> None:
    X = np.random.default_rng(3).normal(10.0, 5.0, size=(500, N_FEATURES)).astype(np.float32)
    scores = OnnxScorer.from_dir(saved_dir).score(X)
    expected = trained.predict(X)
    np.testing.assert_allclose(scores.click, expected[:, 0], atol=1e-4)
    np.testing.assert_allclose(scores.complete, expected[:, 1], atol=1e-4)


@pytest.mark.parametrize("n_rows", [0, 1, 1000])
def test_scorer_returns_one_probability_per_row(saved_dir: Path, n_rows: int) -> None:
    scorer: Ranker = OnnxScorer.from_dir(saved_dir)
    X = np.random.default_rng(n_rows).normal(10.0, 20.0, size=(n_rows, N_FEATURES))
    scores = scorer.score(X.astype(np.float32))
    assert len(scores) == n_rows
    for column in (scores.click, scores.complete):
        assert column.shape == (n_rows,)
        assert column.dtype == np.float32
        assert np.all((column >= 0.0) & (column <= 1.0))


def test_scorer_rejects_a_feature_matrix_of_the_wrong_width(saved_dir: Path) -> None:
    scorer = OnnxScorer.from_dir(saved_dir)
    with pytest.raises(ValueError, match=r"expected features of shape \(n, 8\).*got \(5, 7\)"):
        scorer.score(np.zeros((5, N_FEATURES - 1), dtype=np.float32))


def test_scorer_refuses_feature_names_that_do_not_match_the_graph(saved_dir: Path) -> None:
    with pytest.raises(ValueError, match="expects 8 features, but 9 feature names"):
        OnnxScorer(model_path=saved_dir / "model.onnx", feature_names=[*FEATURE_NAMES, "extra"])


def test_save_then_load_gives_identical_scores(trained: TrainedRanker, saved_dir: Path) -> None:
    reloaded = load_trained(saved_dir)
    X = np.random.default_rng(4).normal(10.0, 5.0, size=(200, N_FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(reloaded.predict(X), trained.predict(X))
    assert reloaded.config == trained.config
    assert reloaded.feature_names == tuple(FEATURE_NAMES)
    assert reloaded.metrics == trained.metrics


def test_saved_directory_names_the_version_and_the_feature_layout(saved_dir: Path) -> None:
    scorer = OnnxScorer.from_dir(saved_dir)
    metadata = json.loads((saved_dir / "metadata.json").read_text())
    assert sorted(p.name for p in saved_dir.iterdir()) == [
        "metadata.json",
        "model.onnx",
        "model.pt",
    ]
    assert scorer.version == "ranker-v7"
    assert list(scorer.feature_names) == FEATURE_NAMES == metadata["feature_names"]
    assert metadata["config"]["mlp_hidden"] == [32, 16]


def test_training_reports_progress_up_to_the_last_batch() -> None:
    X, y = interaction_world(300, seed=5)
    calls: list[tuple[int, int]] = []
    train_ranker(
        X,
        y,
        feature_names=FEATURE_NAMES,
        config=SMALL,
        epochs=2,
        batch_size=100,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(i, 6) for i in range(1, 7)]  # 270 training rows -> 3 batches per epoch


def test_training_rejects_labels_without_both_tasks() -> None:
    X, y = interaction_world(100, seed=6)
    with pytest.raises(ValueError, match=r"y must have shape \(100, 2\)"):
        train_ranker(X, y[:, :1], feature_names=FEATURE_NAMES, config=SMALL)


def test_auc_equals_the_fraction_of_correctly_ordered_pairs_with_ties_as_half() -> None:
    rng = np.random.default_rng(7)
    labels = rng.random(60) < 0.4
    scores = rng.integers(0, 6, size=60).astype(np.float64)  # many ties
    pairs = list(itertools.product(scores[labels], scores[~labels]))
    brute_force = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert roc_auc(labels, scores) == pytest.approx(brute_force)
    assert np.isnan(roc_auc(np.ones(5), np.arange(5.0)))
