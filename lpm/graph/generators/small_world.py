"""Small-world graphs: Watts-Strogatz."""

from __future__ import annotations

import torch

from lpm.errors import ConfigError
from lpm.graph.core import Graph
from lpm.graph.generators._checks import DeviceLike, _check_int, _check_prob, _check_size, _finish, _rng

__all__ = ["watts_strogatz"]


def watts_strogatz(
    num_nodes: int, k: int, p_rewire: float, *, seed: int, directed: bool = False, device: DeviceLike = None
) -> Graph:
    """Watts-Strogatz small world: a ring lattice with each lattice edge's far end rewired.

    Node ``i`` is joined to ``i + 1, ..., i + k/2`` (mod ``N``); each of these ``N k / 2`` lattice
    edges independently keeps ``i`` and, with probability ``p_rewire``, replaces its far end by a
    uniform node other than ``i``. Rewired edges that duplicate another are merged, so the edge
    count can fall slightly below ``N k / 2`` when ``p_rewire > 0``.

    Args:
        num_nodes: number of agents ``N > k``.
        k: lattice degree, even, ``2 <= k < N``.
        p_rewire: rewiring probability in ``[0, 1]``; ``0`` is the exact lattice.
        seed: seed of the generator's private RNG.
        directed: ``False`` gives mutual follows. ``True`` keeps one edge per lattice edge,
            ``far end -> i``: each agent follows its ``k/2`` (possibly rewired) successors.
        device: where to put the finished graph.

    Raises:
        ConfigError: odd ``k``, ``k < 2``, ``k >= num_nodes``, ``p_rewire`` outside ``[0, 1]``.
    """
    k = _check_int("k", k, 2)
    if k % 2 != 0:
        raise ConfigError(f"Expected an even k (got {k})")
    num_nodes = _check_int("num_nodes", num_nodes)
    if num_nodes <= k:
        raise ConfigError(f"Expected num_nodes > k = {k} (got num_nodes={num_nodes})")
    p_rewire = _check_prob("p_rewire", p_rewire)
    _check_size("watts_strogatz", num_nodes, num_nodes * k)
    gen = _rng(seed)

    half = k // 2
    near = torch.arange(num_nodes, dtype=torch.int64).repeat_interleave(half)
    offset = torch.arange(1, half + 1, dtype=torch.int64).repeat(num_nodes)
    far = torch.remainder(near + offset, num_nodes)
    if p_rewire > 0.0:
        rewire = torch.rand(far.shape, dtype=torch.float64, generator=gen) < p_rewire
        # Uniform over the N - 1 nodes other than `near`: draw in [0, N-1), skip over `near`.
        other = torch.randint(0, num_nodes - 1, far.shape, generator=gen, dtype=torch.int64)
        other = other + (other >= near).long()
        far = torch.where(rewire, other, far)
    return _finish(far, near, num_nodes, directed, device)

