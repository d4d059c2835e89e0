"""Graph loaders and converters; they live in :mod:`lpm.graph.io` (this path is kept for existing
imports)."""

from lpm.graph.io import *  # noqa: F401,F403 (a re-export of exactly the package's public names)
from lpm.graph.io import __all__  # noqa: F401
