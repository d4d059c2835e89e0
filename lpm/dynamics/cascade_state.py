"""The cascade's own state, kept in :attr:`lpm.PopulationState.cascade`: per agent and item.

Only the cascade models (:mod:`lpm.dynamics.cascade`) step it; everything else reads it, through
``state.cascade`` or the population state's views (``state.reshared``, ``state.parent``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from lpm.errors import StateError
from lpm.state import NestedState, PopulationState, _check_float, _check_range, _check_shape

__all__ = ["CascadeState", "init_cascade_state"]


@dataclass(frozen=True, eq=False)
class CascadeState(NestedState):
    """Per content item ``c``, per scenario and agent.

    Shapes:
        reshared: ``(B, N, C)`` in [0, 1], whether the agent has reshared (or, as source, posted) it.
        frontier: ``(B, N, C)`` >= 0, the agent's visible reshare of the item: 1 when just reshared,
            decaying with the feed half-life (or gone after one step without one).
        exposures: ``(B, N, C)`` >= 0, how many times the item reached the agent's feed while online.
        hazard: ``(B, N, C)`` >= 0, the agent's cumulative reshare hazard for the item (it reshares
            when this crosses its fixed Exp(1) resistance: Sellke's construction).
        reshare_time: ``(B, N, C)`` hours at which the agent reshared it, ``+inf`` if never (a record).
        parent: ``(B, N, C)`` int64 followee it was reshared from, ``-1`` for sources and non-resharers.
    """

    reshared: Tensor
    frontier: Tensor
    exposures: Tensor
    hazard: Tensor
    reshare_time: Tensor
    parent: Tensor

    @classmethod
    def empty(cls, batch: int, num_agents: int, num_items: int, like: Tensor) -> "CascadeState":
        """Nobody exposed or resharing; floating tensors of ``like``'s dtype and device."""
        zeros = like.new_zeros(batch, num_agents, num_items)
        return cls(reshared=zeros, frontier=zeros, exposures=zeros, hazard=zeros,
                   reshare_time=torch.full_like(zeros, math.inf),
                   parent=torch.full((batch, num_agents, num_items), -1, dtype=torch.int64, device=like.device))

    @property
    def num_items(self) -> int:
        return self.reshared.size(-1)

    def check_layout(self, batch: int, num_agents: int, like: Tensor) -> None:
        shape = (batch, num_agents, self.num_items if isinstance(self.reshared, Tensor) else -1)
        for name in ("reshared", "frontier", "exposures", "hazard", "reshare_time"):
            _check_shape(name, getattr(self, name), shape)
            _check_float(name, getattr(self, name), like)
        _check_shape("parent", self.parent, shape)
        if self.parent.dtype != torch.int64:
            raise StateError(f"Expected 'parent' of dtype torch.int64 (got {self.parent.dtype})")

    def permute(self, perm: Tensor, inverse: Tensor) -> "CascadeState":
        moved = self.map(lambda t: t.index_select(1, inverse))
        parent = moved.parent  # parents are agent ids: relabel them too
        return moved.replace(parent=torch.where(parent >= 0, perm[parent.clamp_min(0)], parent))

    def validate(self, num_agents: int) -> None:
        _check_range("reshared", self.reshared, 0.0, 1.0)
        _check_range("frontier", self.frontier, 0.0, float("inf"))
        _check_range("exposures", self.exposures, 0.0, float("inf"))
        _check_range("hazard", self.hazard, 0.0, float("inf"))
        if self.reshare_time.numel() and bool(torch.isnan(self.reshare_time).any()):
            raise StateError("Expected 'reshare_time' without NaN (+inf marks never)")
        if self.parent.numel() and (int(self.parent.min()) < -1 or int(self.parent.max()) >= num_agents):
            raise StateError(f"Expected 'parent' ids in [-1, {num_agents}) "
                             f"(got [{int(self.parent.min())}, {int(self.parent.max())}])")

    def nonfinite(self) -> Optional[str]:
        for name in ("reshared", "frontier", "exposures", "hazard"):  # reshare_time is +inf for never
            if not bool(torch.isfinite(getattr(self, name)).all()):
                return name
        return None


def init_cascade_state(state: PopulationState, num_items: int) -> PopulationState:
    """``state`` with empty cascade state for ``num_items`` items (nobody exposed or resharing)."""
    return state.replace(cascade=CascadeState.empty(state.batch_size, state.num_agents, num_items, state.opinion))
