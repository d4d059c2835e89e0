"""Random follower-graph generators; they live in :mod:`lpm.graph.generators` (this path is kept for
existing imports)."""

from lpm.graph.generators import *  # noqa: F401,F403 (a re-export of exactly the package's public names)
from lpm.graph.generators import __all__  # noqa: F401
