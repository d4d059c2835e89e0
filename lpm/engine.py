"""The engine interface: one protocol for every dynamics component, and the context of a step.

A :class:`~lpm.Model` step is a loop over an ordered list of components. Each reads the state at the
start of the step and a :class:`StepContext` (time, draws, estimator, the interventions' effects,
what was seen, the feed), and returns :class:`Updates`: new values of state fields, plus events.
Every component reads the *start-of-step* state, so the order of components only matters through
the context: posts drawn by an earlier component (activity) gate what later ones see, and a later
component can read the new values set earlier in the step (``ctx.updates``).

A new dynamics module is one class with ``forward(state, graph, ctx) -> Updates`` and
``check(state)``, added to a model with ``Model(..., extra={"name": component})``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Protocol, Sequence, runtime_checkable

from torch import Tensor, nn

from lpm.graph import Graph
from lpm.relax import Estimator
from lpm.rng import CounterRNG
from lpm.state import PopulationState

if TYPE_CHECKING:  # annotations only: interventions and the feed import the dynamics, which import this
    from lpm.dynamics.recommender import Feed
    from lpm.effects import Effects
    from lpm.kernels import PairKernel

__all__ = ["StepContext", "Updates", "Dynamics", "DynamicsModule"]

_NOTHING: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, eq=False)
class StepContext:
    """What a component may read in a step besides the state and the graph.

    Attributes:
        t: index of the step, which runs from ``time_h`` to ``time_h + dt`` hours.
        time_h: start of the step in hours.
        dt: step length in hours.
        rng: the run's counter RNG; every draw is a function of (seed, step, stream, agent).
        estimator: how discrete events are sampled and differentiated (:mod:`lpm.relax`).
        effects: the interventions' combined effects at ``time_h`` (:class:`lpm.interventions.Effects`).
        posts: ``(B, N)`` posts drawn earlier in the step (by the activity model), or ``None``.
        seen: ``(B, N)`` weight per author of what agents saw: posts, gated by suspensions and
            weighted by the feed's ranker; ``None`` means every followee counts.
        ranker: the feed's pair kernel reweighting seen posts, or ``None``.
        feed: the model's :class:`~lpm.dynamics.Feed`, or ``None``.
        out_graph: the feed's out-of-network candidate graph for this step, or ``None``.
        updates: new values set by earlier components in this step, by state field name.
    """

    t: int
    time_h: float
    dt: float
    rng: CounterRNG
    estimator: Estimator
    effects: "Effects"
    posts: Optional[Tensor] = None
    seen: Optional[Tensor] = None
    ranker: Optional["PairKernel"] = None
    feed: Optional["Feed"] = None
    out_graph: Optional[Graph] = None
    updates: Mapping[str, Any] = field(default_factory=lambda: _NOTHING)

    def through_feed(self, graph: Graph, fn: Callable[[Graph], Sequence[Tensor]],
                     base: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """``fn(graph)`` on the follower graph, mixed by the feed with ``fn(out_graph)`` when the
        feed has out-of-network candidates: ``base + a (in - base) + (1 - a) (out - base)``.

        Args:
            fn: maps a graph to new values of some fields.
            base: the start-of-step values of those fields, in the same order.
        """
        inside = tuple(fn(graph))
        if self.out_graph is None:
            return inside
        outside = tuple(fn(self.out_graph))
        return tuple(self.feed.mix(b, i, o) for b, i, o in zip(base, inside, outside))


@dataclass(frozen=True, eq=False)
class Updates:
    """What one component did in a step.

    Attributes:
        state: new values by :class:`~lpm.state.PopulationState` field name (``"opinion"``, or
            ``"cascade"`` for a nested state); fields not named keep their values.
        posts: ``(B, N)`` posts per agent, when the component draws them.
        log_prob: ``(B,)`` log-probability of its score-function draws, else ``None``.
        direct_reshares: ``(B, C)`` expected reshares that came straight from item sources.
        second_level_reshares: ``(B, C)`` expected reshares attached to those (depth 2 of the trees).
    """

    state: Mapping[str, Any] = field(default_factory=lambda: _NOTHING)
    posts: Optional[Tensor] = None
    log_prob: Optional[Tensor] = None
    direct_reshares: Optional[Tensor] = None
    second_level_reshares: Optional[Tensor] = None


@runtime_checkable
class Dynamics(Protocol):
    """The protocol every step component follows (:class:`DynamicsModule` implements the defaults)."""

    def __call__(self, state: PopulationState, graph: Graph, ctx: StepContext) -> Updates:
        """One step from ``state``: pure, no host syncs."""
        ...

    def check(self, state: PopulationState) -> None:
        """Raise :class:`lpm.errors.StateError` if ``state`` does not fit this component."""
        ...

    def init_state(self, state: PopulationState) -> PopulationState:
        """``state`` with whatever this component keeps in it, initialised if missing."""
        ...

    def idle_after(self, horizon_h: float) -> list[str]:
        """Messages for what this component schedules at or after ``horizon_h`` (a no-op there)."""
        ...


class DynamicsModule(nn.Module):
    """Base class of the dynamics modules: subclasses write ``forward(state, graph, ctx) -> Updates``
    and, where the state must fit their configuration, ``check``."""

    def forward(self, state: PopulationState, graph: Graph, ctx: StepContext) -> Updates:  # pragma: no cover
        raise NotImplementedError

    def check(self, state: PopulationState) -> None:
        """Nothing to check beyond the state's own invariants."""

    def init_state(self, state: PopulationState) -> PopulationState:
        return state

    def idle_after(self, horizon_h: float) -> list[str]:
        return []
