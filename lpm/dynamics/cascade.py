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

Optional ingredients make cascades look like those on real platforms, where rumours start at
accounts with audiences far larger than a sampled graph can hold (the class's arguments list all):

* ``audience``: each item's source is also followed by ``A_bc = audience * exp(spread * z_bc)``
  accounts beyond the graph (``z_bc ~ N(0, 1)`` per scenario and item); the agents stand for that
  audience, which adds ``(A_bc / N) * frontier[source_c]`` to every ``k_ic``.
* ``resharer_audience``: every other resharer ``j`` is also followed by ``A_j = resharer_audience *
  exp(spread_r * z_j)`` accounts beyond the graph (``z_j`` per scenario and agent), which add
  ``sum_j (A_j / N) * frontier[j]`` to every ``k_ic``: well-followed resharers start sub-cascades
  one level deeper, as resharers' own audiences carry real rumours further.
* ``attention_spread``: agent ``i`` sees a share ``sigmoid(logit(attention) + spread * z_i)`` of
  its feed, ``z_i ~ N(0, 1)`` fixed per scenario and agent.

With ``q`` constant and everyone online this is exactly the synchronous Independent Cascade model
(Kempe, Kleinberg & Tardos 2003): each newly activated agent gets one chance per follower.
:class:`lpm.dynamics.threshold.LinearThreshold` is the other classic special case.

Events are drawn with the estimator passed to :func:`lpm.simulate`. With ``record_trees`` the
exact reshare trees are recorded: ``reshare_time`` and ``parent``, the poster whose post
convinced, drawn in proportion to what each channel and each frontier followee added to ``k_ic``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from lpm.dynamics.base import log_scale, positive, positive_value, softplus, unit_interval
from lpm.dynamics.cascade_base import (Item, _CascadeBase, _exposure_count, _standard_normal, sellke_resistance,
                                       sellke_uniform)
from lpm.dynamics.cascade_state import CascadeState, LevelCascadeState, init_cascade_state
from lpm.dynamics.feed_decay import aged_visibility, feed_visibility, item_pace
from lpm.engine import StepContext, Updates
from lpm.errors import ConfigError, StateError
from lpm.graph import Graph
from lpm.relax import exact_events
from lpm.rng import (STREAM_CASCADE_ATTACH, STREAM_CASCADE_ATTENTION, STREAM_CASCADE_AUDIENCE, STREAM_CASCADE_FEED_ITEM,
                     STREAM_CASCADE_RESHARER_AUDIENCE, STREAM_CASCADE_RESHARER_ITEM, CounterRNG)
from lpm.state import PopulationState

__all__ = ["Item", "Cascade", "CascadeState", "init_cascade_state", "sellke_resistance"]


class Cascade(_CascadeBase):
    """Social-media reshare cascades (see the module docstring).

    Args:
        items: the content items.
        transmissibility: base per-exposure reshare probability in (0, 1); learnable (sigmoid).
        interest_weight, arousal_weight, alignment_weight: logit weights (learnable, unconstrained).
        attention: share of its feed an agent sees per step, in (0, 1), learnable (sigmoid): it
            thins the exposures, ``k -> attention * k``; ``None`` means everything (Independent Cascade).
        prior: ``(K, C)`` logit offsets per archetype and item (e.g. from LLM decisions), with
            ``archetype (N,)`` giving each agent's archetype; or a module returning them when called
            with no arguments (:class:`lpm.archetypes.ArchetypeDrive`), called every step so that
            gradients reach its parameters.
        interest_similarity: ``(N, C)`` similarity of each agent's interests to each item.
        dose_response: ``"independent"`` or ``"complex"`` (Hill reinforcement of repeated exposures).
        half_exposures, hill: the Hill function's half-saturation count and exponent.
        feed_half_life_h: how long a reshare stays visible in followers' feeds: the frontier decays by
            half every ``feed_half_life_h`` hours (cut below 1%), so followers who come online later
            still see it. ``None``: visible for one step only (Independent Cascade).
        feed_tail: with a value ``a > 1``, visibility decays as a power law ``(1 + age / tau)^(-a)``
            (halving at ``feed_half_life_h``) instead of exponentially; learnable (stored as
            ``a - 1`` through softplus: ``a <= 1`` would give a post unbounded total visibility).
        feed_item_spread: log-normal spread of the feed half-life across items (learnable when > 0;
            needs ``feed_half_life_h``): item ``c`` of scenario ``b`` halves its visibility every
            ``feed_half_life_h * exp(s z_bc)`` hours, ``z_bc`` standard normal. Some rumours are
            news for an hour, others are read for days, so cascades of the same first-hour size
            grow by different factors afterwards, as in data.
        feed_item_pace: with ``feed_item_spread``, items differ in pace only: each item's exposures
            are scaled so that a post's summed visibility over its lifetime is the one at
            ``feed_half_life_h`` (:func:`~lpm.dynamics.feed_decay.item_pace`). Without it a slow item
            also reaches more people in all, so its cascade is larger, not only later.
        audience: median number of accounts beyond the graph that follow an item's source (learnable);
            ``None``: sources reach only their followers in the graph.
        audience_spread: log-normal spread of the audience across items (learnable when > 0).
        resharer_audience: median number of accounts beyond the graph that follow a resharer (other
            than an item's source; learnable, log scale); ``None``: resharers reach only their
            followers in the graph.
        resharer_audience_spread: log-normal spread of resharers' audiences across agents
            (learnable when > 0).
        resharer_item_spread: log-normal spread of resharers' audiences across items (learnable when
            > 0): how far an item travels through resharers' followers rather than its source's
            varies by item (some rumours are discussed person to person, others only broadcast), so
            the share of reshares attached to the source varies across cascades as it does in data.
        resharer_half_life_h: hours after an item's post at which its resharers' out-of-graph reach
            has halved (learnable; needs ``resharer_audience``): it falls as ``tau / (tau + age)``,
            novelty decay (Wu & Huberman 2007, PNAS 104). Deep reshares come late, so an item's
            branching falls with depth; without it, items whose resharers reach far branch at one
            rate all the way down and grow trees deeper than real ones. ``None``: no ageing.
        first_level_audience_ratio: resharers attached to the source have out-of-graph audiences this
            many times larger than other resharers' (learnable, log scale; needs ``resharer_audience``
            and a :class:`~lpm.dynamics.cascade_state.LevelCascadeState`, which :meth:`init_state`
            creates): a rumour's source is a popular account, and the accounts that reshare it
            straight from it are better followed than those that meet it further down, so the
            resharer channel branches more one level below the root than deeper in the tree. In exact
            runs an agent is attached when its drawn parent is a source (drawn with its probability,
            the share of its exposures from the source); the mean field uses that probability. That draw's
            log-probability is not in the score-function estimator's, nor is the parent draw's.
        attention_spread: spread of agents' attention in logit space (learnable when > 0; needs ``attention``).
        reading_interval_h: hours one reading of the feed (``attention``) stands for: a step of ``dt``
            hours sees ``dt / reading_interval_h`` of a reading's posts, so the exposures a post gives
            over its life converge as the step shrinks (a left Riemann sum of its visibility) instead
            of growing with the number of steps. ``None``: one reading per step, whatever its length.
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
        prior: Optional[Tensor | nn.Module] = None,
        archetype: Optional[Tensor] = None,
        interest_similarity: Optional[Tensor] = None,
        dose_response: str = "independent",
        half_exposures: float = 2.0,
        hill: float = 2.0,
        feed_half_life_h: Optional[float] = None,
        feed_tail: Optional[float] = None,
        audience: Optional[float] = None,
        audience_spread: float = 0.0,
        attention_spread: float = 0.0,
        resharer_audience: Optional[float] = None,
        resharer_audience_spread: float = 0.0,
        resharer_item_spread: float = 0.0,
        feed_item_spread: float = 0.0,
        feed_item_pace: bool = False,
        first_level_audience_ratio: Optional[float] = None,
        resharer_half_life_h: Optional[float] = None,
        reading_interval_h: Optional[float] = None,
        record_trees: bool = True,
    ) -> None:
        super().__init__(items, record_trees)
        c = len(self.items)
        # learnable (softplus); the spreads are fixed at 0 when created as 0 (no heterogeneity)
        self.raw_audience = log_scale("audience", audience) if audience is not None else None  # spans decades
        self.raw_audience_spread = positive("audience_spread", audience_spread) if audience_spread > 0 else None
        if resharer_audience_spread > 0 and resharer_audience is None:
            raise ConfigError("Expected a 'resharer_audience' with resharer_audience_spread > 0 (got None)")
        self.raw_resharer_audience = log_scale("resharer_audience", resharer_audience) if resharer_audience is not None else None
        self.raw_resharer_audience_spread = (positive("resharer_audience_spread", resharer_audience_spread)
                                             if resharer_audience_spread > 0 else None)
        if resharer_item_spread > 0 and resharer_audience is None:
            raise ConfigError("Expected a 'resharer_audience' with resharer_item_spread > 0 (got None)")
        self.raw_resharer_item_spread = (positive("resharer_item_spread", resharer_item_spread)
                                         if resharer_item_spread > 0 else None)
        if resharer_half_life_h is not None and resharer_audience is None:
            raise ConfigError("Expected a 'resharer_audience' with resharer_half_life_h (got None)")
        self.raw_resharer_half_life = (positive("resharer_half_life_h", resharer_half_life_h)
                                       if resharer_half_life_h is not None else None)
        ratio = first_level_audience_ratio
        if ratio is not None and (resharer_audience is None or not (isinstance(ratio, (int, float)) and ratio > 0)):
            raise ConfigError(f"Expected a 'resharer_audience' and first_level_audience_ratio > 0 (got "
                              f"{resharer_audience!r} and {ratio!r})")
        self.raw_first_level_ratio = nn.Parameter(torch.tensor(math.log(ratio))) if ratio is not None else None
        if attention_spread > 0 and attention is None:
            raise ConfigError("Expected an 'attention' with attention_spread > 0 (got attention=None)")
        self.raw_attention_spread = positive("attention_spread", attention_spread) if attention_spread > 0 else None
        # learnable (softplus): calibration fits how long posts stay in feeds to reshare delays
        self.raw_feed_half_life = positive("feed_half_life_h", feed_half_life_h) if feed_half_life_h is not None else None
        if feed_tail is not None and feed_half_life_h is None:
            raise ConfigError("Expected a feed_half_life_h with feed_tail (got feed_half_life_h=None)")
        if feed_tail is not None and not (isinstance(feed_tail, (int, float)) and feed_tail > 1.0):
            raise ConfigError(f"Expected feed_tail > 1 (a slower decay gives every post unbounded total "
                              f"visibility; got {feed_tail!r})")
        self.raw_feed_tail = positive("feed_tail", feed_tail - 1.0) if feed_tail is not None else None
        if feed_item_spread > 0 and feed_half_life_h is None:
            raise ConfigError("Expected a feed_half_life_h with feed_item_spread > 0 (got feed_half_life_h=None)")
        self.raw_feed_item_spread = positive("feed_item_spread", feed_item_spread) if feed_item_spread > 0 else None
        if feed_item_pace and not feed_item_spread > 0:
            raise ConfigError(f"Expected feed_item_spread > 0 with feed_item_pace (got {feed_item_spread!r})")
        self.feed_item_pace = feed_item_pace
        self.reading_interval_h = (positive_value("reading_interval_h", reading_interval_h)
                                   if reading_interval_h is not None else None)
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
        prior_value = prior() if isinstance(prior, nn.Module) else prior
        if prior is not None and (prior_value.dim() != 2 or prior_value.size(1) != c):
            raise ConfigError(f"Expected 'prior' of shape (K, {c}) (got {tuple(prior_value.shape)})")
        if archetype is not None and (archetype.dim() != 1 or archetype.dtype.is_floating_point):
            raise ConfigError(f"Expected 'archetype' as an (N,) integer tensor (got {archetype.dtype}, {tuple(archetype.shape)})")
        if interest_similarity is not None and (interest_similarity.dim() != 2 or interest_similarity.size(1) != c):
            raise ConfigError(f"Expected 'interest_similarity' of shape (N, {c}) (got {tuple(interest_similarity.shape)})")
        if isinstance(prior, nn.Module):
            self.prior = prior
        else:
            self.register_buffer("prior", prior)
        self.register_buffer("archetype", archetype.long() if archetype is not None else None)
        self.register_buffer("interest_similarity", interest_similarity)
        self.register_buffer("stance", torch.tensor([it.stance for it in self.items]))
        self.register_buffer("topic", torch.tensor([it.topic for it in self.items], dtype=torch.int64), persistent=False)
        self.register_buffer("_start_h", torch.tensor([it.start_h for it in self.items], dtype=torch.float64),
                             persistent=False)

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

    @property
    def feed_half_life_h(self) -> Optional[Tensor]:
        """Hours for a reshare's visibility in followers' feeds to halve, or ``None`` (one step)."""
        return softplus(self.raw_feed_half_life) if self.raw_feed_half_life is not None else None

    @property
    def feed_tail(self) -> Optional[Tensor]:
        """Exponent (> 1) of the power-law visibility decay, or ``None`` (exponential)."""
        return 1.0 + softplus(self.raw_feed_tail) if self.raw_feed_tail is not None else None

    def item_half_life(self, rng: CounterRNG, dtype: torch.dtype) -> Optional[Tensor]:
        """``(B, 1, C)`` feed half-life of each item (``()`` without ``feed_item_spread``), or ``None``
        without ``feed_half_life_h``."""
        if self.raw_feed_half_life is None:
            return None
        half_life = self.feed_half_life_h.to(dtype)
        if self.raw_feed_item_spread is None:
            return half_life
        z = _standard_normal(rng, STREAM_CASCADE_FEED_ITEM, (self.num_items,), dtype)  # (B, C)
        return (half_life * torch.exp(softplus(self.raw_feed_item_spread) * z))[:, None, :]

    def visibility(self, age_h: Tensor, half_life: Optional[Tensor] = None) -> Tensor:
        """Weight in followers' feeds of a post ``age_h`` hours old (``inf``: never posted):
        :func:`~lpm.dynamics.feed_decay.feed_visibility` with this model's law. ``half_life``: per item
        (:meth:`item_half_life`, broadcasting against ``age_h``); default ``feed_half_life_h``. (The
        step ages the frontier with :meth:`_age_frontier`, which agrees with this.)"""
        half_life = self.feed_half_life_h if half_life is None else half_life
        return feed_visibility(age_h, half_life, self.feed_tail)

    def _age_frontier(self, frontier: Tensor, reshared: Tensor, dt: float, half_life: Tensor) -> Tensor:
        """The visibility of earlier reshares one step later
        (:func:`~lpm.dynamics.feed_decay.aged_visibility` with this model's law)."""
        return aged_visibility(frontier, reshared, dt, half_life, self.feed_tail)

    def attention_share(self, rng: CounterRNG, num_agents: int, dtype: torch.dtype) -> Tensor | float:
        """``(B, N, 1)`` share of its feed each agent sees per reading (a float 1.0 without ``attention``)."""
        if self.raw_attention is None:
            return 1.0
        if self.raw_attention_spread is None:
            return torch.sigmoid(self.raw_attention)
        z = _standard_normal(rng, STREAM_CASCADE_ATTENTION, (num_agents,), dtype)
        return torch.sigmoid(self.raw_attention + softplus(self.raw_attention_spread) * z)[..., None]

    def audience_reach(self, rng: CounterRNG, num_agents: int, dtype: torch.dtype) -> Optional[Tensor]:
        """``(B, C)`` expected exposures of an agent to an item source's out-of-graph audience
        (``A_bc / N``), or ``None``.

        The N agents stand for the audience: when it exceeds N, each agent carries ``A / N``
        (Poisson) exposures, so direct reshares have the right expectation while the sample stays N.
        """
        if self.raw_audience is None:
            return None
        log_audience = self.raw_audience.to(dtype)
        if self.raw_audience_spread is not None:
            z = _standard_normal(rng, STREAM_CASCADE_AUDIENCE, (self.num_items,), dtype)
            log_audience = log_audience + softplus(self.raw_audience_spread) * z
        return torch.exp(log_audience) / num_agents

    @property
    def resharer_half_life_h(self) -> Optional[Tensor]:
        """Hours after an item's post at which resharers' reach has halved, or ``None`` (no ageing)."""
        return None if self.raw_resharer_half_life is None else softplus(self.raw_resharer_half_life)

    def resharer_reach(self, rng: CounterRNG, num_agents: int, dtype: torch.dtype,
                       time_h: Optional[float] = None) -> Optional[Tensor]:
        """``(B, N, 1)`` (``(B, N, C)`` with an item spread or a half-life; a scalar without either or
        spreads) expected exposures of an agent to each resharer's out-of-graph audience (``A_jc / N``)
        at ``time_h`` (needed with ``resharer_half_life_h``), or ``None``."""
        if self.raw_resharer_audience is None:
            return None
        if self.raw_resharer_half_life is not None and time_h is None:
            raise ConfigError("Expected the time (time_h) for a resharer reach that ages (got None)")
        log_audience = self.raw_resharer_audience.to(dtype)
        if self.raw_resharer_audience_spread is not None:
            z = _standard_normal(rng, STREAM_CASCADE_RESHARER_AUDIENCE, (num_agents,), dtype)
            log_audience = (log_audience + softplus(self.raw_resharer_audience_spread) * z)[..., None]
        if self.raw_resharer_item_spread is not None:
            z_item = _standard_normal(rng, STREAM_CASCADE_RESHARER_ITEM, (self.num_items,), dtype)  # (B, C)
            log_audience = log_audience + (softplus(self.raw_resharer_item_spread) * z_item)[:, None, :]
        reach = torch.exp(log_audience) / num_agents
        if self.raw_resharer_half_life is None:
            return reach
        # from the start-time buffer and a host float: no device sync; items not yet posted have no resharers
        age = (time_h - self._start_h.to(dtype)).clamp_min(0.0)  # (C,)
        return reach / (1.0 + age / self.resharer_half_life_h.to(dtype))  # tau / (tau + age)

    def init_state(self, state: PopulationState) -> PopulationState:
        """``state`` with empty cascade state (following levels with ``first_level_audience_ratio``)."""
        if state.num_items == 0:
            return init_cascade_state(state, self.num_items, levels=self.raw_first_level_ratio is not None)
        return state

    def check(self, state: PopulationState) -> None:
        super().check(state)
        if self.raw_first_level_ratio is not None and not isinstance(state.cascade, LevelCascadeState):
            raise StateError(f"Expected a LevelCascadeState with first_level_audience_ratio (got "
                             f"{type(state.cascade).__name__}); use init_cascade_state(..., levels=True)")
        for name in ("archetype", "interest_similarity"):
            value = getattr(self, name)
            if value is not None and value.size(0) != state.num_agents:
                raise StateError(f"Expected '{name}' for {state.num_agents} agents (got {value.size(0)})")
        if int(self.topic.max()) >= state.opinion.size(-1):
            raise StateError(f"Expected item topics < {state.opinion.size(-1)} (got {int(self.topic.max())})")

    def reshare_logit(self, state: PopulationState) -> Tensor:
        """``(B, N, C)`` logit of the per-exposure reshare probability ``q``."""
        logits = self.raw_transmissibility.expand(state.batch_size, state.num_agents, self.num_items)
        if self.prior is not None:
            prior = self.prior() if isinstance(self.prior, nn.Module) else self.prior
            logits = logits + prior.to(logits.dtype)[self.archetype][None]
        if self.interest_similarity is not None:
            logits = logits + self.interest_weight * self.interest_similarity.to(logits.dtype)[None]
        if state.emotion.size(-1) >= 2:
            logits = logits + self.arousal_weight * state.emotion[..., 1:2]
        opinion_on_topic = state.opinion.index_select(2, self.topic)  # (B, N, C)
        return logits + self.alignment_weight * opinion_on_topic * self.stance.to(logits.dtype)

    def forward(self, state: PopulationState, graph: Graph, ctx: StepContext) -> Updates:
        """One step: the next cascade state, the log-probability of score-function draws, and the
        direct reshares through the sources' audience.

        ``ctx.effects`` (from :mod:`lpm.interventions`) offset reshare logits, scale item exposure,
        gate sources (suspension) and edges (blocking).
        """
        n, c = state.num_agents, self.num_items
        t, time_h, dt, rng, estimator, effects = ctx.t, ctx.time_h, ctx.dt, ctx.rng, ctx.estimator, ctx.effects
        state = self._seed(state, time_h, dt)
        levels = state.cascade if isinstance(state.cascade, LevelCascadeState) else None
        k = _exposure_count(graph, state.frontier, effects)  # (B, N, C) frontier followees
        reach = self.audience_reach(rng, n, k.dtype)
        from_audience = None
        if reach is not None:
            source_frontier = state.frontier.index_select(1, self._first_source).diagonal(dim1=1, dim2=2)  # (B, C)
            if effects.source_gate is not None:  # a suspended source reaches nobody
                source_frontier = source_frontier * effects.source_gate.index_select(1, self._first_source)
            broadcast = (reach * source_frontier)[:, None, :]  # (B, 1, C)
            if effects.exposure_scale is not None:
                broadcast = broadcast * effects.exposure_scale
            k = k + broadcast
            # share of the exposures that came through the audience; the small constant keeps the
            # ratio's gradient bounded where both are ~0 (no reshare can happen there anyway)
            from_audience = broadcast / (k + 1e-6)
        resharer_weight = from_resharers = None
        per_resharer = self.resharer_reach(rng, n, k.dtype, time_h)
        if per_resharer is not None:
            frontier = state.frontier
            if levels is not None and self.raw_first_level_ratio is not None:  # a part weighs the ratio
                frontier = frontier + torch.expm1(self.raw_first_level_ratio) * levels.first_level_frontier
            frontier = frontier if effects.source_gate is None else frontier * effects.source_gate[..., None]
            not_source = ~self.sources_mask(n, k.device)
            resharer_weight = per_resharer * frontier * not_source  # (B, N, C): the source's audience is above
            broadcast_r = resharer_weight.sum(1, keepdim=True)  # (B, 1, C)
            if effects.exposure_scale is not None:
                broadcast_r = broadcast_r * effects.exposure_scale
            k = k + broadcast_r
            from_resharers = broadcast_r / (k + 1e-6)
            if from_audience is not None:
                from_audience = broadcast / (k + 1e-6)
        to_first_level = from_first_level = None
        if levels is not None:
            to_first_level, from_first_level = self._level_shares(state, levels, graph, effects, per_resharer, k,
                                                                  from_audience)
        seen = self.attention_share(rng, n, k.dtype) * k  # expected posts of the item seen while online
        if self.reading_interval_h is not None:
            seen = seen * (dt / self.reading_interval_h)
        half_life = self.item_half_life(rng, k.dtype)
        if self.feed_item_pace and half_life is not None:  # items differ in when they are read, not how much
            seen = seen * item_pace(self.feed_half_life_h.to(k.dtype), half_life, dt, self.feed_tail)
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
        new, log_prob = estimator.sample(prob, sellke_uniform(state, rng, n, c))
        reshare_time, parent, attached = self._record(state, graph, new, rng, t, time_h, dt, from_audience,
                                                      from_resharers, resharer_weight, effects)
        reshared = state.reshared + new
        frontier = new
        if half_life is not None:
            frontier = new + self._age_frontier(state.frontier, state.reshared, dt, half_life)
        changes = dict(reshared=reshared, frontier=frontier, exposures=exposures,
                       hazard=state.hazard + step_hazard * not_yet, reshare_time=reshare_time, parent=parent)
        # an event, not state: expected reshares attached to the source
        direct = (new * from_audience).sum(1) if from_audience is not None else None
        second_level = None
        if levels is not None and to_first_level is not None and from_first_level is not None:
            if attached is None and exact_events(estimator):
                # no recorded parents: attach with their probability, so the law is the one with trees
                u = rng.uniform(t, STREAM_CASCADE_ATTACH, (n, c), torch.float64)
                attached = ((u < to_first_level.detach().double()) & (new.detach() > 0.5)).to(new.dtype)
            new_first = new * (attached if exact_events(estimator) else to_first_level)
            first_frontier = new_first
            if half_life is not None:
                first_frontier = new_first + self._age_frontier(levels.first_level_frontier,
                                                                levels.first_level_reshared, dt, half_life)
            changes.update(first_level_reshared=levels.first_level_reshared + new_first,
                           first_level_frontier=first_frontier)
            second_level = (new * from_first_level).sum(1)
        return Updates(state={"cascade": state.cascade.replace(**changes)}, log_prob=log_prob, direct_reshares=direct,
                       second_level_reshares=second_level)

    def _level_shares(self, state: PopulationState, levels: LevelCascadeState, graph: Graph, effects,
                      per_resharer: Optional[Tensor], k: Tensor, from_audience: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """``(B, N, C)`` shares of each agent's exposures ``k`` that come from an item's source (its
        out-of-graph audience and its followers in the graph) and from reshares attached to the source
        (through the graph and, with ``resharer_audience``, their own audiences): the probabilities that
        a reshare now sits at depth 1 and at depth 2 of the item's tree."""
        is_source = self.sources_mask(state.num_agents, k.device)
        from_source = _exposure_count(graph, state.frontier * is_source, effects)
        first = levels.first_level_frontier
        from_first = _exposure_count(graph, first, effects)
        if per_resharer is not None:
            gated = first if effects.source_gate is None else first * effects.source_gate[..., None]
            if self.raw_first_level_ratio is not None:
                gated = gated * self.raw_first_level_ratio.exp()
            broadcast = (per_resharer * gated).sum(1, keepdim=True)  # sources are never at depth 1
            if effects.exposure_scale is not None:
                broadcast = broadcast * effects.exposure_scale
            from_first = from_first + broadcast
        to_first = from_source / (k + 1e-6)
        if from_audience is not None:
            to_first = to_first + from_audience
        return to_first, from_first / (k + 1e-6)
