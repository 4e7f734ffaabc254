"""The model registry: one folder per trained version under `<home>/models/`, newest last.

    v20261123-130159/
        ranker/         TrainedRanker.save: model.onnx (served), model.pt, metadata.json
        two_tower/      TwoTowerModel.save: weights.pt, config.json
        metadata.json   what the version was trained on, how, and how well

`metadata.json` is written last and atomically, so a folder holding every file below is
complete; `load_models` turns such a folder back into the serving `Models`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from recomatrix.config import Settings
from recomatrix.content.base import ContentEncoder
from recomatrix.engine import Models
from recomatrix.ranking.features import FEATURE_NAMES
from recomatrix.ranking.scorer import OnnxScorer
from recomatrix.training.two_tower import load_two_tower
from recomatrix.types import Event

METADATA_FILE = "metadata.json"
# Every file a loadable version holds; metadata.json last, as it is written last.
REQUIRED_FILES = (
    "ranker/model.onnx",
    "ranker/metadata.json",
    "two_tower/weights.pt",
    "two_tower/config.json",
    METADATA_FILE,
)
LIBRARIES = ("torch", "onnxruntime", "usearch")
_VERSION_NAME = re.compile(r"v(\d{8}-\d{6})(?:-(\d+))?")


class IncompleteVersionError(ValueError):
    """A version folder that is missing, or lacks a file needed to serve it."""


@dataclass(frozen=True, slots=True)
class DataRange:
    """The slice of the event log a version was trained on."""

    first_ts: float | None  # None for an empty log
    last_ts: float | None
    events: int
    users: int  # distinct users in the events
    items: int  # distinct items in the events

    @classmethod
    def of(cls, events: Sequence[Event]) -> DataRange:
        times = [e.ts for e in events]
        return cls(
            first_ts=min(times, default=None),
            last_ts=max(times, default=None),
            events=len(events),
            users=len({e.user_id for e in events}),
            items=len({e.item_id for e in events}),
        )


@dataclass(frozen=True, slots=True)
class VersionMetadata:
    """The contents of a version's metadata.json."""

    version: str
    created_at: str  # UTC, ISO 8601
    data: DataRange
    metrics: dict[str, dict[str, float | None]]  # "two_tower" / "ranker" -> name -> value
    settings: dict[str, Any]  # dataclasses.asdict(Settings), paths as strings
    libraries: dict[str, str]  # package -> installed version


def _without_secrets(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as recorded in a version: API keys are never written to disk."""
    server = dict(settings.get("server", {}))
    if "api_keys" in server:
        server["api_keys"] = f"<{len(server['api_keys'])} keys, not recorded>"
    return {**settings, "server": server}


def write_metadata(
    version_dir: Path,
    *,
    settings: Settings,
    events: Sequence[Event],
    two_tower_metrics: Mapping[str, float],
    ranker_metrics: Mapping[str, float],
) -> VersionMetadata:
    """Write `version_dir/metadata.json`; call it after both models are saved (it marks done)."""
    meta = VersionMetadata(
        version=version_dir.name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        data=DataRange.of(events),
        metrics={
            "two_tower": _json_metrics(two_tower_metrics),
            "ranker": _json_metrics(ranker_metrics),
        },
        settings=_without_secrets(asdict(settings, dict_factory=_paths_as_str)),
        libraries=library_versions(),
    )
    partial = version_dir / f".{METADATA_FILE}.partial"
    partial.write_text(json.dumps(asdict(meta), indent=2, allow_nan=False) + "\n")
    os.replace(partial, version_dir / METADATA_FILE)
    return meta


def read_metadata(version_dir: Path) -> VersionMetadata:
    """The metadata of one version; IncompleteVersionError if it has none."""
    path = version_dir / METADATA_FILE
    if not path.is_file():
        raise IncompleteVersionError(f"model version {version_dir} has no {METADATA_FILE}")
    try:
        raw = json.loads(path.read_text())
        return VersionMetadata(**{**raw, "data": DataRange(**raw["data"])})
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        raise ValueError(f"{path} is not a recomatrix version metadata file: {err}") from err


def missing_files(version_dir: Path) -> list[str]:
    """The files of REQUIRED_FILES that `version_dir` lacks (all of them if it is absent)."""
    return [name for name in REQUIRED_FILES if not (version_dir / name).is_file()]


def list_versions(root: Path) -> list[VersionMetadata]:
    """Metadata of every complete version under `root`, oldest first."""
    return [read_metadata(path) for path in _complete_versions(root)]


def latest_version_dir(root: Path) -> Path | None:
    """The newest complete version, or None."""
    versions = _complete_versions(root)
    return versions[-1] if versions else None


def new_version_dir(root: Path) -> Path:
    """Create and return a fresh version folder named `v<UTC time>` (sortable by age)."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for suffix in range(1000):
        name = f"v{stamp}" + (f"-{suffix}" if suffix else "")
        try:
            (root / name).mkdir()
        except FileExistsError:
            continue
        return root / name
    raise RuntimeError(f"could not create a new model version under {root}")


def load_models(version_dir: Path, *, encoder: ContentEncoder, genres: Sequence[str]) -> Models:
    """The serving models of a saved version; new items are embedded with `encoder`.

    `genres` must be the genre list the two-tower was trained with (its ids are positions
    in it). Raises IncompleteVersionError (a ValueError) naming the first missing file, and
    ValueError when the version does not fit this engine (features, encoder, genres).
    Note: the catalogue's vectors stay those of the tower they were indexed with.
    """
    if not version_dir.is_dir():
        raise IncompleteVersionError(f"no model version at {version_dir}")
    missing = missing_files(version_dir)
    if missing:
        raise IncompleteVersionError(
            f"model version {version_dir.name} is incomplete: {version_dir / missing[0]} "
            "is missing (was training interrupted?)"
        )
    ranker_meta = json.loads((version_dir / "ranker" / "metadata.json").read_text())
    feature_names = tuple(ranker_meta["feature_names"])
    if feature_names != FEATURE_NAMES:
        raise ValueError(
            f"model version {version_dir.name} was trained on features {list(feature_names)}, "
            f"but this engine builds {list(FEATURE_NAMES)}: retrain it"
        )
    tower = load_two_tower(version_dir / "two_tower")
    if tower.config.content_dim != encoder.dim:
        raise ValueError(
            f"model version {version_dir.name} reads {tower.config.content_dim}-d content "
            f"vectors, the encoder {encoder.name!r} makes {encoder.dim}-d ones"
        )
    if tower.config.n_genres != len(genres):
        raise ValueError(
            f"model version {version_dir.name} knows {tower.config.n_genres} genres, "
            f"{len(genres)} were given"
        )
    # Imported here: bootstrap imports this module to create version folders.
    from recomatrix.bootstrap import ItemEmbedder

    return Models(
        version=version_dir.name,
        ranker=OnnxScorer(
            model_path=version_dir / "ranker" / "model.onnx",
            feature_names=feature_names,
            version=version_dir.name,
        ),
        embed_items=ItemEmbedder(encoder=encoder, tower=tower, genres=genres),
        embed_user=tower.user_vector_from_item_vectors,
    )


def embedder_inputs(models: Models) -> tuple[ContentEncoder, list[str]]:
    """The content encoder and genre list that `models` embed new items with."""
    from recomatrix.bootstrap import ItemEmbedder

    embedder = models.embed_items
    if not isinstance(embedder, ItemEmbedder):
        raise ValueError(
            f"model version {models.version} embeds items with {embedder!r}, not an "
            "ItemEmbedder: pass the encoder and genres to load_models yourself"
        )
    return embedder.encoder, list(embedder.genre_index)  # dicts keep insertion order


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a saved model depends on (plus Python)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _complete_versions(root: Path) -> list[Path]:
    """Complete version folders under `root`, oldest first (`-N` suffixes in number order)."""
    found: list[tuple[str, int, Path]] = []
    for path in root.glob("v*") if root.is_dir() else ():
        match = _VERSION_NAME.fullmatch(path.name)
        if match and not missing_files(path):
            found.append((match[1], int(match[2] or 0), path))
    return [path for _, _, path in sorted(found)]


def _json_metrics(metrics: Mapping[str, float]) -> dict[str, float | None]:
    # JSON has no NaN: an undefined metric (e.g. AUC of one-class labels) becomes null.
    return {k: None if math.isnan(v) else float(v) for k, v in metrics.items()}


def _paths_as_str(fields: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in fields}
