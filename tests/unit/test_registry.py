"""The model registry: every version records what it was trained on, a complete version
loads back into serving models, an incomplete one says which file it lacks, and a running
engine switches versions while requests keep being answered."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from recomatrix.bootstrap import build_engine
from recomatrix.config import Settings, load_settings
from recomatrix.data import World, generate_world
from recomatrix.engine import Engine, Models
from recomatrix.ranking.features import FEATURE_NAMES
from recomatrix.ranking.train import load_trained
from recomatrix.training.registry import (
    IncompleteVersionError,
    embedder_inputs,
    latest_version_dir,
    list_versions,
    load_models,
    new_version_dir,
    read_metadata,
    write_metadata,
)
from recomatrix.training.two_tower import load_two_tower
from recomatrix.types import Item


@dataclass(frozen=True)
class Built:
    engine: Engine
    world: World
    settings: Settings
    first: Models  # the models the build served, whatever a test swaps in later

    @property
    def root(self) -> Path:
        return self.settings.data.home / "models"

    @property
    def first_dir(self) -> Path:
        return self.root / self.first.version


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    world = generate_world(n_items=300, n_users=60, n_events=4000, n_viral=1, seed=3)
    settings = load_settings(
        env={},
        overrides={
            "data": {"encoder": "hashing", "home": tmp_path_factory.mktemp("home")},
            "training": {"two_tower_epochs": 1, "ranker_epochs": 1},
        },
    )
    engine, _ = build_engine(world, settings)
    yield Built(engine, world, settings, engine.models)
    engine.close()


def save_copy(source: Path, root: Path, settings: Settings, world: World) -> Path:
    """A new version holding the models of `source`, saved through their own save()."""
    target = new_version_dir(root)
    load_trained(source / "ranker").save(target / "ranker")
    load_two_tower(source / "two_tower").save(target / "two_tower")
    nan = {"val_auc_click": float("nan")}  # stored as null
    write_metadata(target, settings=settings, events=world.events, two_tower_metrics={},
                   ranker_metrics=nan)  # fmt: skip
    return target


def test_build_records_data_range_metrics_settings_and_libraries(built: Built) -> None:
    meta = read_metadata(built.first_dir)
    events = built.world.events
    assert meta.version == built.first.version
    assert datetime.fromisoformat(meta.created_at).tzinfo == UTC
    assert meta.data.first_ts == min(e.ts for e in events)
    assert meta.data.last_ts == max(e.ts for e in events)
    assert meta.data.events == len(events)
    assert meta.data.users == len({e.user_id for e in events})
    assert meta.data.items == len({e.item_id for e in events})
    assert "recall_at_50" in meta.metrics["two_tower"]
    assert "val_logloss" in meta.metrics["ranker"]
    assert meta.settings["data"]["home"] == str(built.settings.data.home)
    assert meta.settings["training"]["ranker_epochs"] == 1
    assert meta.libraries["torch"] == torch.__version__
    assert meta.libraries["onnxruntime"] == onnxruntime.__version__
    assert built.first.version in [v.version for v in list_versions(built.root)]


def test_a_loaded_version_scores_and_embeds_like_the_models_it_was_saved_from(
    built: Built,
) -> None:
    encoder, genres = embedder_inputs(built.first)
    assert genres == built.world.genres
    loaded = load_models(built.first_dir, encoder=encoder, genres=genres)
    assert loaded.version == built.first.version
    X = np.random.default_rng(0).normal(size=(50, len(FEATURE_NAMES))).astype(np.float32)
    np.testing.assert_allclose(loaded.ranker.score(X).click, built.first.ranker.score(X).click)
    items = [Item(f"new-{g}", f"a {g} story", genres=(g,)) for g in built.world.genres[:3]]
    np.testing.assert_allclose(loaded.embed_items(items), built.first.embed_items(items), atol=1e-6)
    history = built.engine.catalogue.vectors([it.item_id for it in built.world.items[:5]])
    np.testing.assert_allclose(loaded.embed_user(history), built.first.embed_user(history),
                               atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("lost", ["ranker/model.onnx", "metadata.json"])
def test_a_version_missing_a_file_is_not_loadable_and_the_error_names_it(
    built: Built, tmp_path: Path, lost: str
) -> None:
    copy = tmp_path / "v20260101-000000"
    shutil.copytree(built.first_dir, copy)
    (copy / lost).unlink()
    encoder, genres = embedder_inputs(built.first)
    with pytest.raises(IncompleteVersionError, match=lost.split("/")[-1]):
        load_models(copy, encoder=encoder, genres=genres)
    assert latest_version_dir(tmp_path) is None
    assert list_versions(tmp_path) == []


def test_versions_are_ordered_by_time_then_by_numeric_suffix(built: Built, tmp_path: Path) -> None:
    names = ["v20260101-000000-10", "v20260101-000000", "v20260101-000000-2", "v20251231-235959"]
    for name in names:
        shutil.copytree(built.first_dir, tmp_path / name)
    (tmp_path / "not-a-version").mkdir()
    assert latest_version_dir(tmp_path) == tmp_path / "v20260101-000000-10"
    shutil.rmtree(tmp_path / "v20260101-000000-10")
    assert latest_version_dir(tmp_path) == tmp_path / "v20260101-000000-2"
    assert len(list_versions(tmp_path)) == 3


def test_models_without_an_item_embedder_cannot_lend_their_encoder(built: Built) -> None:
    models = Models("v0", built.first.ranker, lambda items: np.zeros((len(items), 2)),
                    lambda vectors: vectors.mean(axis=0))  # fmt: skip
    with pytest.raises(ValueError, match="not an ItemEmbedder"):
        embedder_inputs(models)


def test_reload_of_an_unknown_or_incomplete_version_fails_and_keeps_serving(
    built: Built, tmp_path: Path
) -> None:
    serving = built.engine.models.version
    with pytest.raises(ValueError, match="no model version"):
        built.engine.reload_models(tmp_path / "v20990101-000000")
    partial = tmp_path / "v20990101-000001"
    shutil.copytree(built.first_dir, partial)
    (partial / "two_tower" / "weights.pt").unlink()
    with pytest.raises(ValueError, match=r"weights\.pt"):
        built.engine.reload_models(partial)
    assert built.engine.models.version == serving


def test_reload_switches_the_version_while_many_threads_keep_getting_answers(
    built: Built,
) -> None:
    engine = built.engine
    second = save_copy(built.first_dir, built.root, built.settings, built.world)
    assert read_metadata(second).metrics["ranker"] == {"val_auc_click": None}  # JSON has no NaN
    user = built.world.events[-1].user_id
    # Per thread: (asked after the swap returned?, version that answered), in order.
    seen: list[list[tuple[bool, str]]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    stop, swapped = threading.Event(), threading.Event()
    started = [threading.Event() for _ in seen]
    answered_after = [threading.Event() for _ in seen]

    def ask(i: int) -> None:
        try:
            while not stop.is_set():
                after = swapped.is_set()
                seen[i].append((after, engine.recommend(user, n=10).model_version))
                (answered_after if after else started)[i].set()
        except BaseException as err:  # reported below, with the thread's results
            errors.append(err)
            started[i].set()
            answered_after[i].set()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(seen))]
    for thread in threads:
        thread.start()
    assert all(s.wait(timeout=60) for s in started)
    assert engine.reload_models() == second.name  # the newest complete version
    swapped.set()
    assert all(a.wait(timeout=60) for a in answered_after)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert engine.recommend(user).model_version == second.name
    for answers in seen:
        assert {v for _, v in answers} <= {built.first.version, second.name}
        assert {v for after, v in answers if after} == {second.name}
        versions = [v for _, v in answers]
        switched = versions.index(second.name)  # once a thread got the new version ...
        assert set(versions[switched:]) == {second.name}  # ... it never got the old one again
    assert engine.reload_models(built.first_dir) == built.first.version


def test_api_keys_are_never_written_into_a_versions_metadata() -> None:
    from dataclasses import asdict

    from recomatrix.config import load_settings
    from recomatrix.training.registry import _without_secrets

    secret = "k" * 24
    settings = load_settings(env={}, overrides={"server": {"api_keys": (secret,)}})
    recorded = _without_secrets(asdict(settings))
    assert secret not in json.dumps(recorded, default=str)
    assert recorded["server"]["api_keys"] == "<1 keys, not recorded>"
