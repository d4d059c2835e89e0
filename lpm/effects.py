"""Effects of interventions on one step, as the dynamics read them.

They sit below both :mod:`lpm.dynamics` (which reads them) and :mod:`lpm.interventions` (which
writes them), so neither layer imports the other; :mod:`lpm.interventions` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

__all__ = ["Effects", "EdgeGates", "Shape", "dense_edge_scale", "smooth_step", "smooth_elapsed"]


def smooth_step(time_h: float, at: Tensor, width: float) -> Tensor:
    """``sigmoid((t - at) / width)``: 0 well before ``at``, 1 well after, differentiable in ``at``."""
    return torch.sigmoid((time_h - at) / width)


def smooth_elapsed(time_h: float, at: Tensor, width: float) -> Tensor:
    """``width * softplus((t - at) / width)``: hours since ``at`` (0 before), smooth at ``at``."""
    return width * torch.nn.functional.softplus((time_h - at) / width)


@dataclass(frozen=True)
class EdgeGates:
    """``(B, E)`` edge multipliers ``prod_k (1 - level_k[b] * blocked_k[e])``, kept factored.

    Edge blocking acts on the edges of a few accounts in some scenarios of the batch. Built as a
    dense ``(B, E)`` tensor every step it cost ~0.3 s a step at 10^5 agents (10^6 edges) x 88
    scenarios on a CPU, though the exposure push reads it at a few thousand (scenario, edge) pairs.
    :meth:`dense` gives the tensor (the same numbers: each factor and the product are computed in
    the same order); :meth:`take` gives it at index pairs.

    Shapes:
        levels: ``(B, 1)`` each, how much factor ``k`` is on per scenario; blocked: ``(E,)`` each.
    """

    levels: tuple[Tensor, ...]
    blocked: tuple[Tensor, ...]

    def dense(self) -> Tensor:
        """``(B, E)`` multipliers."""
        out = None
        for level, blocked in zip(self.levels, self.blocked):
            factor = 1 - level * blocked[None]
            out = factor if out is None else out * factor
        return out

    def take(self, scenario: Tensor, edge: Tensor) -> Tensor:
        """``(K,)`` multipliers at the pairs ``(scenario[k], edge[k])``."""
        out = None
        for level, blocked in zip(self.levels, self.blocked):
            factor = 1 - level[:, 0][scenario] * blocked[edge]
            out = factor if out is None else out * factor
        return out

    def times(self, other: "Tensor | EdgeGates") -> "Tensor | EdgeGates":
        """The product with another multiplier (dense unless both are factored)."""
        if isinstance(other, EdgeGates):
            return EdgeGates(self.levels + other.levels, self.blocked + other.blocked)
        return self.dense() * other


def dense_edge_scale(value: "Tensor | EdgeGates | None") -> Optional[Tensor]:
    """``(B, E)`` tensor of an ``edge_scale`` effect, factored or not (``None`` stays ``None``)."""
    return value.dense() if isinstance(value, EdgeGates) else value


@dataclass
class Effects:
    """Accumulated effects of all interventions at one step (``None``: no effect of that kind)."""

    reshare_logit: Optional[Tensor] = None
    exposure_scale: Optional[Tensor] = None
    source_gate: Optional[Tensor] = None
    edge_scale: "Optional[Tensor | EdgeGates]" = None
    emotion_drive: Optional[Tensor] = None
    opinion_rate: Optional[Tensor] = None
    opinion_pull: Optional[Tensor] = None
    personalization: Optional[Tensor] = None

    def add(self, name: str, value: Tensor) -> None:
        current = getattr(self, name)
        setattr(self, name, value if current is None else current + value)

    def scale(self, name: str, value: "Tensor | EdgeGates") -> None:
        current = getattr(self, name)
        if current is None:
            setattr(self, name, value)
        elif isinstance(current, EdgeGates):
            setattr(self, name, current.times(value))
        elif isinstance(value, EdgeGates):
            setattr(self, name, current * value.dense())
        else:
            setattr(self, name, current * value)


@dataclass(frozen=True)
class Shape:
    """Sizes an intervention needs to build its effects."""

    batch: int
    agents: int
    items: int
    edges: int
    emotions: int
    topics: int
    like: Tensor  # dtype and device
