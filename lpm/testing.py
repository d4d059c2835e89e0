"""Closed-form problems and assertion helpers for testing dynamics (dense, small N only).

Use these to check a model against an exact solution (DeGroot ``W^t x0``, the Friedkin-Johnsen fixed
point, the Hawkes stationary rate, one classic Hegselmann-Krause step) and against invariances
(agent permutation, batch of B equals B single runs). :func:`step_context` builds the context to
call one dynamics component directly.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from lpm.engine import StepContext
from lpm.graph import Graph
from lpm.interventions import Effects
from lpm.relax import Estimator, StraightThrough
from lpm.rng import CounterRNG
from lpm.state import PopulationState

__all__ = [
    "small_graph",
    "dense_adjacency",
    "row_stochastic",
    "degroot_closed_form",
    "friedkin_johnsen_fixed_point",
    "hawkes_stationary_rate",
    "hegselmann_krause_step",
    "assert_permutation_equivariant",
    "assert_batch_consistent",
    "step_context",
]


def small_graph(num_nodes: int = 30, avg_degree: float = 3.0, *, seed: int = 0, isolated: int = 2,
                hub: bool = True, weighted: bool = False, dtype: torch.dtype = torch.float64) -> Graph:
    """A random directed graph with the awkward cases: agents that follow nobody, one hub.

    The last ``isolated`` agents follow nobody (empty CSR rows); with ``hub``, agent 0 is followed by
    every other agent that has followees.
    """
    gen = torch.Generator().manual_seed(seed)
    active = num_nodes - isolated
    num_edges = int(avg_degree * num_nodes)
    src = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    dst = torch.randint(0, active, (num_edges,), generator=gen)
    if hub:
        followers = torch.arange(1, active)
        src = torch.cat([src, torch.zeros_like(followers)])
        dst = torch.cat([dst, followers])
    weight = torch.rand(src.numel(), generator=gen, dtype=dtype) + 0.1 if weighted else None
    return Graph.from_edge_index(torch.stack([src, dst]), num_nodes, weight)


def dense_adjacency(graph: Graph, dtype: torch.dtype = torch.float64) -> Tensor:
    """``(N, N)`` matrix ``A[i, j] = a_ij``, the weight of the edge from followee ``j`` to follower ``i``."""
    adj = torch.zeros(graph.num_nodes, graph.num_nodes, dtype=dtype)
    weight = graph.weight.to(dtype).cpu() if graph.weight is not None else torch.ones(graph.num_edges, dtype=dtype)
    adj.index_put_((graph.row.long().cpu(), graph.col.long().cpu()), weight, accumulate=True)
    return adj


def row_stochastic(graph: Graph, dtype: torch.dtype = torch.float64) -> Tensor:
    """``P = D^-1 A`` with identity rows for agents that follow nobody."""
    adj = dense_adjacency(graph, dtype)
    total = adj.sum(1, keepdim=True)
    eye = torch.eye(graph.num_nodes, dtype=dtype)
    return torch.where(total > 0, adj / total.clamp_min(1e-300), eye)


def degroot_closed_form(graph: Graph, x0: Tensor, self_weight: float, steps: int) -> Tensor:
    """``W^t x0`` with ``W = s I + (1 - s) P``. Shapes: x0 ``(N, T)`` -> ``(N, T)``."""
    eye = torch.eye(graph.num_nodes, dtype=x0.dtype)
    w = self_weight * eye + (1 - self_weight) * row_stochastic(graph, x0.dtype)
    return torch.linalg.matrix_power(w, steps) @ x0


def friedkin_johnsen_fixed_point(graph: Graph, x0: Tensor, anchor: Tensor) -> Tensor:
    """``x* = (I - (I - L) P)^-1 L x0`` with ``L = diag(anchor)``. Shapes: x0 ``(N, T)``, anchor ``(N,)``."""
    n = graph.num_nodes
    p = row_stochastic(graph, x0.dtype)
    lam = torch.diag(anchor.to(x0.dtype))
    eye = torch.eye(n, dtype=x0.dtype)
    return torch.linalg.solve(eye - (eye - lam) @ p, lam @ x0)


def hawkes_stationary_rate(mu: float, branching_ratio: float) -> float:
    """Mean events per unit time of a stationary Hawkes process: ``mu / (1 - n)`` for ``n < 1``."""
    if not branching_ratio < 1:
        raise ValueError(f"Expected a subcritical branching ratio < 1 (got {branching_ratio})")
    return mu / (1.0 - branching_ratio)


def hegselmann_krause_step(graph: Graph, x: Tensor, eps: float) -> Tensor:
    """One classic (hard) HK step: each agent takes the mean of its own opinion and its followees'
    within ``eps`` (per topic). Dense, O(N^2). Shapes: x ``(N, T)`` -> ``(N, T)``."""
    adj = dense_adjacency(graph, x.dtype) > 0  # (N, N)
    out = torch.empty_like(x)
    for k in range(x.size(1)):
        xk = x[:, k]
        close = (xk[None, :] - xk[:, None]).abs() < eps
        member = (adj & close).to(x.dtype)
        out[:, k] = (xk + member @ xk) / (1 + member.sum(1))
    return out


def assert_permutation_equivariant(run: Callable[[PopulationState, Graph], Tensor], state: PopulationState,
                                   graph: Graph, *, seed: int = 0, atol: float = 1e-10, rtol: float = 1e-8) -> None:
    """Relabelling agents relabels the output: ``run(P s, P g) == P run(s, g)``.

    ``run`` returns a per-agent tensor ``(B, N, ...)``; it must be deterministic (no sampling).
    """
    perm = torch.randperm(graph.num_nodes, generator=torch.Generator().manual_seed(seed))
    out = run(state, graph)
    out_perm = run(state.permute(perm), graph.permute(perm))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    torch.testing.assert_close(out_perm, out.index_select(1, inverse.to(out.device)), atol=atol, rtol=rtol)


def assert_batch_consistent(run: Callable[[PopulationState], Tensor], state: PopulationState, *,
                            atol: float = 1e-10, rtol: float = 1e-8) -> None:
    """A batch of B scenarios gives what B single-scenario runs give: ``run(s)[b] == run(s[b])``."""
    out = run(state)
    for b in range(state.batch_size):
        torch.testing.assert_close(out[b : b + 1], run(state.select(b)), atol=atol, rtol=rtol)


def step_context(state: PopulationState, *, t: int = 0, dt: float = 1.0, time_h: Optional[float] = None,
                 rng: Optional[CounterRNG] = None, seed: int = 0, estimator: Optional[Estimator] = None,
                 effects: Optional[Effects] = None, seen: Optional[Tensor] = None) -> StepContext:
    """A step context for calling one component directly: no feed, no interventions unless given.

    ``time_h`` defaults to ``t * dt``; ``rng`` to a counter RNG of ``seed`` for the state's batch.
    """
    rng = rng if rng is not None else CounterRNG.from_seed(seed, state.batch_size, state.device)
    return StepContext(t=t, time_h=t * dt if time_h is None else time_h, dt=dt, rng=rng,
                       estimator=estimator if estimator is not None else StraightThrough(),
                       effects=effects if effects is not None else Effects(), seen=seen)
