"""Counterfactual variance reduction: mean-zero control variates for exact cascade runs.

A post-processing of a finished run, used by :func:`lpm.counterfactual` to narrow the seed-to-seed
spread of reach and reshares without changing their expectation. It needs from the cascade only
its items, its sources and the fixed resistances its reshare draws come from
(:func:`lpm.dynamics.cascade.sellke_resistance`): arms that share a seed share them too (common
random numbers that survive timing changes).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from lpm import kernels
from lpm.dynamics.cascade import Cascade, sellke_resistance
from lpm.effects import dense_edge_scale
from lpm.graph import Graph
from lpm.rng import CounterRNG
from lpm.state import PopulationState

__all__ = ["martingale_controls"]


def martingale_controls(cascade: Cascade, state: PopulationState, graph: Graph, rng: CounterRNG, dt: float,
                        open_edges: Optional[Callable[[float], Optional[Tensor]]] = None) -> tuple[Tensor, Tensor]:
    """Mean-zero control variates for a finished exact run: ``(B, C)`` for reach and for reshares.

    With the resistances ``R_ic`` of :func:`lpm.dynamics.cascade.sellke_resistance` (the ones the
    cascade's reshare draws use) and the cumulative hazard ``H_ic``
    in ``state.hazard``, ``1[R_ic <= H_ic] - min(R_ic, H_ic)`` (reshared, minus the hazard the
    agent faced until it reshared) has mean zero whatever the dynamics and the interventions did
    to the hazard: in each step, given the past, the reshare probability is ``1 - exp(-h)`` and
    so is the expected increment of ``min(R, H)``, because ``R - H ~ Exp(1)`` given ``R > H``
    (the compensator of a counting process; Sellke 1983). Weighting each agent's term by
    anything known before its first draw keeps the mean at zero (a martingale transform;
    Henderson & Glynn 2002 build control variates this way).

    * reshares: weight 1, so ``reshares - control`` counts each reshare by its probability.
    * reach: weight ``w_i``, the followers of ``i`` (through edges open at that time:
      ``open_edges(time_h)`` gives ``(B, E)`` multipliers, dense or factored, or ``None``, as
      scheduled edge blocking does) whose feeds no post of the item had reached when the first
      one reached ``i``: the reach a reshare by ``i`` would add. Known at that moment (it
      depends on earlier reshares only), and ``i`` faces no hazard before it. This removes much
      of the seed-to-seed noise of whether a large account happens to reshare, which dominates
      the spread of final reach.

    So ``final - control`` has the same expectation as ``final`` and a smaller spread over seeds.
    Sources are left out (their posts are not draws). Needs a run with exact events
    (:class:`lpm.relax.Hard`) of step ``dt`` hours and the ``CounterRNG`` of that run.
    """
    n, c = state.num_agents, cascade.num_items
    hazard = state.hazard.detach()
    device = hazard.device
    resistance = sellke_resistance(rng, n, c, hazard.dtype)
    is_source = cascade.sources_mask(n, device)
    # double: sums over 10^5+ agents
    martingale = ((state.reshared.detach() - torch.minimum(resistance, hazard)) * ~is_source).double()
    first_seen = _first_seen(cascade, state, graph, dt)  # (B, N, C) step from which i could see c
    # an edge f -> j adds f to j's weight if f had seen nothing when j first could, times how
    # open the edge was then (blocking is scheduled, so this is known in advance)
    openness = _openness_when_first_seen(first_seen, graph, dt, open_edges)
    weights = torch.zeros_like(martingale)
    chunk = max(1, (1 << 24) // max(graph.num_edges * c, 1))  # bound the (chunk, E, C) temporaries
    for lo in range(0, state.batch_size, chunk):
        hi = min(lo + chunk, state.batch_size)
        chunk_seen = first_seen[lo:hi]
        fresh = (kernels.gather_followers(graph, chunk_seen) > kernels.gather_followees(graph, chunk_seen)).double()
        if openness is not None:
            fresh = fresh * openness(lo, hi)
        weights[lo:hi] = kernels.sum_over_followers(graph, fresh)
    return (martingale * weights).sum(1), martingale.sum(1)


def _first_seen(cascade: Cascade, state: PopulationState, graph: Graph, dt: float) -> Tensor:
    """``(B, N, C)`` float64 first step in which a post of each item was in each agent's feed
    (``inf``: never), from the recorded post times: sources post within their step, reshares of
    step ``t`` (``reshare_time`` = end of step ``t``) are seen from step ``t + 1``."""
    post_step = torch.floor(state.reshare_time.detach().double() / dt + 1e-6)  # inf: never posted
    first_seen = kernels.neighbor_min(graph, post_step)
    if cascade.raw_audience is not None:  # the out-of-graph audience reaches everyone at the start
        starts = [math.floor(it.start_h / dt + 1e-6) for it in cascade.items]
        first_seen = torch.minimum(first_seen, first_seen.new_tensor(starts))
    return first_seen


def _openness_when_first_seen(first_seen: Tensor, graph: Graph, dt: float,
                              open_edges: Optional[Callable[[float], Optional[Tensor]]]):
    """``(lo, hi) -> (hi - lo, E, C)`` multipliers of each edge ``f -> j`` at the step ``j``
    first saw the item, or ``None`` when no edge is ever closed."""
    steps = first_seen[torch.isfinite(first_seen)]
    if open_edges is None or steps.numel() == 0:
        return None

    def scale_at(time_h: float) -> Optional[Tensor]:
        return dense_edge_scale(open_edges(time_h))

    first, last = scale_at(float(steps.min()) * dt), scale_at(float(steps.max()) * dt)
    if last is None:
        return None
    # edges whose state changes during the run: evaluated at each step they were first seen in
    scheduled = (last - first).abs().amax(0).nonzero()[:, 0] if first is not None else \
        torch.arange(graph.num_edges, device=graph.device)
    when = kernels.gather_followees(graph, first_seen, scheduled)  # (B, E', C)
    then = torch.ones_like(when)
    for step in torch.unique(when[torch.isfinite(when)]).tolist():
        scale = scale_at(step * dt)
        if scale is not None:
            then = torch.where(when == step, scale[:, scheduled, None].to(then.dtype), then)

    def openness(lo: int, hi: int) -> Tensor:
        value = last[lo:hi, :, None].double().repeat(1, 1, first_seen.size(2))
        value[:, scheduled] = then[lo:hi]
        return value

    return openness
