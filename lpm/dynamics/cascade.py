"""Information cascades: content items spreading by reshares over the follower graph.

Each item ``c`` is posted by its source agent at ``start_h``. In every step an agent that reshared
``c`` in the previous step (the *frontier*) shows it to its followers. Follower ``i`` sees a share
``attention`` of its ``k_ic = sum_j a_ij frontier_jc`` frontier followees' posts (all of them if
``attention`` is ``None``), and each seen post independently convinces it with probability
``q_ic``, so

    P(i reshares c in this step) = (1 - (1 - q_ic h_ic)^(attention k_ic)) * (1 - reshared_ic)

    logit q_ic = logit(transmissibility) + prior[archetype_i, c] + interest_weight * sim_ic
                 + arousal_weight * arousal_i + alignment_weight * opinion_i[topic_c] * stance_c

``h_ic = 1`` for independent exposures; with ``dose_response="complex"``,
``h = n^g / (n^g + half^g)`` of the agent's cumulative exposures ``n`` (Hill saturation): repeated
exposures reinforce each other, as in complex contagion (Centola & Macy 2007).

With ``q`` constant and everyone online this is exactly the synchronous Independent Cascade model
(Kempe, Kleinberg & Tardos 2003): each newly activated agent gets one chance per follower.
:class:`LinearThreshold` is the other classic special case.

Events are drawn with the estimator passed to :func:`lpm.simulate`. With ``record_trees`` the
exact reshare trees are recorded: ``reshare_time`` and ``parent``, a uniformly random frontier
followee among those the item came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from lpm import kernels
from lpm.dynamics.base import unit_interval
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.interventions import Effects
from lpm.relax import Estimator
from lpm.rng import STREAM_CASCADE_PARENT, STREAM_CASCADE_RESHARE, CounterRNG
from lpm.state import PopulationState

__all__ = ["Item", "Cascade", "LinearThreshold", "init_cascade_state"]

_VISIBLE = 0.01  # a reshare decayed below this weight has left the feed



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

    @property
    def sources(self) -> tuple[int, ...]:
        return tuple(self.source) if isinstance(self.source, (tuple, list)) else (self.source,)


def init_cascade_state(state: PopulationState, num_items: int) -> PopulationState:
    """``state`` with empty cascade fields for ``num_items`` items (nobody exposed or resharing)."""
    b, n = state.batch_size, state.num_agents
    zeros = state.opinion.new_zeros(b, n, num_items)
    return state.replace(
        reshared=zeros, frontier=zeros, exposures=zeros, hazard=zeros,
        reshare_time=torch.full_like(zeros, float("inf")),
        parent=torch.full((b, n, num_items), -1, dtype=torch.int64, device=state.device),
    )


def _exposure_count(graph: Graph, frontier: Tensor, effects: Effects) -> Tensor:
    """``(B, N, C)`` frontier followees per agent and item, after suspension, edge blocking and
    downranking."""
    if effects.source_gate is not None:
        frontier = frontier * effects.source_gate[..., None]
    k = kernels.neighbor_sum(graph, frontier, effects.edge_scale)
    if effects.exposure_scale is not None:
        k = k * effects.exposure_scale
    return k


class _CascadeBase(nn.Module):
    """Item seeding and tree recording shared by the cascade models."""

    def __init__(self, items: Sequence[Item], record_trees: bool) -> None:
        super().__init__()
        if len(items) == 0:
            raise ConfigError("Expected at least one item (got none)")
        self.items = tuple(items)
        self.record_trees = record_trees
        # (item, source) pairs, flattened: items may have several sources
        self._pairs = [(c, a) for c, it in enumerate(self.items) for a in it.sources]
        self.register_buffer("_pair_source", torch.tensor([a for _, a in self._pairs], dtype=torch.int64), persistent=False)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def check(self, state: PopulationState) -> None:
        """Boundary checks against a state (called by :func:`lpm.simulate`)."""
        if int(self._pair_source.max()) >= state.num_agents:
            raise ConfigError(f"Expected item sources < {state.num_agents} agents (got {int(self._pair_source.max())})")
        if state.num_items != self.num_items:
            raise ConfigError(f"Expected a state with {self.num_items} items (got {state.num_items}); "
                              "use lpm.dynamics.init_cascade_state")

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

    def _parents(self, graph: Graph, frontier: Tensor, rng: CounterRNG, t: int) -> Tensor:
        """``(B, N, C)`` a uniformly random frontier followee per (agent, item), ``-1`` if none.

        Counts frontier followees along the CSR rows with one cumulative sum, draws a rank
        ``r = floor(u * k)`` among the agent's ``k`` of them, and finds the edge holding the
        ``(r + 1)``-th one by binary search: exact, and O(B N C log E) beyond the one pass over edges.
        """
        batch, num_nodes, items = frontier.shape
        active = (frontier.detach().index_select(1, graph.col) > 0).to(torch.int32)  # (B, E, C) visible posts
        counts = torch.cumsum(active.transpose(1, 2), dim=2, dtype=torch.int32)  # (B, C, E) running counts
        counts = torch.cat([counts.new_zeros(batch, items, 1), counts], 2)  # counts[..., e] = active edges < e
        rowptr = graph.rowptr.long()
        before = counts.index_select(2, rowptr[:-1])  # (B, C, N) frontier edges before row i
        k = counts.index_select(2, rowptr[1:]) - before  # (B, C, N)
        u = rng.uniform(t, STREAM_CASCADE_PARENT, (items, num_nodes), torch.float64)  # (B, C, N)
        rank = torch.minimum((u * k).to(torch.int32), (k - 1).clamp_min(0))
        # first e with counts[..., e + 1] >= before + rank + 1, i.e. the (rank+1)-th active edge of row i
        position = torch.searchsorted(counts[..., 1:].contiguous(), (before + rank + 1).contiguous())
        position = position.clamp_max(graph.num_edges - 1)
        parent = graph.col.long()[position]  # (B, C, N)
        return torch.where(k > 0, parent, torch.full_like(parent, -1)).transpose(1, 2)

    def _record(self, state: PopulationState, graph: Graph, new: Tensor, rng: CounterRNG, t: int,
                time_h: float, dt: float) -> tuple[Tensor, Tensor]:
        reshare_time = state.reshare_time
        if not self.record_trees:
            return reshare_time, state.parent
        hard = new.detach() > 0.5
        parent_now = self._parents(graph, state.frontier, rng, t)
        parent = torch.where(hard, parent_now, state.parent)
        reshare_time = torch.where(hard, reshare_time.new_tensor(time_h + dt), reshare_time)
        return reshare_time, parent


class Cascade(_CascadeBase):
    """Social-media reshare cascades (see the module docstring).

    Args:
        items: the content items.
        transmissibility: base per-exposure reshare probability in (0, 1); learnable (sigmoid).
        interest_weight, arousal_weight, alignment_weight: logit weights (learnable, unconstrained).
        attention: share of its feed an agent sees per step, in (0, 1), learnable (sigmoid): it
            thins the exposures, ``k -> attention * k``; ``None`` means everything (Independent Cascade).
        prior: ``(K, C)`` logit offsets per archetype and item (e.g. from LLM decisions), with
            ``archetype (N,)`` giving each agent's archetype.
        interest_similarity: ``(N, C)`` similarity of each agent's interests to each item.
        dose_response: ``"independent"`` or ``"complex"`` (Hill reinforcement of repeated exposures).
        half_exposures, hill: the Hill function's half-saturation count and exponent.
        feed_half_life_h: how long a reshare stays visible in followers' feeds: the frontier decays by
            half every ``feed_half_life_h`` hours (cut below 1%), so followers who come online later
            still see it. ``None``: visible for one step only (Independent Cascade).
        record_trees: record ``reshare_time`` and ``parent`` (one int32 cumulative sum over edges per step).
    """

    def __init__(
        self,
        items: Sequence[Item],
        *,
        transmissibility: float = 0.05,
        interest_weight: float = 0.0,
        arousal_weight: float = 0.0,
        alignment_weight: float = 0.0,
        attention: Optional[float] = None,
        prior: Optional[Tensor] = None,
        archetype: Optional[Tensor] = None,
        interest_similarity: Optional[Tensor] = None,
        dose_response: str = "independent",
        half_exposures: float = 2.0,
        hill: float = 2.0,
        feed_half_life_h: Optional[float] = None,
        record_trees: bool = True,
    ) -> None:
        super().__init__(items, record_trees)
        c = len(self.items)
        if feed_half_life_h is not None and not feed_half_life_h > 0:
            raise ConfigError(f"Expected a positive feed_half_life_h or None (got {feed_half_life_h})")
        self.feed_half_life_h = feed_half_life_h
        self.raw_transmissibility = unit_interval("transmissibility", transmissibility)
        self.interest_weight = nn.Parameter(torch.tensor(float(interest_weight)))
        self.arousal_weight = nn.Parameter(torch.tensor(float(arousal_weight)))
        self.alignment_weight = nn.Parameter(torch.tensor(float(alignment_weight)))
        self.raw_attention = unit_interval("attention", attention) if attention is not None else None
        if dose_response not in ("independent", "complex"):
            raise ConfigError(f"Expected dose_response 'independent' or 'complex' (got {dose_response!r})")
        if not (half_exposures > 0 and hill > 0):
            raise ConfigError(f"Expected positive half_exposures and hill (got {half_exposures}, {hill})")
        self.dose_response, self.half_exposures, self.hill = dose_response, float(half_exposures), float(hill)
        if (prior is None) != (archetype is None):
            raise ConfigError("Expected 'prior' and 'archetype' together (got only one)")
        if prior is not None and (prior.dim() != 2 or prior.size(1) != c):
            raise ConfigError(f"Expected 'prior' of shape (K, {c}) (got {tuple(prior.shape)})")
        if archetype is not None and (archetype.dim() != 1 or archetype.dtype.is_floating_point):
            raise ConfigError(f"Expected 'archetype' as an (N,) integer tensor (got {archetype.dtype}, {tuple(archetype.shape)})")
        if interest_similarity is not None and (interest_similarity.dim() != 2 or interest_similarity.size(1) != c):
            raise ConfigError(f"Expected 'interest_similarity' of shape (N, {c}) (got {tuple(interest_similarity.shape)})")
        self.register_buffer("prior", prior)
        self.register_buffer("archetype", archetype.long() if archetype is not None else None)
        self.register_buffer("interest_similarity", interest_similarity)
        self.register_buffer("stance", torch.tensor([it.stance for it in self.items]))
        self.register_buffer("topic", torch.tensor([it.topic for it in self.items], dtype=torch.int64), persistent=False)

    @classmethod
    def from_texts(cls, items: Sequence[Item], interests: Tensor, embedder=None, **kwargs) -> "Cascade":
        """A cascade whose ``interest_similarity`` is the cosine similarity of each agent's interest
        embedding and each item's text embedding (all-MiniLM-L6-v2 by default, loaded offline).

        Args:
            items: the items; every one needs a non-empty ``text``.
            interests: ``(N, D)`` agent interest embeddings in the embedder's space (e.g. from
                :func:`lpm.embed.interest_embeddings`).
            embedder: anything with ``embed(texts) -> (C, D)``; a :class:`lpm.embed.TextEmbedder`
                by default.
            **kwargs: the other :class:`Cascade` arguments (``interest_weight`` sets the effect).
        """
        from lpm.embed import TextEmbedder, cosine_similarity

        texts = [item.text for item in items]
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ConfigError("Expected every item to have a non-empty text to embed (got an empty one)")
        embedder = TextEmbedder() if embedder is None else embedder
        item_embeddings = embedder.embed(texts)
        if interests.dim() != 2 or interests.size(1) != item_embeddings.size(1):
            raise ConfigError(f"Expected interests of shape (N, {item_embeddings.size(1)}) (got {tuple(interests.shape)})")
        similarity = cosine_similarity(interests.float(), item_embeddings.float())
        return cls(items, interest_similarity=similarity, **kwargs)

    @classmethod
    def independent_cascade(cls, items: Sequence[Item], p: float, *, record_trees: bool = True) -> "Cascade":
        """The Independent Cascade model with one transmission probability ``p``."""
        return cls(items, transmissibility=p, record_trees=record_trees)

    @property
    def transmissibility(self) -> Tensor:
        return torch.sigmoid(self.raw_transmissibility)

    def check(self, state: PopulationState) -> None:
        super().check(state)
        for name in ("archetype", "interest_similarity"):
            value = getattr(self, name)
            if value is not None and value.size(0) != state.num_agents:
                raise ConfigError(f"Expected '{name}' for {state.num_agents} agents (got {value.size(0)})")
        if int(self.topic.max()) >= state.opinion.size(-1):
            raise ConfigError(f"Expected item topics < {state.opinion.size(-1)} (got {int(self.topic.max())})")

    def reshare_logit(self, state: PopulationState) -> Tensor:
        """``(B, N, C)`` logit of the per-exposure reshare probability ``q``."""
        logits = self.raw_transmissibility.expand(state.batch_size, state.num_agents, self.num_items)
        if self.prior is not None:
            logits = logits + self.prior.to(logits.dtype)[self.archetype][None]
        if self.interest_similarity is not None:
            logits = logits + self.interest_weight * self.interest_similarity.to(logits.dtype)[None]
        if state.emotion.size(-1) >= 2:
            logits = logits + self.arousal_weight * state.emotion[..., 1:2]
        opinion_on_topic = state.opinion.index_select(2, self.topic)  # (B, N, C)
        return logits + self.alignment_weight * opinion_on_topic * self.stance.to(logits.dtype)

    def forward(self, state: PopulationState, graph: Graph, t: int, time_h: float, dt: float,
                rng: CounterRNG, estimator: Estimator,
                effects: Optional[Effects] = None) -> tuple[dict[str, Tensor], Optional[Tensor]]:
        """One step: the changed cascade fields and the log-probability of score-function draws.

        ``effects`` (from :mod:`lpm.interventions`) offset reshare logits, scale item exposure,
        gate sources (suspension) and edges (blocking).
        """
        n, c = state.num_agents, self.num_items
        effects = effects or Effects()
        state = self._seed(state, time_h, dt)
        k = _exposure_count(graph, state.frontier, effects)  # (B, N, C) frontier followees
        attention = torch.sigmoid(self.raw_attention) if self.raw_attention is not None else 1.0
        seen = attention * k  # expected posts of the item seen while online
        logits = self.reshare_logit(state)
        if effects.reshare_logit is not None:
            logits = logits + effects.reshare_logit
        q = torch.sigmoid(logits)
        exposures = state.exposures + seen
        if self.dose_response == "complex":
            dose = exposures.clamp_min(1e-12) ** self.hill
            q = q * dose / (dose + self.half_exposures**self.hill)
        # hazard of resharing in this step: each seen post convinces with probability q
        step_hazard = -seen * torch.log1p(-q.clamp_max(1 - 1e-7))
        if effects.source_gate is not None:  # suspended accounts do not reshare
            step_hazard = step_hazard * effects.source_gate[..., None]
        not_yet = 1 - state.reshared
        prob = -torch.expm1(-step_hazard) * not_yet
        new, log_prob = estimator.sample(prob, self._sellke_uniform(state, rng, n, c))
        reshare_time, parent = self._record(state, graph, new, rng, t, time_h, dt)
        frontier = new
        if self.feed_half_life_h is not None:
            older = state.frontier * 0.5 ** (dt / self.feed_half_life_h)
            frontier = new + torch.where(older < _VISIBLE, torch.zeros_like(older), older)
        changes = dict(reshared=state.reshared + new, frontier=frontier, exposures=exposures,
                       hazard=state.hazard + step_hazard * not_yet, reshare_time=reshare_time, parent=parent)
        return changes, log_prob

    @staticmethod
    def _sellke_uniform(state: PopulationState, rng: CounterRNG, n: int, c: int) -> Tensor:
        """``(B, N, C)`` uniforms for this step's reshare draws, from fixed resistances (Sellke 1983).

        Each (agent, item) has one resistance ``R ~ Exp(1)`` per seed and reshares once its
        cumulative hazard ``H`` crosses it. Given ``R > H``, ``R - H ~ Exp(1)``, so
        ``u = 1 - exp(-(R - H))`` is uniform and the event ``u < 1 - exp(-h)`` has exactly this
        step's probability: the law is the per-step Bernoulli one, while arms that differ in timing
        still share every agent's resistance (common random numbers that survive timing changes).
        """
        resistance = -torch.log1p(-rng.uniform(-1, STREAM_CASCADE_RESHARE, (n, c), torch.float64))
        # Not detached: with a relaxed estimator the run is a smooth function of the parameters given
        # the resistances, and its exact pathwise gradient includes u's dependence on the hazard.
        u = -torch.expm1(-(resistance.to(state.hazard.dtype) - state.hazard))
        return u.clamp_min(0.0).to(state.reshared.dtype)


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

    def forward(self, state: PopulationState, graph: Graph, t: int, time_h: float, dt: float,
                rng: CounterRNG, estimator: Estimator,
                effects: Optional[Effects] = None) -> tuple[dict[str, Tensor], Optional[Tensor]]:
        """One step; of the intervention effects, source gates and edge blocking apply."""
        n, c, dtype = state.num_agents, self.num_items, state.opinion.dtype
        effects = effects or Effects()
        state = self._seed(state, time_h, dt)
        reshared = state.reshared if effects.source_gate is None else state.reshared * effects.source_gate[..., None]
        adopted = kernels.neighbor_sum(graph, reshared, effects.edge_scale)
        share = adopted / graph.in_weight.to(dtype).clamp_min(1e-12)[None, :, None]
        theta = rng.uniform(-1, STREAM_CASCADE_RESHARE, (n, c), dtype)
        prob = torch.sigmoid((share - theta) / self.tau) * (1 - state.reshared)
        # the draw at 0.5 makes events exactly "prob > 1/2", i.e. share > theta, for the hard estimators
        new, log_prob = estimator.sample(prob, torch.full_like(prob, 0.5))
        exposures = state.exposures + _exposure_count(graph, state.frontier, effects)
        reshare_time, parent = self._record(state, graph, new, rng, t, time_h, dt)
        changes = dict(reshared=state.reshared + new, frontier=new, exposures=exposures, reshare_time=reshare_time,
                       parent=parent)
        return changes, log_prob

