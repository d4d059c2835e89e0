"""What every cascade model shares: items, and their seeding and tree recording over the
:class:`~lpm.dynamics.cascade_state.CascadeState` they own (see :mod:`lpm.dynamics.cascade`)."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from lpm import kernels
from lpm.dynamics.cascade_state import CascadeState, init_cascade_state
from lpm.effects import Effects
from lpm.engine import DynamicsModule
from lpm.errors import ConfigError, StateError
from lpm.graph import Graph
from lpm.rng import (STREAM_CASCADE_BROADCAST, STREAM_CASCADE_PARENT, STREAM_CASCADE_RESHARE,
                     STREAM_CASCADE_RESHARER_PARENT, CounterRNG)
from lpm.state import PopulationState

__all__ = ["Item", "sellke_resistance", "sellke_uniform"]


@dataclass(frozen=True)
class Item:
    """A content item.

    Args:
        source: index of the agent that posts it, or several agents that post it at once.
        start_h: when the source posts it (hours).
        text: the item's text (embedded elsewhere; kept for provenance).
        stance: its position on opinion topic ``topic``, in [-1, 1] (for opinion alignment).
        topic: the opinion topic it speaks to.
    """

    source: int | tuple[int, ...]
    start_h: float = 0.0
    text: str = ""
    stance: float = 0.0
    topic: int = 0

    def __post_init__(self) -> None:
        sources = self.sources
        if not sources or not all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in sources):
            raise ConfigError(f"Expected an item source as a non-negative agent index or a tuple of them (got {self.source!r})")
        if not -1.0 <= self.stance <= 1.0:
            raise ConfigError(f"Expected an item stance in [-1, 1] (got {self.stance})")
        if isinstance(self.start_h, bool) or not isinstance(self.start_h, (int, float)) \
                or not math.isfinite(self.start_h) or self.start_h < 0:
            raise ConfigError(f"Expected an item start_h as a finite number of hours >= 0 (got {self.start_h!r})")

    @property
    def sources(self) -> tuple[int, ...]:
        return tuple(self.source) if isinstance(self.source, (tuple, list)) else (self.source,)


def _exposure_count(graph: Graph, frontier: Tensor, effects: Effects) -> Tensor:
    """``(B, N, C)`` frontier followees per agent and item, after suspension, edge blocking and
    downranking."""
    if effects.source_gate is not None:
        frontier = frontier * effects.source_gate[..., None]
    k = kernels.neighbor_sum(graph, frontier, effects.edge_scale)
    if effects.exposure_scale is not None:
        k = k * effects.exposure_scale
    return k


class _CascadeBase(DynamicsModule):
    """Item seeding and tree recording shared by the cascade models, which own the state's
    :class:`CascadeState` (``state.cascade``)."""

    def __init__(self, items: Sequence[Item], record_trees: bool) -> None:
        super().__init__()
        if len(items) == 0:
            raise ConfigError("Expected at least one item (got none)")
        self.items = tuple(items)
        self.record_trees = record_trees
        # (item, source) pairs, flattened: items may have several sources
        self._pairs = [(c, a) for c, it in enumerate(self.items) for a in it.sources]
        self.register_buffer("_pair_source", torch.tensor([a for _, a in self._pairs], dtype=torch.int64), persistent=False)
        self.register_buffer("_pair_item", torch.tensor([c for c, _ in self._pairs], dtype=torch.int64), persistent=False)
        self.register_buffer("_first_source", torch.tensor([it.sources[0] for it in self.items], dtype=torch.int64),
                             persistent=False)
        # the items' sources never change, so each step reuses one mask per population size and device
        self._sources_masks: dict[tuple[int, torch.device], Tensor] = {}

    @property
    def num_items(self) -> int:
        return len(self.items)

    def check(self, state: PopulationState) -> None:
        """Boundary checks against a state (called by :func:`lpm.simulate`).

        Raises:
            StateError: item sources beyond the state's agents, or no cascade state for these items.
        """
        if int(self._pair_source.max()) >= state.num_agents:
            raise StateError(f"Expected item sources < {state.num_agents} agents (got {int(self._pair_source.max())})")
        if not isinstance(state.cascade, CascadeState) or state.num_items != self.num_items:
            raise StateError(f"Expected a state with cascade state for {self.num_items} items (got "
                             f"{state.num_items if state.cascade is not None else 'none'}); "
                             "use lpm.dynamics.init_cascade_state")

    def init_state(self, state: PopulationState) -> PopulationState:
        """``state`` with empty cascade state for the items, unless it holds some already."""
        return init_cascade_state(state, self.num_items) if state.num_items == 0 else state

    def idle_after(self, horizon_h: float) -> list[str]:
        return [f"Expected item {c} to be posted before the end of the simulation at {horizon_h:g} h "
                f"(got start_h={item.start_h:g} h): it never spreads"
                for c, item in enumerate(self.items) if item.start_h >= horizon_h]

    def sources_mask(self, num_agents: int, device: torch.device) -> Tensor:
        """``(N, C)`` bool: whether each agent is a source of each item (built once per population size
        and device from the pair buffers, then reused: treat it as read-only)."""
        key = (num_agents, torch.device(device))
        if key not in self._sources_masks:
            is_source = torch.zeros(num_agents, self.num_items, dtype=torch.bool, device=device)
            is_source[self._pair_source.to(device), self._pair_item.to(device)] = True
            self._sources_masks[key] = is_source
        return self._sources_masks[key]

    def _apply(self, fn, *args, **kwargs):
        # a move (.to, .cuda, .double) drops the cached masks, so none stays held on the old device
        self._sources_masks.clear()
        return super()._apply(fn, *args, **kwargs)

    def _seed(self, state: PopulationState, time_h: float, dt: float) -> PopulationState:
        """Sources of items starting in ``[time_h, time_h + dt)`` post them now, so followers online
        in this step can see them."""
        starting = [c for c, it in enumerate(self.items) if time_h <= it.start_h < time_h + dt]
        if not starting:  # decided on the host from Python floats: no device sync
            return state
        device, dtype = state.device, state.reshared.dtype
        pairs = [(c, a) for c, a in self._pairs if c in starting]  # host-side lists: no device sync
        items = torch.tensor([c for c, _ in pairs], device=device)
        sources = torch.tensor([a for _, a in pairs], device=device)
        batch = state.batch_size
        b_idx = torch.arange(batch, device=device).repeat_interleave(len(pairs))
        idx = (b_idx, sources.repeat(batch), items.repeat(batch))
        ones = torch.ones(b_idx.numel(), dtype=dtype, device=device)
        starts = torch.tensor([self.items[c].start_h for c, _ in pairs], dtype=dtype, device=device).repeat(batch)
        return state.replace(reshared=state.reshared.index_put(idx, ones), frontier=state.frontier.index_put(idx, ones),
                             reshare_time=state.reshare_time.index_put(idx, starts))

    def _parents(self, graph: Graph, frontier: Tensor, hard: Tensor, rng: CounterRNG, t: int,
                 effects: Optional[Effects] = None) -> tuple[Tensor, Tensor]:
        """The parents of this step's new reshares ``hard (B, N, C)``: a frontier followee of each,
        drawn in proportion to what its post adds to the exposure count (its visibility, after
        suspension and edge blocking: :func:`lpm.kernels.sample_visible_followee`), which is the
        probability that its post is the one that convinced. Recording trees costs one host sync per
        step (the number of new reshares), which is why training runs go without them.

        Returns:
            ``(index, parent)``: the ``(K, 3)`` (b, i, c) positions and their ``(K,)`` parents (-1 if none
            in the graph).
        """
        index = hard.nonzero()  # (K, 3); the host sync
        b, i, c = index.unbind(1)
        num_nodes, items = hard.shape[1], hard.shape[2]
        u = rng.uniform_at(t, STREAM_CASCADE_PARENT, (items, num_nodes), b, c * num_nodes + i)  # u[b, c, i]
        posts, edge_scale = frontier.detach(), None
        if effects is not None:
            if effects.source_gate is not None:
                posts = posts * effects.source_gate.detach()[..., None]
            edge_scale = effects.edge_scale
        return index, kernels.sample_visible_followee(graph, posts, index, u, edge_scale)

    def _record(self, state: PopulationState, graph: Graph, new: Tensor, rng: CounterRNG, t: int,
                time_h: float, dt: float, from_source: Optional[Tensor] = None,
                from_resharers: Optional[Tensor] = None,
                resharer_weight: Optional[Tensor] = None,
                effects: Optional[Effects] = None) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """Reshare times and parents of this step's hard reshares; ``from_source (B, N, C)`` is the
        probability that a reshare came through the source's out-of-graph audience, ``from_resharers
        (B, N, C)`` that it came through a resharer's, who is then drawn with probability
        proportional to ``resharer_weight (B, N, C)`` (its audience times its post's visibility);
        ``effects`` weigh the graph parents as they weigh the exposures (:meth:`_parents`).

        Returns:
            the reshare times, the parents, and ``(B, N, C)`` 1 where this step's reshare's parent is a
            source of the item (depth 1), else 0. Without ``record_trees`` the parents stay as they
            were and the last is ``None``.
        """
        hard = new.detach() > 0.5
        reshare_time = torch.where(hard, state.reshare_time.new_tensor(time_h + dt), state.reshare_time)
        if not self.record_trees:
            return reshare_time, state.parent, None
        index, parent_now = self._parents(graph, state.frontier, hard, rng, t, effects)
        b, i, c = index.unbind(1)
        if from_source is not None or from_resharers is not None:
            shape = tuple(new.shape[1:])
            u = rng.uniform_at(t, STREAM_CASCADE_BROADCAST, shape, b, i * new.size(2) + c)
            p_source = from_source.detach()[b, i, c].double() if from_source is not None else torch.zeros_like(u)
            if from_resharers is not None and resharer_weight is not None:
                via_resharer = (u >= p_source) & (u < p_source + from_resharers.detach()[b, i, c].double())
                drawn = self._draw_resharer(resharer_weight.detach(), b, c,
                                            rng.uniform_at(t, STREAM_CASCADE_RESHARER_PARENT, shape, b, i * new.size(2) + c))
                parent_now = torch.where(via_resharer, drawn, parent_now)
            parent_now = torch.where(u < p_source, self._first_source[c], parent_now)
        parent = state.parent.index_put((b, i, c), parent_now)
        on_source = (parent_now >= 0) & self.sources_mask(new.size(1), new.device)[parent_now.clamp_min(0), c]
        attached = torch.zeros_like(new).index_put((b, i, c), on_source.to(new.dtype))
        return reshare_time, parent, attached

    @staticmethod
    def _draw_resharer(weight: Tensor, b: Tensor, c: Tensor, u: Tensor) -> Tensor:
        """``(K,)`` agents drawn in slices ``(b, :, c)`` of ``weight (B, N, C)`` with probability
        proportional to the weights: one cumulative sum over the flattened ``(B, C, N)`` layout (a
        monotone sequence), searched at each slice's offset plus ``u`` times the slice's total."""
        n, items = weight.size(1), weight.size(2)
        running = weight.double().permute(0, 2, 1).reshape(-1).cumsum(0)  # (B * C * N,)
        slot = b * items + c
        end = running[(slot + 1) * n - 1]
        start = torch.where(slot > 0, running[(slot * n - 1).clamp_min(0)], torch.zeros_like(end))
        position = torch.searchsorted(running, start + u * (end - start), right=True)
        position = torch.minimum(torch.maximum(position, slot * n), (slot + 1) * n - 1)
        return position - slot * n


# Draws fixed for a whole run (step -1 of a stream), kept per CounterRNG object: recomputing the hash
# of (B, N, C) counters every step cost about a fifth of a training step on the CPU. Entries go away
# with the run's CounterRNG.
_RUN_DRAWS: "weakref.WeakKeyDictionary[CounterRNG, dict]" = weakref.WeakKeyDictionary()


def sellke_resistance(rng: CounterRNG, num_agents: int, num_items: int, dtype: torch.dtype) -> Tensor:
    """``(B, N, C)`` resistances ``R ~ Exp(1)`` per (agent, item), fixed for the run (see
    :func:`sellke_uniform`)."""
    return _run_draw(rng, ("resistance", num_agents, num_items, dtype), lambda: -torch.log1p(
        -rng.uniform(-1, STREAM_CASCADE_RESHARE, (num_agents, num_items), torch.float64)).to(dtype))


def sellke_uniform(state: PopulationState, rng: CounterRNG, num_agents: int, num_items: int) -> Tensor:
    """``(B, N, C)`` uniforms for this step's reshare draws, from fixed resistances (Sellke 1983).

    Each (agent, item) has one resistance ``R ~ Exp(1)`` per seed and reshares once its
    cumulative hazard ``H`` crosses it. Given ``R > H``, ``R - H ~ Exp(1)``, so
    ``u = 1 - exp(-(R - H))`` is uniform and the event ``u < 1 - exp(-h)`` has exactly this
    step's probability: the law is the per-step Bernoulli one, while arms that differ in timing
    still share every agent's resistance (common random numbers that survive timing changes).
    """
    resistance = sellke_resistance(rng, num_agents, num_items, state.hazard.dtype)
    # Not detached: with a relaxed estimator the run is a smooth function of the parameters given
    # the resistances, and its exact pathwise gradient includes u's dependence on the hazard.
    u = -torch.expm1(-(resistance - state.hazard))
    return u.clamp_min(0.0).to(state.reshared.dtype)


def _run_draw(rng: CounterRNG, key: tuple, make) -> Tensor:
    draws = _RUN_DRAWS.setdefault(rng, {})
    if key not in draws:
        draws[key] = make()
    return draws[key]


def _standard_normal(rng: CounterRNG, stream: int, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """``(B, *shape)`` standard normals fixed for the whole run (drawn at step -1 of ``stream``)."""
    def make() -> Tensor:
        u = rng.uniform(-1, stream, shape, torch.float64).clamp(1e-12, 1 - 1e-12)
        return (math.sqrt(2.0) * torch.special.erfinv(2 * u - 1)).to(dtype)

    return _run_draw(rng, ("normal", stream, tuple(shape), dtype), make)
