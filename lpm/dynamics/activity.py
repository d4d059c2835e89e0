"""Posting activity: a network Hawkes process with an exponential kernel, discretised in time.

Each agent ``i`` carries a trace ``h_i`` of its own recent posts, decaying as ``exp(-beta dt)`` per
step. Its intensity (posts per hour) at step ``t`` is

    lambda_i(t) = mu * b_i * rhythm(t) * burst(t) + alpha * sum_j a_ij h_j / sum_j a_ij

where ``b_i`` is the agent's ``baseline_rate`` trait and the excitation is the weighted *mean* trace
of its followees (so hubs following thousands of accounts are not driven supercritical). It posts
in the step with probability ``p_i = 1 - exp(-lambda_i dt)``, drawn with an estimator from
:mod:`lpm.relax`, then ``h_i' = exp(-beta dt) h_i + post_i``.

A post raises each follower's intensity by ``alpha exp(-beta k dt)`` at lag ``k`` steps, so the
branching ratio is ``n = alpha dt / (1 - exp(-beta dt))`` (``-> alpha / beta`` as ``dt -> 0``), and on
a graph where every agent has followees the stationary rate is ``mu / (1 - n)`` (Hawkes 1971) for
``p << 1``.

``rhythm(t) = 1 + amplitude cos(2 pi (t - peak_hour) / 24)`` has mean 1 over a day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from lpm import kernels
from lpm.dynamics.base import positive, softplus, unit_interval
from lpm.engine import DynamicsModule, StepContext, Updates
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.relax import Estimator
from lpm.rng import STREAM_ACTIVITY
from lpm.state import PopulationState

__all__ = ["Burst", "Hawkes"]


@dataclass(frozen=True)
class Burst:
    """An exogenous burst: the baseline rate is multiplied by ``factor`` during a window (hours)."""

    start_h: float
    duration_h: float
    factor: float

    def __post_init__(self) -> None:
        if not self.duration_h > 0:
            raise ConfigError(f"Expected a burst duration_h > 0 (got {self.duration_h})")
        if not self.factor >= 0:
            raise ConfigError(f"Expected a burst factor >= 0 (got {self.factor})")


class Hawkes(DynamicsModule):
    """Network Hawkes activity (see the module docstring).

    Args:
        mu: baseline posts per hour (> 0); learnable (softplus).
        alpha: excitation per unit of followee trace, per hour (> 0); learnable (softplus).
        beta: decay rate of the trace per hour (> 0); learnable (softplus).
        rhythm_amplitude: daily modulation in (0, 1); learnable (sigmoid). ``None`` disables it.
        peak_hour: hour of the day with the most activity (fixed).
        bursts: exogenous bursts of the baseline rate.
    """

    def __init__(
        self,
        mu: float = 0.05,
        alpha: float = 0.5,
        beta: float = 1.0,
        *,
        rhythm_amplitude: Optional[float] = 0.5,
        peak_hour: float = 20.0,
        bursts: Sequence[Burst] = (),
    ) -> None:
        super().__init__()
        self.raw_mu = positive("mu", mu)
        self.raw_alpha = positive("alpha", alpha)
        self.raw_beta = positive("beta", beta)
        self.raw_rhythm_amplitude = (
            unit_interval("rhythm_amplitude", rhythm_amplitude) if rhythm_amplitude is not None else None
        )
        self.peak_hour = float(peak_hour)
        self.bursts = tuple(bursts)

    @property
    def mu(self) -> Tensor:
        return softplus(self.raw_mu)

    @property
    def alpha(self) -> Tensor:
        return softplus(self.raw_alpha)

    @property
    def beta(self) -> Tensor:
        return softplus(self.raw_beta)

    def branching_ratio(self, dt: float) -> Tensor:
        """Expected posts directly triggered in a follower per post: ``alpha dt / (1 - exp(-beta dt))``."""
        return self.alpha * dt / (-torch.expm1(-self.beta * dt))

    def exogenous_factor(self, time_h: float) -> Tensor | float:
        """``rhythm(t) * burst(t)``, a scalar."""
        factor: Tensor | float = 1.0
        if self.raw_rhythm_amplitude is not None:
            amplitude = torch.sigmoid(self.raw_rhythm_amplitude)
            factor = 1 + amplitude * math.cos(2 * math.pi * (time_h - self.peak_hour) / 24.0)
        for burst in self.bursts:  # decided on the host from a Python float
            if burst.start_h <= time_h < burst.start_h + burst.duration_h:
                factor = factor * burst.factor
        return factor

    def intensity(self, state: PopulationState, graph: Graph, time_h: float) -> Tensor:
        """``(B, N)`` posts per hour."""
        trace = state.activity[..., None]
        pull, weight = kernels.neighbor_pull(graph, trace)
        # pull = sum_j a_ij (h_j - h_i), so mean_j h_j = h_i + pull / weight where the agent has followees.
        has_followees = weight > 0
        mean_trace = torch.where(has_followees, trace + pull / weight.clamp_min(1e-12), torch.zeros_like(trace))
        base = self.mu * state.traits.baseline_rate * self.exogenous_factor(time_h)
        return base + self.alpha * mean_trace[..., 0]

    def forward(self, state: PopulationState, graph: Graph, ctx: StepContext) -> Updates:
        """``{"activity"}``, the step's posts (which gate what later components see) and their
        log-probability under a score-function estimator."""
        uniform = ctx.rng.uniform(ctx.t, STREAM_ACTIVITY, (state.num_agents,), state.opinion.dtype)
        posts, trace, log_prob = self.draw_posts(state, graph, ctx.time_h, ctx.dt, ctx.estimator, uniform)
        return Updates(state={"activity": trace}, posts=posts, log_prob=log_prob)

    def draw_posts(self, state: PopulationState, graph: Graph, time_h: float, dt: float,
                   estimator: Estimator, uniform: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """One step: ``(posts (B, N), next trace (B, N), log_prob (B,) or None)``."""
        rate = self.intensity(state, graph, time_h)
        prob = -torch.expm1(-rate * dt)
        posts, log_prob = estimator.sample(prob, uniform)
        trace = torch.exp(-self.beta * dt) * state.activity + posts
        return posts, trace, log_prob
