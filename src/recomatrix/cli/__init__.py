"""The `recomatrix` command line.

common.py     the app, shared options, settings and backend checks
serving.py    demo, serve, worker, train
measuring.py  eval, bench
"""

from recomatrix.cli import measuring, serving  # noqa: F401  (importing registers the commands)
from recomatrix.cli.common import app

__all__ = ["app"]
