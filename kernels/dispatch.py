"""Hot ops of lpm, one dispatch function per op.

lpm calls only the functions here. Each chooses an implementation in one place: a fused GPU kernel
when one is registered for the device, dtype and pair kernel, otherwise the plain-torch reference in
:mod:`lpm.kernels.reference`, which is also what every fused kernel is tested against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from torch import Tensor

from . import reference
from .pair import AttractRepel, PairKernel, Personalization, Product, SmoothBoundedConfidence, combine

if TYPE_CHECKING:
    from lpm.graph import Graph

__all__ = ["neighbor_pull", "neighbor_sum", "neighbor_sum_sparse", "sample_followee", "PairKernel", "SmoothBoundedConfidence", "AttractRepel",
           "Personalization", "Product", "combine"]


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
    return reference.neighbor_pull(
        graph.rowptr, graph.col, graph.row, graph.weight, graph.in_weight, x, pair, source_weight
    )


def neighbor_sum(graph: "Graph", x: Tensor, edge_scale: Optional[Tensor] = None) -> Tensor:
    """``sum_j a_ij e_ij x_j`` over the followees ``j`` of each agent ``i`` (a sparse matrix product),
    with an optional per-scenario edge multiplier ``e`` (e.g. blocked edges).

    Shapes:
        x: ``(B, N, d)``; edge_scale: ``(B, E)``, or factored (:class:`lpm.interventions.EdgeGates`);
        returns ``(B, N, d)``.
    """
    if edge_scale is not None and not isinstance(edge_scale, Tensor):
        edge_scale = edge_scale.dense()
    return reference.neighbor_sum(graph.col, graph.row, graph.weight, x, edge_scale)


def neighbor_sum_sparse(graph: "Graph", x: Tensor, edge_scale: Optional[Tensor] = None) -> Tensor:
    """:func:`neighbor_sum` for a sparse ``x`` without gradient (e.g. the posts visible in feeds):
    pushed from its nonzero entries along their out-edges, ``O(nnz x followers)`` instead of
    ``O(B x E)``; equal to :func:`neighbor_sum` bit for bit on the CPU.

    Shapes:
        x: ``(B, N, d)``; edge_scale: ``(B, E)``, or factored (read only where posts are);
        returns ``(B, N, d)``.
    """
    starts, edges = graph.followers()
    return reference.neighbor_sum_sparse(starts, edges, graph.row, graph.weight, x, edge_scale)


def sample_followee(graph: "Graph", uniform: Tensor) -> Tensor:
    """One followee per agent, uniformly at random from the agent's followees.

    Agents that follow nobody get their own index (so an update toward it is a no-op).

    Args:
        graph: the follower graph.
        uniform: uniform ``[0, 1)`` draws, one per agent and scenario.

    Shapes:
        uniform: ``(B, N)``; returns ``(B, N)`` int64 agent indices.
    """
    return reference.sample_followee(graph.rowptr, graph.col, uniform)
