"""The linear threshold model of cascades (Granovetter 1978; Kempe, Kleinberg & Tardos 2003), on
the items, seeding and reshare trees of :mod:`lpm.dynamics.cascade`."""

from __future__ import annotations

from typing import Sequence

import torch

from lpm import kernels
from lpm.dynamics.cascade_base import Item, _CascadeBase, _exposure_count
from lpm.engine import StepContext, Updates
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.rng import STREAM_CASCADE_RESHARE
from lpm.state import PopulationState

__all__ = ["LinearThreshold"]


class LinearThreshold(_CascadeBase):
    """Linear threshold model (Granovetter 1978; Kempe et al. 2003).

    Agent ``i`` adopts item ``c`` once the weighted share of its followees that adopted reaches its
    threshold ``theta_ic ~ U(0, 1)`` (drawn once per run from the counter RNG, so it is the same
    in every step). The relaxed adoption is ``sigmoid((share - theta) / tau)`` through the estimator
    (with ``tau -> 0`` and the exact estimator it is the classic deterministic rule).
    """

    def __init__(self, items: Sequence[Item], *, tau: float = 0.01, record_trees: bool = True) -> None:
        super().__init__(items, record_trees)
        if not tau > 0:
            raise ConfigError(f"Expected a positive temperature tau (got {tau})")
        self.tau = float(tau)

    def forward(self, state: PopulationState, graph: Graph, ctx: StepContext) -> Updates:
        """One step; of the intervention effects, source gates and edge blocking apply."""
        n, c, dtype = state.num_agents, self.num_items, state.opinion.dtype
        t, time_h, dt, rng, estimator, effects = ctx.t, ctx.time_h, ctx.dt, ctx.rng, ctx.estimator, ctx.effects
        state = self._seed(state, time_h, dt)
        reshared = state.reshared if effects.source_gate is None else state.reshared * effects.source_gate[..., None]
        adopted = kernels.neighbor_sum(graph, reshared, effects.edge_scale)
        share = adopted / graph.in_weight.to(dtype).clamp_min(1e-12)[None, :, None]
        theta = rng.uniform(-1, STREAM_CASCADE_RESHARE, (n, c), dtype)
        prob = torch.sigmoid((share - theta) / self.tau) * (1 - state.reshared)
        # the draw at 0.5 makes events exactly "prob > 1/2", i.e. share > theta, for the hard estimators
        new, log_prob = estimator.sample(prob, torch.full_like(prob, 0.5))
        exposures = state.exposures + _exposure_count(graph, state.frontier, effects)
        reshare_time, parent, _ = self._record(state, graph, new, rng, t, time_h, dt, effects=effects)
        changes = dict(reshared=state.reshared + new, frontier=new, exposures=exposures, reshare_time=reshare_time,
                       parent=parent)
        return Updates(state={"cascade": state.cascade.replace(**changes)}, log_prob=log_prob)

