"""Stochastic block models, with given block-pair probabilities or with a homophily level."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from lpm.errors import ConfigError
from lpm.graph.core import Graph
from lpm.graph.generators._checks import DeviceLike, _check_int, _check_prob, _check_size, _finish, _rng

__all__ = ["stochastic_block_model", "sbm_homophily"]


def _distinct_sample(population: int, count: int, gen: torch.Generator) -> Tensor:
    """A uniformly random ``count``-subset of ``range(population)`` (int64, in random order)."""
    if count == 0:
        return torch.zeros(0, dtype=torch.int64)
    if population <= 4 * count or population <= (1 << 20):
        return torch.randperm(population, generator=gen)[:count]
    # Sparse case: draw with replacement and keep values in order of first appearance; the first
    # `count` distinct values of an i.i.d. uniform sequence are a uniform random subset.
    draws = torch.zeros(0, dtype=torch.int64)
    while True:
        extra = count + count // 4 + 16
        draws = torch.cat([draws, torch.randint(0, population, (extra,), generator=gen, dtype=torch.int64)])
        values, inverse = torch.unique(draws, return_inverse=True)
        if values.numel() < count:
            continue
        position = torch.arange(draws.numel(), dtype=torch.int64)
        first = torch.full((values.numel(),), draws.numel(), dtype=torch.int64)
        first = first.scatter_reduce(0, inverse, position, reduce="amin")
        order = torch.argsort(first)[:count]
        return values[order]


def _triangular_pair(index: Tensor) -> tuple[Tensor, Tensor]:
    """Decode ``index`` in ``[0, n(n-1)/2)`` into the pair ``(i, j)`` with ``0 <= j < i``."""
    i = torch.floor((1.0 + torch.sqrt(1.0 + 8.0 * index.to(torch.float64))) / 2.0).long()
    # Correct float rounding by one step either way.
    i = torch.where(i * (i - 1) // 2 > index, i - 1, i)
    i = torch.where((i + 1) * i // 2 <= index, i + 1, i)
    return i, index - i * (i - 1) // 2


def _as_block_sizes(block_sizes: object) -> list[int]:
    if isinstance(block_sizes, Tensor):
        block_sizes = block_sizes.tolist()
    try:
        sizes = list(block_sizes)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"Expected block_sizes to be a sequence of ints (got {type(block_sizes).__name__})") from None
    if len(sizes) == 0:
        raise ConfigError("Expected at least one block (got block_sizes=[])")
    for b, size in enumerate(sizes):
        _check_int(f"block_sizes[{b}]", size, 1)
    return [int(s) for s in sizes]


def stochastic_block_model(
    block_sizes: Sequence[int],
    edge_probs: Union[Sequence[Sequence[float]], Tensor],
    *,
    seed: int,
    directed: bool = True,
    device: DeviceLike = None,
) -> Graph:
    """Stochastic block model, sampled sparsely (never materialises an ``N x N`` matrix).

    Nodes are numbered block by block (block 0 holds nodes ``0..block_sizes[0]-1``, and so on).
    For each block pair the number of edges is drawn from its exact Binomial law and that many
    distinct node pairs are drawn uniformly, so each possible edge is present independently with
    its block pair's probability. No self-loops.

    Args:
        block_sizes: ``(B,)`` positive block sizes.
        edge_probs: ``(B, B)`` probabilities in ``[0, 1]``. With ``directed=True`` (default)
            ``edge_probs[a][b]`` is the probability of each edge ``u -> v`` with ``u`` in block
            ``a`` and ``v`` in block ``b`` (``v`` follows ``u``). With ``directed=False`` it must
            be symmetric; each unordered pair gets a mutual follow with that probability.
        seed: seed of the generator's private RNG.
        directed: see ``edge_probs``.
        device: where to put the finished graph.

    Raises:
        ConfigError: empty or non-positive sizes, wrong ``edge_probs`` shape, probabilities
            outside ``[0, 1]``, an asymmetric matrix with ``directed=False``.
        GraphFormatError: no edge was drawn at all.
    """
    sizes = _as_block_sizes(block_sizes)
    num_blocks = len(sizes)
    try:
        probs = torch.as_tensor(edge_probs, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"Expected edge_probs to be a ({num_blocks}, {num_blocks}) matrix of floats ({err})") from None
    if probs.shape != (num_blocks, num_blocks):
        raise ConfigError(f"Expected edge_probs of shape ({num_blocks}, {num_blocks}) (got {tuple(probs.shape)})")
    if not bool(((probs >= 0) & (probs <= 1)).all()):
        bad = probs[~((probs >= 0) & (probs <= 1))][0].item()
        raise ConfigError(f"Expected edge_probs in [0, 1] (got {bad})")
    if not directed and not torch.equal(probs, probs.T):
        raise ConfigError("Expected a symmetric edge_probs when directed=False (got an asymmetric matrix)")
    sizes_t = torch.tensor(sizes, dtype=torch.float64)
    _check_size("stochastic_block_model", sum(sizes), 2 * float(sizes_t @ probs @ sizes_t))
    gen = _rng(seed)

    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    num_nodes = starts[-1]
    srcs: list[Tensor] = []
    dsts: list[Tensor] = []
    for a in range(num_blocks):
        for b in range(num_blocks):
            p = float(probs[a, b])
            if p == 0.0 or (not directed and b > a):
                continue
            na, nb = sizes[a], sizes[b]
            if a == b:
                pairs = na * (na - 1) if directed else na * (na - 1) // 2
            else:
                pairs = na * nb
            if pairs == 0:
                continue
            count = int(torch.binomial(torch.tensor(float(pairs), dtype=torch.float64),
                                       torch.tensor(p, dtype=torch.float64), generator=gen))
            index = _distinct_sample(pairs, min(count, pairs), gen)
            if a != b:
                u = torch.div(index, nb, rounding_mode="floor")
                v = index - u * nb
            elif directed:
                u = torch.div(index, na - 1, rounding_mode="floor")
                v = index - u * (na - 1)
                v = v + (v >= u).long()  # skip the diagonal
            else:
                u, v = _triangular_pair(index)
            srcs.append(u + starts[a])
            dsts.append(v + starts[b])
    src = torch.cat(srcs) if srcs else torch.zeros(0, dtype=torch.int64)
    dst = torch.cat(dsts) if dsts else torch.zeros(0, dtype=torch.int64)
    return _finish(src, dst, num_nodes, directed, device)


def sbm_homophily(
    num_nodes: int,
    num_blocks: int,
    mean_degree: float,
    homophily: float,
    *,
    seed: int,
    directed: bool = True,
    device: DeviceLike = None,
) -> tuple[Graph, Tensor]:
    """A block model parameterised by mean degree and homophily.

    The ``N`` nodes are split into ``num_blocks`` contiguous blocks of sizes differing by at most
    one. Edge probabilities are set so that each agent has ``mean_degree`` followees in
    expectation, of which a share ``homophily`` lies in its own block. ``homophily = 1/num_blocks``
    (with equal blocks) is no homophily (an Erdos-Renyi graph); ``1`` means disconnected blocks;
    below ``1/num_blocks`` is heterophily.

    Args:
        num_nodes: number of agents, at least 2 per block.
        num_blocks: number of blocks ``B >= 1`` (``B = 1`` requires ``homophily = 1``).
        mean_degree: expected followees per agent, ``> 0``.
        homophily: expected share in ``[0, 1]`` of an agent's followees in its own block.
        seed: seed of the generator's private RNG.
        directed: ``True`` (default) draws each directed edge independently; ``False`` draws
            mutual follows (then ``mean_degree`` is the expected number of mutual neighbours).
        device: where to put the graph and the block vector.

    Returns:
        ``(graph, block)``: ``block`` is the ``(N,)`` int64 block of each agent.

    Raises:
        ConfigError: arguments out of range, or a ``mean_degree`` so high that an edge probability
            would exceed 1.
    """
    num_blocks = _check_int("num_blocks", num_blocks, 1)
    num_nodes = _check_int("num_nodes", num_nodes)
    if num_nodes < 2 * num_blocks:
        raise ConfigError(f"Expected num_nodes >= 2 * num_blocks = {2 * num_blocks} (got {num_nodes})")
    if isinstance(mean_degree, bool) or not isinstance(mean_degree, (int, float)) or not (mean_degree > 0):
        raise ConfigError(f"Expected mean_degree > 0 (got {mean_degree!r})")
    mean_degree = float(mean_degree)
    homophily = _check_prob("homophily", homophily)
    if num_blocks == 1 and homophily != 1.0:
        raise ConfigError(f"Expected homophily = 1 with num_blocks = 1 (got {homophily})")
    _check_size("sbm_homophily", num_nodes, 2 * num_nodes * mean_degree)

    sizes = [num_nodes // num_blocks + (1 if b < num_nodes % num_blocks else 0) for b in range(num_blocks)]
    probs = torch.empty(num_blocks, num_blocks, dtype=torch.float64)
    if directed:
        # Column b (followers in block b): own-block share and out-of-block share of mean_degree.
        for b, nb in enumerate(sizes):
            probs[:, b] = 0.0 if num_blocks == 1 else (1.0 - homophily) * mean_degree / (num_nodes - nb)
            probs[b, b] = homophily * mean_degree / (nb - 1)
    else:
        # Symmetric: use the mean block size (sizes differ by at most one).
        n = num_nodes / num_blocks
        p_out = 0.0 if num_blocks == 1 else (1.0 - homophily) * mean_degree / (num_nodes - n)
        probs.fill_(p_out)
        probs.fill_diagonal_(homophily * mean_degree / (n - 1))
    if float(probs.max()) > 1.0:
        raise ConfigError(
            f"Expected mean_degree small enough for edge probabilities <= 1 "
            f"(got mean_degree={mean_degree}, max probability {float(probs.max()):.3g})"
        )
    graph = stochastic_block_model(sizes, probs, seed=seed, directed=directed, device=device)
    block = torch.repeat_interleave(torch.arange(num_blocks, dtype=torch.int64), torch.tensor(sizes))
    return graph, (block.to(device) if device is not None else block)

