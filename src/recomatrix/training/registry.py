"""The model registry: one folder per trained version under `<home>/models/`, newest last."""

from __future__ import annotations

import time
from pathlib import Path


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


def latest_version_dir(root: Path) -> Path | None:
    """The newest complete version (one whose ranker has been exported), or None."""
    versions = sorted(p for p in root.glob("v*") if (p / "ranker" / "model.onnx").exists())
    return versions[-1] if versions else None
