"""Opinion dynamics on the follower graph. Opinions live in [-1, 1], one value per topic.

Every model is an :class:`OpinionDynamics` step component: its ``forward(state, graph, ctx)`` calls
``next_opinion(state, graph, seen, uniform, ranker)`` on the follower graph (and on the feed's
out-of-network candidates, mixed by the feed), then applies the interventions' opinion pull. Models
that set ``draws_uniform = True`` receive ``(B, N)`` uniform draws from the run's counter RNG, and
``ranker`` (a pair kernel from :mod:`lpm.dynamics.recommender`) reweights what each agent sees. ``seen`` is an optional ``(B, N)``
weight per source agent (whether it posted this step, relaxed or exact): with it, an agent is
moved only by the followees whose posts it saw; without it, by all of its followees. Topics are
independent: distances and confidence sets are per topic.

Notation: ``x_i`` opinion of agent ``i``, ``a_ij`` weight of the edge from followee ``j``,
``s_i`` the agent's susceptibility trait, ``pull_i = sum_j a_ij g_j w_ij (x_j - x_i)`` and
``W_i = sum_j |a_ij g_j w_ij|`` from :func:`lpm.kernels.neighbor_pull` (``g`` = seen).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from lpm import kernels
from lpm.dynamics.base import positive, softplus, unit_interval
from lpm.engine import DynamicsModule, StepContext, Updates
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.rng import STREAM_OPINION
from lpm.state import PopulationState

__all__ = ["OpinionDynamics", "DeGroot", "FriedkinJohnsen", "BoundedConfidence", "Deffuant", "BiasedAssimilation"]

_TINY = 1e-12


def _check_tau(tau: float) -> float:
    if not (isinstance(tau, (int, float)) and tau > 0):
        raise ConfigError(f"Expected a positive temperature 'tau' (got {tau!r})")
    return float(tau)


class OpinionDynamics(DynamicsModule):
    """Base of the opinion models: the step component around a model's ``next_opinion``."""

    draws_uniform = False

    def next_opinion(self, state: PopulationState, graph: Graph, seen: Optional[Tensor] = None,
                     uniform: Optional[Tensor] = None, ranker: Optional[kernels.PairKernel] = None) -> Tensor:
        """``(B, N, T)`` next opinions from the followees on ``graph``."""
        raise NotImplementedError

    def forward(self, state: PopulationState, graph: Graph, ctx: StepContext) -> Updates:
        """``{"opinion": (B, N, T)}`` after social influence (through the feed) and interventions."""
        uniform = None
        if self.draws_uniform:
            uniform = ctx.rng.uniform(ctx.t, STREAM_OPINION, (state.num_agents,), state.opinion.dtype)
        (opinion,) = ctx.through_feed(graph, lambda g: (self.next_opinion(state, g, ctx.seen, uniform, ctx.ranker),),
                                      (state.opinion,))
        effects = ctx.effects
        if effects.opinion_rate is not None:
            opinion = opinion + effects.opinion_pull - effects.opinion_rate * opinion
        return Updates(state={"opinion": opinion})


def _neighbour_mean_shift(graph: Graph, x: Tensor, seen: Optional[Tensor],
                          ranker: Optional[kernels.PairKernel] = None) -> Tensor:
    """``mean_j(x_j) - x_i`` over (seen) followees, weighted by the feed ranker; 0 for agents who
    follow (saw) nobody."""
    pull, weight = kernels.neighbor_pull(graph, x, ranker, seen)
    return pull / weight.clamp_min(_TINY)


class DeGroot(OpinionDynamics):
    """Repeated averaging: ``x_i' = x_i + (1 - self_weight) s_i (mean_j x_j - x_i)``.

    With ``s_i = 1`` and no ``seen`` gating this is ``x' = W x`` with the row-stochastic
    ``W = self_weight I + (1 - self_weight) D^-1 A`` (rows of agents without followees: identity),
    so ``x_t = W^t x_0`` (DeGroot 1974).

    Args:
        self_weight: weight an agent keeps on its own opinion, in (0, 1); learnable (sigmoid).
    """

    def __init__(self, self_weight: float = 0.5) -> None:
        super().__init__()
        self.raw_self_weight = unit_interval("self_weight", self_weight)

    @property
    def self_weight(self) -> Tensor:
        return torch.sigmoid(self.raw_self_weight)

    def next_opinion(self, state: PopulationState, graph: Graph, seen: Optional[Tensor] = None,
                     uniform: Optional[Tensor] = None, ranker: Optional[kernels.PairKernel] = None) -> Tensor:
        rate = (1 - self.self_weight) * state.traits.susceptibility[..., None]
        return state.opinion + rate * _neighbour_mean_shift(graph, state.opinion, seen, ranker)


class FriedkinJohnsen(OpinionDynamics):
    """Averaging with anchoring: ``x_i' = l_i x0_i + (1 - l_i) mean_j x_j``, ``l_i = anchoring * stubbornness_i``.

    With fixed ``l`` and no gating, ``x' = L x0 + (I - L) P x`` with ``P = D^-1 A`` (identity rows
    for agents without followees), whose fixed point is ``x* = (I - (I - L) P)^-1 L x0``
    (Friedkin & Johnsen 1990).

    Args:
        anchoring: global scale of the stubbornness trait, in (0, 1); learnable (sigmoid).
    """

    def __init__(self, anchoring: float = 0.5) -> None:
        super().__init__()
        self.raw_anchoring = unit_interval("anchoring", anchoring)

    @property
    def anchoring(self) -> Tensor:
        return torch.sigmoid(self.raw_anchoring)

    def next_opinion(self, state: PopulationState, graph: Graph, seen: Optional[Tensor] = None,
                     uniform: Optional[Tensor] = None, ranker: Optional[kernels.PairKernel] = None) -> Tensor:
        anchor = (self.anchoring * state.traits.stubbornness)[..., None]
        averaged = state.opinion + _neighbour_mean_shift(graph, state.opinion, seen, ranker)
        return anchor * state.opinion_anchor + (1 - anchor) * averaged


class _ConfidenceBound(OpinionDynamics):
    """Shared parameters of the bounded-confidence family: radius ``eps``, step ``rate``, temperature ``tau``."""

    def __init__(self, eps: float = 0.3, rate: float = 0.5, tau: float = 0.02) -> None:
        super().__init__()
        self.raw_eps = positive("eps", eps)
        self.raw_rate = unit_interval("rate", rate)
        self.tau = _check_tau(tau)

    @property
    def eps(self) -> Tensor:
        return softplus(self.raw_eps)

    @property
    def rate(self) -> Tensor:
        return torch.sigmoid(self.raw_rate)


class BoundedConfidence(_ConfidenceBound):
    """Smooth Hegselmann-Krause: ``x_i' = x_i + rate s_i pull_i / (1 + W_i)``, ``w_ij = sigmoid((eps c_i - |x_j - x_i|) / tau)``.

    The ``1 +`` counts the agent itself, so with ``rate = 1`` and ``tau -> 0`` this is the classic
    HK update: the mean of the agent's own opinion and those of followees within ``eps``
    (Hegselmann & Krause 2002). It is a convex combination, so opinions stay in [-1, 1].

    Args:
        eps: confidence radius (> 0), scaled per agent by the ``confidence`` trait; learnable (softplus).
        rate: step toward the confidence-set mean, in (0, 1); learnable (sigmoid).
        tau: temperature of the smooth indicator (fixed).
    """

    def next_opinion(self, state: PopulationState, graph: Graph, seen: Optional[Tensor] = None,
                     uniform: Optional[Tensor] = None, ranker: Optional[kernels.PairKernel] = None) -> Tensor:
        pair = kernels.SmoothBoundedConfidence(eps=self.eps * state.traits.confidence[..., None], tau=self.tau)
        pull, weight = kernels.neighbor_pull(graph, state.opinion, kernels.combine(pair, ranker), seen)
        rate = self.rate * state.traits.susceptibility[..., None]
        return state.opinion + rate * pull / (1 + weight)


class Deffuant(_ConfidenceBound):
    """Vectorised Deffuant: each agent meets one random followee ``j`` per step and moves toward it
    if their opinions are close: ``x_i' = x_i + rate s_i w_ij (x_j - x_i)``, ``w_ij = sigmoid((eps c_i - |x_j - x_i|) / tau)``.

    The classic model (Deffuant et al. 2000; NDlib's Algorithmic Bias with gamma = 0) updates one
    random pair at a time, both ends; here all agents update at once, each as the follower of its
    chosen followee (information flows one way on a follower graph). With ``seen`` the meeting only
    counts if the followee posted. Needs ``uniform`` ``(B, N)`` draws to choose partners.
    """

    draws_uniform = True

    def next_opinion(self, state: PopulationState, graph: Graph, seen: Optional[Tensor] = None,
                     uniform: Optional[Tensor] = None, ranker: Optional[kernels.PairKernel] = None) -> Tensor:
        x = state.opinion
        partner = kernels.sample_followee(graph, uniform)  # (B, N)
        x_partner = kernels.take_along_agents(x, partner)
        diff = x_partner - x
        eps = (self.eps * state.traits.confidence)[..., None]
        weight = torch.sigmoid((eps - diff.abs()) / self.tau) * (self.rate * state.traits.susceptibility)[..., None]
        if seen is not None:
            weight = weight * kernels.take_along_agents(seen, partner)[..., None]
        if ranker is not None:
            weight = weight * ranker.weight(diff.abs(), torch.arange(x.size(1), device=x.device))
        return x + weight * diff


class BiasedAssimilation(OpinionDynamics):
    """Attraction within ``eps``, repulsion beyond ``rho`` (backfire):
    ``x_i' = clip(x_i + rate s_i pull_i / (1 + W_i), -1, 1)`` with
    ``w_ij = sigmoid((eps c_i - d) / tau) - repulsion * sigmoid((d - rho) / tau)``, ``d = |x_j - x_i|``.

    Repulsion drives polarization (Jager & Amblard 2005; Flache et al. 2017 review); the clip keeps
    opinions in [-1, 1] as in those models.
    """

    def __init__(self, eps: float = 0.4, rho: float = 1.0, repulsion: float = 0.5,
                 rate: float = 0.5, tau: float = 0.05) -> None:
        super().__init__()
        if not rho > eps:
            raise ConfigError(f"Expected the repulsion threshold rho > eps (got rho={rho}, eps={eps})")
        self.raw_eps = positive("eps", eps)
        self.raw_rho = positive("rho", rho)
        self.raw_repulsion = positive("repulsion", repulsion)
        self.raw_rate = unit_interval("rate", rate)
        self.tau = _check_tau(tau)

    @property
    def eps(self) -> Tensor:
        return softplus(self.raw_eps)

    @property
    def rho(self) -> Tensor:
        return softplus(self.raw_rho)

    @property
    def repulsion(self) -> Tensor:
        return softplus(self.raw_repulsion)

    @property
    def rate(self) -> Tensor:
        return torch.sigmoid(self.raw_rate)

    def next_opinion(self, state: PopulationState, graph: Graph, seen: Optional[Tensor] = None,
                     uniform: Optional[Tensor] = None, ranker: Optional[kernels.PairKernel] = None) -> Tensor:
        pair = kernels.AttractRepel(
            eps=self.eps * state.traits.confidence[..., None], rho=self.rho, tau=self.tau, repulsion=self.repulsion
        )
        pull, weight = kernels.neighbor_pull(graph, state.opinion, kernels.combine(pair, ranker), seen)
        rate = self.rate * state.traits.susceptibility[..., None]
        return (state.opinion + rate * pull / (1 + weight)).clamp(-1.0, 1.0)
