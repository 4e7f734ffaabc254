"""Two-tower retrieval: genre taste is learnt, cold-start content vectors land near the right
users, training examples never see the future, and the model survives a save/load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from recomatrix.training.two_tower import (
    TwoTowerConfig,
    TwoTowerModel,
    TwoTowerNet,
    _batch_loss,
    build_history_examples,
    load_two_tower,
    train_two_tower,
)

N_GENRES, ITEMS_PER_GENRE, N_USERS, CONTENT_DIM = 4, 50, 120, 24


@dataclass
class World:
    """Users who each like one genre; item content is its genre's centroid plus noise."""

    centroids: np.ndarray
    content: np.ndarray
    genre: np.ndarray
    user_genre: np.ndarray
    user_idx: np.ndarray
    item_idx: np.ndarray
    ts: np.ndarray

    def new_items(self, per_genre: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        genre = np.repeat(np.arange(N_GENRES), per_genre)
        return content_of(self.centroids, genre, rng), genre


def content_of(centroids: np.ndarray, genre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy: np.ndarray = centroids[genre] + 0.6 * rng.normal(size=(len(genre), CONTENT_DIM))
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return noisy.astype(np.float32)


def make_world(seed: int = 0, positives_per_user: int = 20) -> World:
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(N_GENRES, CONTENT_DIM))
    genre = np.repeat(np.arange(N_GENRES), ITEMS_PER_GENRE)
    user_genre = rng.integers(0, N_GENRES, N_USERS)
    user_idx = np.repeat(np.arange(N_USERS), positives_per_user)
    # 90% of a user's positives come from their genre, the rest from anywhere.
    liked = user_genre[user_idx] * ITEMS_PER_GENRE + rng.integers(0, ITEMS_PER_GENRE, len(user_idx))
    noise = rng.integers(0, len(genre), len(user_idx))
    item_idx = np.where(rng.random(len(user_idx)) < 0.9, liked, noise)
    ts = rng.uniform(0, 1e5, len(user_idx)).round()
    return World(
        centroids, content_of(centroids, genre, rng), genre, user_genre, user_idx, item_idx, ts
    )


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@pytest.fixture(scope="module")
def model(world: World) -> TwoTowerModel:
    return train_two_tower(
        item_content=world.content,
        item_genre=world.genre,
        n_genres=N_GENRES,
        user_idx=world.user_idx,
        item_idx=world.item_idx,
        ts=world.ts,
        dim=16,
        epochs=12,
        batch_size=128,
        num_threads=1,  # tiny tensors: a second thread only adds synchronisation
        seed=1,
    )


def histories_of(world: World) -> list[list[int]]:
    order = np.argsort(world.ts, kind="stable")
    return [world.item_idx[order][world.user_idx[order] == u].tolist() for u in range(N_USERS)]


def test_users_see_their_genre_at_the_top_of_their_ranking(
    world: World, model: TwoTowerModel
) -> None:
    users = model.user_vectors(histories_of(world))
    top20 = np.argsort(-(users @ model.item_vectors().T), axis=1)[:, :20]
    share_own_genre = (world.genre[top20] == world.user_genre[:, None]).mean()
    assert share_own_genre > 0.9  # random would give 0.25


def test_held_out_recall_is_reported_and_beats_random(model: TwoTowerModel) -> None:
    metrics = model.metrics
    assert metrics["validation_examples"] > 0
    assert metrics["recall_at_50"] > 2 * metrics["recall_at_50_random"]
    assert metrics["recall_at_50_content_only"] > 1.5 * metrics["recall_at_50_random"]


@pytest.mark.parametrize("known_genre", [True, False], ids=["with-genre", "content-only"])
def test_new_items_from_content_alone_land_near_users_who_like_their_genre(
    world: World, model: TwoTowerModel, known_genre: bool
) -> None:
    content, genre = world.new_items(10, np.random.default_rng(7))
    new_vectors = model.content_vectors(content, genre if known_genre else np.full_like(genre, -1))
    similarity = model.user_vectors(histories_of(world)) @ new_vectors.T
    own = genre[None, :] == world.user_genre[:, None]
    own_mean = similarity[own].reshape(N_USERS, -1).mean(axis=1)
    other_mean = similarity[~own].reshape(N_USERS, -1).mean(axis=1)
    assert (own_mean > other_mean).mean() > 0.9


def test_history_holds_exactly_the_latest_positives_strictly_before_each_example() -> None:
    rng = np.random.default_rng(3)
    user_idx = rng.integers(0, 5, 300)
    item_idx = rng.integers(0, 40, 300)
    ts = rng.integers(0, 30, 300).astype(float)  # many ties: same-moment events must not leak
    examples = build_history_examples(user_idx, item_idx, ts, max_history=4)
    padded = examples.histories(np.arange(300), 4)
    order = np.lexsort((ts, user_idx))
    for row, source in enumerate(order):
        assert examples.target[row] == item_idx[source]
        earlier = np.flatnonzero((user_idx == user_idx[source]) & (ts < ts[source]))
        earlier = earlier[np.argsort(ts[earlier], kind="stable")][-4:]
        history = padded[row][padded[row] >= 0]
        assert history.tolist() == item_idx[earlier].tolist()  # oldest first
        assert (padded[row][: 4 - len(history)] == -1).all()  # padding on the left


def test_a_users_first_positive_has_an_empty_history() -> None:
    examples = build_history_examples(
        np.array([7, 7, 8]), np.array([1, 2, 3]), np.array([10.0, 20.0, 5.0])
    )
    assert examples.histories(np.arange(3), 3).tolist() == [[-1, -1, -1], [-1, -1, 1], [-1] * 3]


def test_other_rows_with_the_same_target_are_not_treated_as_negatives() -> None:
    config = TwoTowerConfig(n_items=6, content_dim=3, n_genres=2, dim=4)
    net = TwoTowerNet(config, torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 2, 2]))
    histories = np.array([[0, 1], [-1, 2], [3, 4]])
    # With one distinct target every off-diagonal logit is masked: nothing left to confuse.
    same = _batch_loss(net, histories, np.array([5, 5, 5]), torch.zeros(6), config)
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    distinct = _batch_loss(net, histories, np.array([5, 4, 3]), torch.zeros(6), config)
    assert distinct.item() > 0.01


def test_saved_model_loads_with_identical_vectors_and_metrics(
    model: TwoTowerModel, tmp_path: Path
) -> None:
    model.save(tmp_path / "two_tower")
    loaded = load_two_tower(tmp_path / "two_tower")
    assert loaded.config == model.config
    assert loaded.metrics == model.metrics
    np.testing.assert_allclose(loaded.item_vectors(), model.item_vectors(), atol=1e-6)
    histories = [[1, 2, 3], [], [40]]
    np.testing.assert_allclose(
        loaded.user_vectors(histories), model.user_vectors(histories), atol=1e-6
    )


def test_vectors_are_unit_length_and_users_pool_any_item_vectors(model: TwoTowerModel) -> None:
    items = model.item_vectors()
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)
    cold_user = model.user_vector([])
    assert np.isfinite(cold_user).all()
    assert np.linalg.norm(cold_user) == pytest.approx(1.0, rel=1e-5)
    history = [3, 60, 61, 170]
    np.testing.assert_allclose(
        model.user_vector_from_item_vectors(items[history]), model.user_vector(history), atol=1e-6
    )


def test_training_rejects_item_indices_outside_the_catalogue(world: World) -> None:
    with pytest.raises(ValueError, match="item_idx"):
        train_two_tower(
            item_content=world.content,
            item_genre=world.genre,
            n_genres=N_GENRES,
            user_idx=np.array([0]),
            item_idx=np.array([len(world.genre)]),
            ts=np.array([1.0]),
        )


def test_early_stopping_keeps_the_best_pass_count_and_refits_on_every_positive(
    world: World,
) -> None:
    model = train_two_tower(
        item_content=world.content, item_genre=world.genre, n_genres=N_GENRES,
        user_idx=world.user_idx, item_idx=world.item_idx, ts=world.ts,
        dim=16, epochs=8, patience=1, batch_size=256, num_threads=1,
    )  # fmt: skip
    metrics = model.metrics
    recalls = [metrics[k] for k in sorted(
        (k for k in metrics if k.startswith("held_out_recall_at_50_epoch_")),
        key=lambda k: int(k.rsplit("_", 1)[1]))]  # fmt: skip
    assert 1 <= len(recalls) <= 8
    # The kept pass count is the best-scoring one; it stopped one pass after the last best.
    assert metrics["epochs"] == int(np.argmax(recalls)) + 1
    assert len(recalls) == 8 or len(recalls) == metrics["epochs"] + 1
    # The refit saw the held-out (newest) positives too.
    assert metrics["train_examples"] == len(world.user_idx)
    # The learnt taste is real: held-out recall beats the most-popular list.
    assert max(recalls) > metrics["recall_at_50_popular"]
