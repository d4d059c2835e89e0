"""Argument checks, seeding and the final graph build shared by the generators."""

from __future__ import annotations

import numbers
from typing import Optional, Union

import torch
from torch import Tensor

from lpm.errors import ConfigError
from lpm.graph.core import Graph, check_graph_size

DeviceLike = Union[torch.device, str, None]

def _check_int(name: str, value: object, minimum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # int, numpy ints
        raise ConfigError(f"Expected {name} to be an int (got {type(value).__name__} {value!r})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"Expected {name} >= {minimum} (got {value})")
    return value


def _check_prob(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"Expected {name} to be a float in [0, 1] (got {type(value).__name__} {value!r})")
    value = float(value)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ConfigError(f"Expected {name} in [0, 1] (got {value})")
    return value


def _check_size(name: str, num_nodes: int, num_edges: float) -> None:
    """Fail fast (ResourceError) when the generated graph could not fit in memory; the generator's
    own buffers (a few int64 per edge) are covered by doubling the edge count."""
    check_graph_size(num_nodes, int(2 * num_edges), f"a {name} graph")


def _rng(seed: object) -> torch.Generator:
    seed = _check_int("seed", seed)
    if not -(2**63) <= seed < 2**64:
        raise ConfigError(f"Expected a seed in [-2**63, 2**64) (got {seed})")
    return torch.Generator().manual_seed(seed)


def _uniform_below(high: Tensor, gen: torch.Generator) -> Tensor:
    """One uniform integer in ``[0, high[i])`` per entry of the int64 tensor ``high`` (all > 0)."""
    u = torch.rand(high.shape, dtype=torch.float64, generator=gen)
    return torch.minimum((u * high.to(torch.float64)).long(), high - 1)


def _finish(src: Tensor, dst: Tensor, num_nodes: int, directed: bool, device: DeviceLike) -> Graph:
    """Graph from ``src -> dst`` edges (both directions when not ``directed``), moved to ``device``."""
    if directed:
        edge_index = torch.stack([src, dst])
    else:
        edge_index = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    graph = Graph.from_edge_index(edge_index, num_nodes)
    return graph.to(device) if device is not None else graph

