"""recomatrix: a real-time two-stage recommender engine.

    from recomatrix import Engine, Event, Item

`Engine` is the whole request path without HTTP; build one from a dataset with
`recomatrix.bootstrap.build_engine(world, settings)`.
"""

# onnxruntime must be loaded before usearch: importing usearch first makes the
# onnxruntime import crash the interpreter (segfault, usearch 2.26 + onnxruntime 1.32 on
# x86_64, measured here). The package import runs before any submodule, so this fixes
# the order for every entry point. See docs/adr/0002-import-order.md.
import onnxruntime as _onnxruntime  # noqa: F401  (import order, see above)

from recomatrix.config import Settings, load_settings
from recomatrix.engine import Engine, Models, Recommendations
from recomatrix.types import Candidate, Event, Item, RuleContext

__all__ = [
    "Candidate",
    "Engine",
    "Event",
    "Item",
    "Models",
    "Recommendations",
    "RuleContext",
    "Settings",
    "load_settings",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # `recomatrix.build_engine` loads the training stack (torch) only when asked for.
    if name == "build_engine":
        from recomatrix.bootstrap import build_engine

        return build_engine
    raise AttributeError(f"module 'recomatrix' has no attribute {name!r}")
