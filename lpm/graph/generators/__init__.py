"""Vectorised random follower-graph generators.

Every generator builds its edge list with whole-tensor operations on the CPU (no Python loop over
nodes or edges; at most a loop over a few resolution rounds or over blocks), draws all randomness
from its own ``torch.Generator`` seeded with the keyword ``seed`` (global RNG state is never read
or changed), validates its arguments at entry (raising :class:`lpm.errors.ConfigError`), and
returns a :class:`lpm.graph.Graph` built by :meth:`Graph.from_edge_index`, which removes self-loops
and merges duplicate edges. ``device=`` moves the finished graph.

Edge direction follows :mod:`lpm.graph`: an edge ``j -> i`` means *i follows j*. Generators of
undirected models return *mutual follows* (both ``j -> i`` and ``i -> j``) unless
``directed=True``; each documents what ``directed=True`` means for it.
"""

from lpm.graph.generators.blocks import sbm_homophily, stochastic_block_model
from lpm.graph.generators.configuration import configuration_model, directed_configuration_model
from lpm.graph.generators.preferential import barabasi_albert, holme_kim
from lpm.graph.generators.small_world import watts_strogatz

__all__ = [
    "barabasi_albert",
    "holme_kim",
    "watts_strogatz",
    "stochastic_block_model",
    "sbm_homophily",
    "configuration_model",
    "directed_configuration_model",
]
