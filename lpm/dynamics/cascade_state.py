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

__all__ = ["CascadeState", "LevelCascadeState", "init_cascade_state"]


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


@dataclass(frozen=True, eq=False)
class LevelCascadeState(CascadeState):
    """:class:`CascadeState` that also follows the reshares attached to an item's source (depth 1 of its
    tree), so the expected-value dynamics can say how many reshares sit one level further down (depth 2):
    :class:`~lpm.dynamics.Cascade` then reports ``second_level_reshares`` each step. Calibration uses it
    to put the trees' depth profile into a loss that is computed without sampling trees.

    Shapes (as :class:`CascadeState`):
        first_level_reshared: ``(B, N, C)`` in [0, 1], the part of ``reshared`` attached to the source.
        first_level_frontier: ``(B, N, C)`` >= 0, the part of ``frontier`` from those reshares.
    """

    first_level_reshared: Tensor
    first_level_frontier: Tensor

    @classmethod
    def empty(cls, batch: int, num_agents: int, num_items: int, like: Tensor) -> "LevelCascadeState":
        base = CascadeState.empty(batch, num_agents, num_items, like)
        zeros = like.new_zeros(batch, num_agents, num_items)
        return cls(*base.tensors(), first_level_reshared=zeros, first_level_frontier=zeros)

    def check_layout(self, batch: int, num_agents: int, like: Tensor) -> None:
        super().check_layout(batch, num_agents, like)
        for name in ("first_level_reshared", "first_level_frontier"):
            _check_shape(name, getattr(self, name), tuple(self.reshared.shape))
            _check_float(name, getattr(self, name), like)

    def validate(self, num_agents: int) -> None:
        super().validate(num_agents)
        _check_range("first_level_reshared", self.first_level_reshared, 0.0, 1.0)
        _check_range("first_level_frontier", self.first_level_frontier, 0.0, float("inf"))

    def nonfinite(self) -> Optional[str]:
        for name in ("first_level_reshared", "first_level_frontier"):
            if not bool(torch.isfinite(getattr(self, name)).all()):
                return name
        return super().nonfinite()


def init_cascade_state(state: PopulationState, num_items: int, *, levels: bool = False) -> PopulationState:
    """``state`` with empty cascade state for ``num_items`` items (nobody exposed or resharing);
    ``levels``: a :class:`LevelCascadeState`, which also follows the reshares attached to the source."""
    kind = LevelCascadeState if levels else CascadeState
    return state.replace(cascade=kind.empty(state.batch_size, state.num_agents, num_items, state.opinion))
