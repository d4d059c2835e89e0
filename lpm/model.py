"""A Model composes dynamics components (:class:`lpm.engine.Dynamics`) into one pure step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional, Sequence

from torch import Tensor, nn

from lpm.dynamics.activity import Hawkes
from lpm.dynamics.emotion import EmotionContagion
from lpm.dynamics.recommender import Feed
from lpm.engine import Dynamics, StepContext
from lpm.errors import ConfigError
from lpm.interventions import Effects, Intervention, InterventionPlan, Shape
from lpm.graph import Graph
from lpm.relax import Estimator, StraightThrough
from lpm.rng import CounterRNG
from lpm.state import PopulationState

__all__ = ["Model", "StepEvents"]


@dataclass(frozen=True, eq=False)
class StepEvents:
    """What happened in one step.

    Shapes:
        posts: ``(B, N)`` posts per agent (0/1 when exact, in [0, 1] when relaxed), or ``None``
            without an activity model.
        log_prob: ``(B,)`` log-probability of the step's sampled events under a score-function
            estimator, else ``None``.
        direct_reshares: ``(B, C)`` expected reshares in this step that came straight from the items'
            sources through their out-of-graph audience (:class:`~lpm.dynamics.Cascade` ``audience``), else ``None``.
        second_level_reshares: ``(B, C)`` expected reshares in this step attached to the direct ones
            (depth 2 of the trees), when the cascade state follows levels
            (:class:`~lpm.dynamics.cascade_state.LevelCascadeState`), else ``None``.
    """

    posts: Optional[Tensor] = None
    log_prob: Optional[Tensor] = None
    direct_reshares: Optional[Tensor] = None
    second_level_reshares: Optional[Tensor] = None


class Model(nn.Module):
    """Dynamics components stepped together, in order: activity, opinion, emotion, cascade, the
    archetype drive, then any ``extra`` components.

    Every component reads the state at the start of the step and a :class:`~lpm.engine.StepContext`,
    and returns its updates; the step applies them all at once. Activity goes first: who posts is
    drawn from the Hawkes intensity; then, when ``gate_by_posts`` is set, opinions and emotions move
    only toward the followees that posted (what an agent saw), else toward all followees.

    Args:
        opinion: an opinion model from :mod:`lpm.dynamics.opinion`, or ``None`` (opinions frozen).
        emotion: :class:`~lpm.dynamics.EmotionContagion` or ``None``.
        activity: :class:`~lpm.dynamics.Hawkes` or ``None``.
        cascade: :class:`~lpm.dynamics.Cascade`, :class:`~lpm.dynamics.LinearThreshold` or ``None``.
        interventions: an :class:`~lpm.interventions.InterventionPlan` or a list of interventions.
        feed: a :class:`~lpm.dynamics.recommender.Feed` deciding what agents see (default: all
            followees' posts, unranked).
        dt: step length in hours (default 10 minutes, 144 steps a day).
        gate_by_posts: with an activity model, social influence flows only through posts.
        archetype_drive: an :class:`lpm.archetypes.ArchetypeDrive` (needs a cascade): agents newly
            exposed to an item in a step move their opinion and emotion as their archetype decided.
        extra: more components by name, stepped after the others in this order (each registered as
            a submodule under its name when it is one): how a new dynamics module joins a model.

    Raises:
        ConfigError: no component, a bad ``dt``, a ranker or drive without what it needs, or an
            ``extra`` name taken by the model.
    """

    def __init__(
        self,
        opinion: Optional[nn.Module] = None,
        emotion: Optional[EmotionContagion] = None,
        activity: Optional[Hawkes] = None,
        cascade: Optional[nn.Module] = None,
        interventions: Optional[InterventionPlan | Sequence[Intervention]] = None,
        feed: Optional[Feed] = None,
        *,
        dt: float = 1.0 / 6.0,
        gate_by_posts: bool = True,
        archetype_drive: Optional[nn.Module] = None,
        extra: Optional[Mapping[str, Dynamics]] = None,
    ) -> None:
        super().__init__()
        if isinstance(dt, bool) or not (isinstance(dt, (int, float)) and 0 < dt < float("inf")):
            raise ConfigError(f"Expected a positive, finite step length dt in hours (got {dt!r})")
        extra = dict(extra or {})
        if opinion is None and emotion is None and activity is None and cascade is None and not extra:
            raise ConfigError("Expected at least one of opinion, emotion, activity, cascade or an extra component "
                              "(got none)")
        self.opinion = opinion
        self.emotion = emotion
        self.activity = activity
        self.cascade = cascade
        if interventions is not None and not isinstance(interventions, InterventionPlan):
            interventions = InterventionPlan(list(interventions))
        self.interventions = interventions
        if feed is not None and feed.ranker == "hot" and activity is None:
            raise ConfigError("Expected an activity model with the 'hot' ranker (it ranks by recent activity)")
        self.feed = feed
        self.dt = float(dt)
        self.gate_by_posts = gate_by_posts
        if archetype_drive is not None and cascade is None:
            raise ConfigError("Expected a cascade with an archetype_drive (it acts on item exposures) (got none)")
        self.archetype_drive = archetype_drive
        for name, component in extra.items():
            if not isinstance(name, str) or not name.isidentifier() or hasattr(self, name):
                raise ConfigError(f"Expected extra component names that are free identifiers (got {name!r})")
            if not isinstance(component, Dynamics):
                raise ConfigError(f"Expected extra component {name!r} to follow lpm.engine.Dynamics "
                                  f"(got {type(component).__name__})")
            if isinstance(component, nn.Module):
                self.add_module(name, component)
            else:
                setattr(self, name, component)
        self._extra = tuple(extra)

    @property
    def extra(self) -> dict[str, Dynamics]:
        """The extra components by name, in step order."""
        return {name: getattr(self, name) for name in self._extra}

    @property
    def components(self) -> list[tuple[str, Dynamics]]:
        """The components in step order, by name (read from the named slots at each call)."""
        named = [("activity", self.activity), ("opinion", self.opinion), ("emotion", self.emotion),
                 ("cascade", self.cascade)]
        if self.archetype_drive is not None:
            named.append(("archetype_drive", self.archetype_drive.step_component()))
        return [(name, c) for name, c in named if c is not None] + list(self.extra.items())

    def with_interventions(self, interventions: InterventionPlan | Sequence[Intervention]) -> "Model":
        """A model sharing these dynamics modules (and their parameters) with other interventions."""
        return Model(opinion=self.opinion, emotion=self.emotion, activity=self.activity, cascade=self.cascade,
                     interventions=interventions, feed=self.feed, dt=self.dt, gate_by_posts=self.gate_by_posts,
                     archetype_drive=self.archetype_drive, extra=self.extra)

    def effects(self, state: PopulationState, graph: Graph, time_h: float) -> Effects:
        """The interventions' combined effects at ``time_h`` (empty without interventions)."""
        if self.interventions is None or len(self.interventions) == 0:
            return Effects()
        shape = Shape(batch=state.batch_size, agents=state.num_agents, items=state.num_items,
                      edges=graph.num_edges, emotions=state.emotion.size(-1), topics=state.opinion.size(-1),
                      like=state.opinion)
        return self.interventions.effects(time_h, shape)

    # ------------------------------------------------------------------ boundary (called by simulate)
    def init_state(self, state: PopulationState) -> PopulationState:
        """``state`` with every component's own state initialised where missing (e.g. the cascade's)."""
        for _, component in self.components:
            state = component.init_state(state)
        return state

    def check(self, state: PopulationState) -> None:
        """Every component's check of ``state``.

        Raises:
            StateError: a component's expectation of the state (dims, its own state) is not met.
        """
        for _, component in self.components:
            component.check(state)

    def idle_after(self, horizon_h: float) -> list[str]:
        """Messages for interventions and component events scheduled at or after ``horizon_h`` (no-ops)."""
        messages = []
        if self.interventions is not None:
            for k, intervention in enumerate(self.interventions.interventions):
                at = float(intervention.at.detach())
                if at >= horizon_h:
                    messages.append(f"Expected intervention {k} ({type(intervention).__name__}) to start before the "
                                    f"end of the simulation at {horizon_h:g} h (got at={at:g} h): it has no effect")
        for _, component in self.components:
            messages.extend(component.idle_after(horizon_h))
        return messages

    # ------------------------------------------------------------------ the step
    def context(self, state: PopulationState, graph: Graph, t: int, rng: CounterRNG,
                estimator: Estimator = StraightThrough()) -> StepContext:
        """The context of step ``t`` before any component ran: time, draws, effects, the feed.

        Raises:
            ConfigError: a recommender-change intervention without a feed.
        """
        time_h = t * self.dt
        effects = self.effects(state, graph, time_h)
        ranker = out_graph = None
        if self.feed is None and effects.personalization is not None:
            raise ConfigError("Expected a model with a Feed for a RecommenderChange intervention (got none)")
        if self.feed is not None:
            ranker = self.feed.ranker_kernel(effects.personalization)
            out_graph = self.feed.candidate_graph(state.num_agents, t, state.device)
        return StepContext(t=t, time_h=time_h, dt=self.dt, rng=rng, estimator=estimator, effects=effects,
                           seen=self._seen(None, state, effects), ranker=ranker, feed=self.feed, out_graph=out_graph)

    def _seen(self, posts: Optional[Tensor], state: PopulationState, effects: Effects) -> Optional[Tensor]:
        """``(B, N)`` weight per author of what agents saw, or ``None`` (every followee counts)."""
        seen = posts if (posts is not None and self.gate_by_posts) else None
        if seen is not None and effects.source_gate is not None:  # suspended accounts are not seen
            seen = seen * effects.source_gate
        if self.feed is not None:
            seen = self.feed.source_weight(seen, state.activity)
        return seen

    def step(
        self,
        state: PopulationState,
        graph: Graph,
        t: int,
        rng: CounterRNG,
        estimator: Estimator = StraightThrough(),
    ) -> tuple[PopulationState, StepEvents]:
        """Advance every scenario by one step; pure (mutates nothing) and free of host syncs.

        Args:
            state: the current state, ``B`` scenarios of ``N`` agents.
            graph: the follower graph on the state's device.
            t: index of this step, which runs from ``t * dt`` to ``(t + 1) * dt`` hours.
            rng: per-scenario counter RNG; every draw of the step is a function of (seed, t).
            estimator: how discrete events are sampled and differentiated.

        Returns:
            ``(next_state, events)``.
        """
        ctx = self.context(state, graph, t, rng, estimator)
        changes: dict[str, object] = {}
        posts = log_prob = direct_reshares = second_level = None
        for _, component in self.components:
            out = component(state, graph, ctx)
            changes.update(out.state)
            if out.log_prob is not None:
                log_prob = out.log_prob if log_prob is None else log_prob + out.log_prob
            if out.direct_reshares is not None:
                direct_reshares = out.direct_reshares
            if out.second_level_reshares is not None:
                second_level = out.second_level_reshares
            new = {"updates": MappingProxyType(dict(changes))}
            if out.posts is not None:  # what later components see
                posts = out.posts
                new.update(posts=posts, seen=self._seen(posts, state, ctx.effects))
            ctx = dataclasses.replace(ctx, **new)
        return state.replace(**changes), StepEvents(posts=posts, log_prob=log_prob, direct_reshares=direct_reshares,
                                               second_level_reshares=second_level)
