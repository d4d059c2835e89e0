"""Hot ops of lpm, one dispatch function per op.

lpm calls only the functions here; no code outside :mod:`lpm.kernels` aggregates over the graph's
edges itself. Each function looks its op up in one place (:mod:`lpm.kernels.registry`): a fast path
registered for the device, dtype and pair kernel, otherwise the plain-torch reference in
:mod:`lpm.kernels.reference`, which is also what every fast path is tested against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

import torch
from torch import Tensor

from .edge_scale import EdgeScale
from .halo import HaloGraph
from .pair import AttractRepel, PairKernel, Personalization, Product, SmoothBoundedConfidence, combine
from .registry import Implementation, implementations, lookup, register, unregister
from .triton import register_available as _register_fused

if TYPE_CHECKING:
    from lpm.graph import Graph

__all__ = ["neighbor_pull", "neighbor_sum", "neighbor_sum_dense", "neighbor_sum_sparse", "neighbor_min",
           "sum_over_followers", "gather_followees", "gather_followers", "take_along_agents", "sample_followee",
           "sample_visible_followee", "expand_segments", "EdgeScale", "PairKernel", "SmoothBoundedConfidence",
           "AttractRepel", "Personalization", "Product", "combine", "register", "unregister", "lookup",
           "implementations", "Implementation", "HaloGraph"]

# The sparse push pays off below this share of nonzero entries (1/16).
_SPARSE_SHARE = 16


def neighbor_pull(
    graph: "Graph",
    x: Tensor,
    pair: Optional[PairKernel] = None,
    source_weight: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """Weighted pull of each agent toward its followees' states.

    ``pull_i = sum_j a_ij s_j w(x_i, x_j) (x_j - x_i)`` and ``weight_i = sum_j |a_ij s_j w(x_i, x_j)|``
    over the followees ``j`` of ``i``, where ``a_ij`` is the edge weight (1 if unweighted), ``s_j``
    the optional per-source weight (e.g. whether ``j`` posted, so only seen posts count) and ``w``
    the optional pair kernel, evaluated per state dimension.

    Args:
        graph: the follower graph (CSR by follower), on the device of ``x``.
        x: agent states.
        pair: optional pair kernel (smooth bounded confidence, attraction-repulsion).
        source_weight: optional non-negative per-source weights.

    Returns:
        ``(pull, weight)``. ``weight`` has last dimension ``d`` with a pair kernel and ``1``
        without one.

    Shapes:
        x: ``(B, N, d)``; source_weight: ``(B, N)``; pull: ``(B, N, d)``;
        weight: ``(B, N, d)`` or ``(B, N, 1)``.
    """
    if isinstance(graph, HaloGraph):  # a rank of a partitioned population: halo first, then the local op
        pull, weight = neighbor_pull(graph.local, graph.extend(x), pair, graph.extend(source_weight))
        return graph.own(pull), graph.own(weight)
    impl = lookup("neighbor_pull", x.device, x.dtype, None if pair is None else type(pair))
    return impl(graph.rowptr, graph.col, graph.row, graph.weight, graph.in_weight, x, pair, source_weight)


def neighbor_sum(graph: "Graph", x: Tensor, edge_scale: Optional[Union[Tensor, EdgeScale]] = None, *,
                 weighted: bool = True) -> Tensor:
    """``sum_j a_ij e_ij x_j`` over the followees ``j`` of each agent ``i`` (a sparse matrix product),
    with an optional per-scenario edge multiplier ``e`` (e.g. blocked edges).

    Chooses between :func:`neighbor_sum_sparse` and :func:`neighbor_sum_dense`, which give the same
    numbers bit for bit on the CPU: on the CPU, without gradient, when at most 1/16 of ``x`` is
    nonzero (posts are few: a few hundred resharers among 10^5 agents), pushing them along their
    out-edges skips the ``B x E`` dense product. Elsewhere the dense product: a GPU does it at
    memory bandwidth without the host syncs the push needs, and relaxed runs have posts everywhere.

    Args:
        graph: the follower graph, on the device of ``x``.
        x: per-agent values.
        edge_scale: optional multipliers per scenario and edge, dense or as an :class:`EdgeScale`.
        weighted: ``False`` ignores the graph's edge weights (``a_ij = 1`` on every edge).

    Shapes:
        x: ``(B, N, d)``; edge_scale: ``(B, E)``; returns ``(B, N, d)``.
    """
    if isinstance(graph, HaloGraph):
        return graph.own(neighbor_sum(graph.local, graph.extend(x), edge_scale, weighted=weighted))
    if _push_from_nonzeros(x):
        return neighbor_sum_sparse(graph, x, edge_scale, weighted=weighted)
    return neighbor_sum_dense(graph, x, edge_scale, weighted=weighted)


def _push_from_nonzeros(x: Tensor) -> bool:
    if x.requires_grad or x.device.type != "cpu":
        return False
    return int(torch.count_nonzero(x)) * _SPARSE_SHARE <= x.numel()


def neighbor_sum_dense(graph: "Graph", x: Tensor, edge_scale: Optional[Union[Tensor, EdgeScale]] = None, *,
                       weighted: bool = True) -> Tensor:
    """:func:`neighbor_sum` as a gather and a scatter over all ``B x E`` edges; differentiable in ``x``
    (and in a dense ``edge_scale``).

    Shapes:
        x: ``(B, N, d)``; edge_scale: ``(B, E)``; returns ``(B, N, d)``.
    """
    if edge_scale is not None and not isinstance(edge_scale, Tensor):
        edge_scale = edge_scale.dense()
    impl = lookup("neighbor_sum", x.device, x.dtype)
    return impl(graph.col, graph.row, graph.weight if weighted else None, x, edge_scale)


def neighbor_sum_sparse(graph: "Graph", x: Tensor, edge_scale: Optional[Union[Tensor, EdgeScale]] = None, *,
                        weighted: bool = True) -> Tensor:
    """:func:`neighbor_sum` for a sparse ``x`` without gradient (e.g. the posts visible in feeds):
    pushed from its nonzero entries along their out-edges, ``O(nnz x followers)`` instead of
    ``O(B x E)``; equal to :func:`neighbor_sum_dense` bit for bit on the CPU.

    Shapes:
        x: ``(B, N, d)``; edge_scale: ``(B, E)``, or an :class:`EdgeScale` (read only where posts are);
        returns ``(B, N, d)``.
    """
    starts, edges = graph.followers()
    impl = lookup("neighbor_sum_sparse", x.device, x.dtype)
    return impl(starts, edges, graph.row, graph.weight if weighted else None, x, edge_scale)


def neighbor_min(graph: "Graph", x: Tensor) -> Tensor:
    """``min_j x_j`` over the followees ``j`` of each agent ``i``; ``inf`` for agents who follow nobody.

    E.g. the first step in which anything an agent follows posted. Not differentiable.

    Shapes:
        x: ``(B, N, d)`` floating; returns ``(B, N, d)``.
    """
    if isinstance(graph, HaloGraph):
        return graph.own(neighbor_min(graph.local, graph.extend(x)))
    return lookup("neighbor_min", x.device, x.dtype)(graph.col, graph.row, x)


def sum_over_followers(graph: "Graph", values: Tensor) -> Tensor:
    """``sum_e values_e`` over the edges ``e = (j -> i)`` out of each agent ``j``: per-edge values
    summed into the followee, over its followers (the transpose of :func:`neighbor_sum`'s scatter).

    Shapes:
        values: ``(B, E, d)`` in edge (CSR) order; returns ``(B, N, d)``.
    """
    if isinstance(graph, HaloGraph):  # followees may be halo agents: their sums go back to the owners
        return graph.reduce(sum_over_followers(graph.local, values))
    return lookup("sum_over_followers", values.device, values.dtype)(graph.col, values, graph.num_nodes)


def gather_followees(graph: "Graph", x: Tensor, edges: Optional[Tensor] = None) -> Tensor:
    """``x`` at the followee (the source ``j``) of each edge ``j -> i``, or of the edges ``edges``;
    differentiable in ``x``.

    Shapes:
        x: ``(B, N, ...)``; edges: ``(E',)`` int64 edge ids; returns ``(B, E, ...)`` or ``(B, E', ...)``.
    """
    if isinstance(graph, HaloGraph):
        return _gather_rows(graph.extend(x), graph.local.col, edges)
    return _gather_rows(x, graph.col, edges)


def gather_followers(graph: "Graph", x: Tensor, edges: Optional[Tensor] = None) -> Tensor:
    """``x`` at the follower (the target ``i``) of each edge ``j -> i``, or of the edges ``edges``;
    differentiable in ``x``.

    Shapes:
        x: ``(B, N, ...)``; edges: ``(E',)`` int64 edge ids; returns ``(B, E, ...)`` or ``(B, E', ...)``.
    """
    return _gather_rows(x, graph.local.row if isinstance(graph, HaloGraph) else graph.row, edges)


def _gather_rows(x: Tensor, agents: Tensor, edges: Optional[Tensor]) -> Tensor:
    index = agents if edges is None else agents[edges]
    return lookup("gather_rows", x.device, x.dtype)(x, index)


def take_along_agents(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, i]]``: each agent's value at another agent chosen per scenario (e.g. the
    followee drawn by :func:`sample_followee`); differentiable in ``x``.

    Shapes:
        x: ``(B, N)`` or ``(B, N, d)``; index: ``(B, N)`` int64; returns the shape of ``x``.
    """
    return lookup("take_along_agents", x.device, x.dtype)(x, index)


def sample_followee(graph: "Graph", uniform: Tensor) -> Tensor:
    """One followee per agent, uniformly at random from the agent's followees.

    Agents that follow nobody get their own index (so an update toward it is a no-op).

    Args:
        graph: the follower graph.
        uniform: uniform ``[0, 1)`` draws, one per agent and scenario.

    Shapes:
        uniform: ``(B, N)``; returns ``(B, N)`` int64 agent indices.
    """
    return lookup("sample_followee", uniform.device, uniform.dtype)(graph.rowptr, graph.col, uniform)


def sample_visible_followee(graph: "Graph", posts: Tensor, index: Tensor, uniform: Tensor,
                            edge_scale: Optional[Union[Tensor, EdgeScale]] = None) -> Tensor:
    """For each requested ``(b, i, c)``, one followee ``j`` of ``i`` drawn with probability
    proportional to its post's weight ``posts[b, j, c]`` (times ``edge_scale[b, e]`` of the edge);
    ``-1`` if every weight is zero.

    E.g. the parent of a new reshare: the followee whose post convinced it, drawn in proportion to
    what each contributed to the exposures (its post's visibility, after edge blocking), as the
    exposure count :func:`neighbor_sum` weighs them. With 0/1 posts this is uniform among the visible.

    Args:
        graph: the follower graph.
        posts: per-agent posts per item; nonnegative weights (zero where not visible).
        index: the ``(b, i, c)`` positions to draw for.
        uniform: uniform ``[0, 1)`` draws, one per position.
        edge_scale: optional multipliers per scenario and edge, dense or as an :class:`EdgeScale`.

    Shapes:
        posts: ``(B, N, C)``; index: ``(K, 3)`` int64; uniform: ``(K,)``; edge_scale: ``(B, E)``;
        returns ``(K,)`` int64.
    """
    impl = lookup("sample_visible_followee", posts.device, posts.dtype)
    return impl(graph.rowptr, graph.col, posts, index, uniform, edge_scale)


def expand_segments(start: Tensor, length: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every position of K segments ``[start_k, start_k + length_k)``, concatenated (a CSR walk).

    Returns:
        ``(owner, position, offset)``: the segment of each position, the positions, and where each
        segment begins in the concatenation. One host sync (the total length).

    Shapes:
        start, length: ``(K,)`` int64; owner, position: ``(T,)`` with ``T = sum(length)``; offset: ``(K,)``.
    """
    return lookup("expand_segments", length.device, length.dtype)(start, length)


_register_fused()  # the fused Triton kernels, opt-in (LPM_FUSED_KERNELS=1), where Triton and CUDA are present
