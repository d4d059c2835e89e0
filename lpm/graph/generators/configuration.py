"""Configuration models: random graphs with a given (in- and out-) degree sequence."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from lpm.errors import ConfigError
from lpm.graph.core import Graph
from lpm.graph.generators._checks import DeviceLike, _finish, _rng

__all__ = ["configuration_model", "directed_configuration_model"]


def _as_degrees(name: str, degrees: object) -> Tensor:
    try:
        deg = torch.as_tensor(degrees)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"Expected {name} to be a 1-D sequence of ints ({err})") from None
    if deg.dim() != 1 or deg.numel() == 0:
        raise ConfigError(f"Expected {name} to be a non-empty 1-D sequence (got shape {tuple(deg.shape)})")
    if deg.dtype.is_floating_point or deg.dtype == torch.bool or deg.is_complex():
        raise ConfigError(f"Expected {name} of integer type (got {deg.dtype})")
    deg = deg.to(torch.int64).cpu()
    if int(deg.min()) < 0:
        raise ConfigError(f"Expected {name} >= 0 (got minimum {int(deg.min())})")
    return deg


def configuration_model(degrees: Union[Sequence[int], Tensor], *, seed: int, device: DeviceLike = None) -> Graph:
    """Erased configuration model: an undirected graph with (about) the given degrees.

    Node ``i`` gets ``degrees[i]`` stubs; the stubs are shuffled and paired consecutively; then
    self-loops are dropped and multi-edges merged ("erased"), so realised degrees can fall slightly
    below the requested ones (mostly for hubs). Edges are mutual follows.

    Args:
        degrees: ``(N,)`` non-negative ints with an even, positive sum.
        seed: seed of the generator's private RNG.
        device: where to put the finished graph.

    Raises:
        ConfigError: negative or non-integer degrees, odd or zero sum.
    """
    deg = _as_degrees("degrees", degrees)
    total = int(deg.sum())
    if total == 0 or total % 2 != 0:
        raise ConfigError(f"Expected degrees with an even, positive sum (got sum {total})")
    gen = _rng(seed)
    stubs = torch.repeat_interleave(torch.arange(deg.numel(), dtype=torch.int64), deg)
    stubs = stubs[torch.randperm(total, generator=gen)].view(-1, 2)
    return _finish(stubs[:, 0], stubs[:, 1], deg.numel(), False, device)


def directed_configuration_model(
    in_degrees: Union[Sequence[int], Tensor],
    out_degrees: Union[Sequence[int], Tensor],
    *,
    seed: int,
    device: DeviceLike = None,
) -> Graph:
    """Erased directed configuration model.

    ``in_degrees[i]`` is the number of accounts agent ``i`` follows (edges into ``i``, as
    :meth:`Graph.in_degree`), ``out_degrees[i]`` its number of followers. Out-stubs are paired with
    a random permutation of in-stubs; self-loops are dropped and multi-edges merged.

    Args:
        in_degrees: ``(N,)`` non-negative ints.
        out_degrees: ``(N,)`` non-negative ints with the same positive sum.
        seed: seed of the generator's private RNG.
        device: where to put the finished graph.

    Raises:
        ConfigError: lengths differ, negative degrees, sums differ or are zero.
    """
    din = _as_degrees("in_degrees", in_degrees)
    dout = _as_degrees("out_degrees", out_degrees)
    if din.numel() != dout.numel():
        raise ConfigError(
            f"Expected in_degrees and out_degrees of the same length (got {din.numel()} and {dout.numel()})"
        )
    total_in, total_out = int(din.sum()), int(dout.sum())
    if total_in != total_out:
        raise ConfigError(f"Expected sum(in_degrees) == sum(out_degrees) (got {total_in} and {total_out})")
    if total_in == 0:
        raise ConfigError("Expected a positive degree sum (got 0)")
    gen = _rng(seed)
    nodes = torch.arange(din.numel(), dtype=torch.int64)
    src = torch.repeat_interleave(nodes, dout)
    dst = torch.repeat_interleave(nodes, din)[torch.randperm(total_in, generator=gen)]
    return _finish(src, dst, din.numel(), True, device)

