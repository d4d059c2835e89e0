"""Emotion dynamics: contagion from seen posts, exogenous shocks, decay to a baseline.

Emotions are ``E`` real dimensions per agent (by default valence and arousal). The force on agent
``i`` at time ``t`` (hours) is

    f_i = coupling * s_i * pull_i / (1 + W_i) - decay * (e_i - baseline) + shock_gain * shock(t)

where ``pull_i = sum_j a_ij g_j (e_j - e_i)`` and ``W_i = sum_j a_ij g_j`` over followees (``g_j`` is
whether ``j`` posted, when an activity model gates what is seen). The ``1 +`` saturates contagion
with the number of posts seen: one post moves an agent half as far as many posts that agree.

First order (exponential smoothing): ``e' = e + dt f``.
Second order (momentum): ``v' = momentum v + dt f``, ``e' = e + v'``; emotions overshoot and
oscillate around the baseline, as reported for collective sentiment after shocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from lpm import kernels
from lpm.dynamics.base import positive, softplus, unit_interval
from lpm.engine import DynamicsModule, StepContext, Updates
from lpm.errors import ConfigError, StateError
from lpm.graph import Graph
from lpm.kernels.cpu.emotion import fused_emotion_update
from lpm.state import PopulationState

__all__ = ["Shock", "EmotionContagion"]


@dataclass(frozen=True)
class Shock:
    """An exogenous emotional shock: a constant drive ``impulse`` (per hour) during a time window.

    Args:
        start_h: start time in hours since the start of the simulation.
        duration_h: length of the window in hours (> 0).
        impulse: drive per emotion dimension, e.g. ``(-1.0, 0.8)`` = negative valence, high arousal.
        targets: optional ``(N,)`` bool mask of affected agents (e.g. those in the hit region).
    """

    start_h: float
    duration_h: float
    impulse: Sequence[float]
    targets: Optional[Tensor] = None

    def __post_init__(self) -> None:
        if not self.duration_h > 0:
            raise ConfigError(f"Expected a shock duration_h > 0 (got {self.duration_h})")
        if len(self.impulse) == 0:
            raise ConfigError("Expected a non-empty shock impulse (one value per emotion dimension)")
        if self.targets is not None and (self.targets.dim() != 1 or self.targets.dtype != torch.bool):
            raise ConfigError(f"Expected shock targets as a (N,) bool mask (got {self.targets.dtype}, shape {tuple(self.targets.shape)})")


class EmotionContagion(DynamicsModule):
    """Emotion contagion with decay, shocks, and optional momentum (see the module docstring).

    Args:
        coupling: contagion strength per hour (> 0); learnable (softplus).
        decay: relaxation rate to the baseline per hour (> 0); learnable (softplus).
        order: 1 (exponential smoothing) or 2 (momentum).
        momentum: velocity retention per step for ``order=2``, in (0, 1); learnable (sigmoid); no
            parameter exists for ``order=1``.
        baseline: resting emotion per dimension (fixed), zeros by default.
        shocks: exogenous shocks; their common gain is learnable (softplus, starts at 1).
    """

    def __init__(
        self,
        coupling: float = 0.5,
        decay: float = 0.1,
        *,
        order: int = 1,
        momentum: float = 0.5,
        baseline: Optional[Sequence[float]] = None,
        shocks: Sequence[Shock] = (),
    ) -> None:
        super().__init__()
        if order not in (1, 2):
            raise ConfigError(f"Expected emotion order 1 or 2 (got {order!r})")
        self.order = order
        self.raw_coupling = positive("coupling", coupling)
        self.raw_decay = positive("decay", decay)
        # only the second-order model has momentum (a parameter that does nothing could not be fitted)
        raw_momentum = unit_interval("momentum", momentum)  # validated either way
        self.raw_momentum = raw_momentum if order == 2 else None
        self.raw_shock_gain = positive("shock_gain", 1.0)
        self.register_buffer("baseline", torch.tensor(list(baseline) if baseline is not None else [], dtype=torch.float32))
        self.shocks = tuple(shocks)
        # each shock's drive as a buffer ((E,) or targets-masked (N, E)), built once and moved with
        # the module: no host-to-device copy inside the step
        for k, shock in enumerate(self.shocks):
            drive = torch.tensor(list(shock.impulse), dtype=torch.float64)  # exact; cast in the step
            if shock.targets is not None:
                drive = shock.targets.double()[:, None] * drive
            self.register_buffer(f"_shock_drive_{k}", drive, persistent=False)

    @property
    def coupling(self) -> Tensor:
        return softplus(self.raw_coupling)

    @property
    def decay(self) -> Tensor:
        return softplus(self.raw_decay)

    @property
    def momentum(self) -> Tensor:
        return torch.sigmoid(self.raw_momentum)

    @property
    def shock_gain(self) -> Tensor:
        return softplus(self.raw_shock_gain)

    def shock_drive(self, time_h: float, like: Tensor) -> Optional[Tensor]:
        """The summed drive of the shocks active at ``time_h``: ``(N, E)`` or ``(E,)``, or ``None``."""
        drive = None
        for k, shock in enumerate(self.shocks):  # a handful of shocks, decided on the host from a Python float
            if not shock.start_h <= time_h < shock.start_h + shock.duration_h:
                continue
            impulse = getattr(self, f"_shock_drive_{k}").to(like.dtype)
            drive = impulse if drive is None else drive + impulse
        return drive

    def check(self, state: PopulationState) -> None:
        """Raises :class:`StateError` if the baseline, shocks or shock targets do not fit the state's
        ``E`` emotions and ``N`` agents."""
        dims = state.emotion.size(-1)
        if self.baseline.numel() not in (0, dims):
            raise StateError(f"Expected an emotion baseline of length {dims} (got {self.baseline.numel()})")
        for shock in self.shocks:
            if len(shock.impulse) != dims:
                raise StateError(f"Expected a shock impulse of length {dims} (got {len(shock.impulse)})")
            if shock.targets is not None and shock.targets.numel() != state.num_agents:
                raise StateError(f"Expected shock targets of length {state.num_agents} (got {shock.targets.numel()})")

    def forward(self, state: PopulationState, graph: Graph, ctx: StepContext) -> Updates:
        """``{"emotion", "emotion_velocity"}`` after contagion from what was seen (through the feed),
        decay, shocks and the interventions' emotion drive."""
        emotion, velocity = ctx.through_feed(
            graph, lambda g: self.next_emotion(state, g, ctx.time_h, ctx.dt, ctx.seen, ctx.effects.emotion_drive),
            (state.emotion, state.emotion_velocity))
        return Updates(state={"emotion": emotion, "emotion_velocity": velocity})

    def next_emotion(self, state: PopulationState, graph: Graph, time_h: float, dt: float,
                     seen: Optional[Tensor] = None, drive: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Next ``(emotion, emotion_velocity)``, both ``(B, N, E)``; ``drive`` ``(B, N, E)`` is an
        extra force (e.g. guidance messages from :mod:`lpm.interventions`)."""
        e = state.emotion
        pull, weight = kernels.neighbor_pull(graph, e, source_weight=seen)
        susceptibility = state.traits.susceptibility
        baseline = self.baseline.to(e.dtype) if self.baseline.numel() else None
        shock = self.shock_drive(time_h, e)
        gain = None if shock is None else self.shock_gain

        def chain(e, velocity, pull, weight, coupling, decay, momentum, gain, drive):
            force = coupling * susceptibility[..., None] * pull / (1 + weight)
            force = force - decay * (e - (baseline if baseline is not None else e.new_zeros(())))
            if shock is not None:
                force = force + gain * shock
            if drive is not None:
                force = force + drive
            if momentum is None:
                return e + dt * force, velocity
            velocity = momentum * velocity + dt * force
            return e + velocity, velocity

        momentum = self.momentum if self.order == 2 else None
        if momentum is not None:  # one fused backward pass instead of autograd's chain (same forward bits)
            fused = fused_emotion_update(chain, e, state.emotion_velocity, pull, weight, susceptibility, self.coupling,
                                         self.decay, momentum, gain, shock, baseline, drive, dt)
            if fused is not None:
                return fused
        return chain(e, state.emotion_velocity, pull, weight, self.coupling, self.decay, momentum, gain, drive)
