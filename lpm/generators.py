"""Random follower-graph generators; they live in :mod:`lpm.graph.generators` (this path is kept for
existing imports)."""

from lpm.graph.generators import (
    barabasi_albert,
    configuration_model,
    directed_configuration_model,
    holme_kim,
    sbm_homophily,
    stochastic_block_model,
    watts_strogatz,
)

__all__ = [
    "barabasi_albert",
    "holme_kim",
    "watts_strogatz",
    "stochastic_block_model",
    "sbm_homophily",
    "configuration_model",
    "directed_configuration_model",
]
