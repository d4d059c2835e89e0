"""A Model composes opinion, emotion, activity and cascade dynamics into one pure step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from torch import Tensor, nn

from lpm.dynamics.activity import Hawkes
from lpm.dynamics.emotion import EmotionContagion
from lpm.dynamics.recommender import Feed
from lpm.errors import ConfigError
from lpm.interventions import Effects, Intervention, InterventionPlan, Shape
from lpm.graph import Graph
from lpm.relax import Estimator, StraightThrough
from lpm.rng import STREAM_ACTIVITY, STREAM_OPINION, CounterRNG
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
    """

    posts: Optional[Tensor] = None
    log_prob: Optional[Tensor] = None
    direct_reshares: Optional[Tensor] = None


class Model(nn.Module):
    """Opinion, emotion and activity dynamics stepped together.

    Within a step, activity goes first: who posts is drawn from the Hawkes intensity; then, when
    ``gate_by_posts`` is set, opinions and emotions move only toward the followees that posted (what
    an agent saw), else toward all followees.

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
    ) -> None:
        super().__init__()
        if isinstance(dt, bool) or not (isinstance(dt, (int, float)) and 0 < dt < float("inf")):
            raise ConfigError(f"Expected a positive, finite step length dt in hours (got {dt!r})")
        if opinion is None and emotion is None and activity is None and cascade is None:
            raise ConfigError("Expected at least one of opinion, emotion, activity, cascade (got none)")
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

    def with_interventions(self, interventions: InterventionPlan | Sequence[Intervention]) -> "Model":
        """A model sharing these dynamics modules (and their parameters) with other interventions."""
        return Model(opinion=self.opinion, emotion=self.emotion, activity=self.activity, cascade=self.cascade,
                     interventions=interventions, feed=self.feed, dt=self.dt, gate_by_posts=self.gate_by_posts,
                     archetype_drive=self.archetype_drive)

    def effects(self, state: PopulationState, graph: Graph, time_h: float) -> Effects:
        """The interventions' combined effects at ``time_h`` (empty without interventions)."""
        if self.interventions is None or len(self.interventions) == 0:
            return Effects()
        shape = Shape(batch=state.batch_size, agents=state.num_agents, items=state.num_items,
                      edges=graph.num_edges, emotions=state.emotion.size(-1), topics=state.opinion.size(-1),
                      like=state.opinion)
        return self.interventions.effects(time_h, shape)

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
        time_h = t * self.dt
        posts = log_prob = direct_reshares = None
        changes: dict[str, Tensor] = {}
        effects = self.effects(state, graph, time_h)
        if self.activity is not None:
            uniform = rng.uniform(t, STREAM_ACTIVITY, (state.num_agents,), state.opinion.dtype)
            posts, changes["activity"], log_prob = self.activity(state, graph, time_h, self.dt, estimator, uniform)
        seen = posts if (posts is not None and self.gate_by_posts) else None
        if seen is not None and effects.source_gate is not None:  # suspended accounts are not seen
            seen = seen * effects.source_gate
        ranker = out_graph = None
        if self.feed is None and effects.personalization is not None:
            raise ConfigError("Expected a model with a Feed for a RecommenderChange intervention (got none)")
        if self.feed is not None:
            seen = self.feed.source_weight(seen, state.activity)
            ranker = self.feed.ranker_kernel(effects.personalization)
            out_graph = self.feed.candidate_graph(state.num_agents, t, state.device)
        if self.opinion is not None:
            uniform = None
            if getattr(self.opinion, "draws_uniform", False):
                uniform = rng.uniform(t, STREAM_OPINION, (state.num_agents,), state.opinion.dtype)
            opinion = self.opinion(state, graph, seen, uniform, ranker)
            if out_graph is not None:
                opinion = self.feed.mix(state.opinion, opinion, self.opinion(state, out_graph, seen, uniform, ranker))
            if effects.opinion_rate is not None:
                opinion = opinion + effects.opinion_pull - effects.opinion_rate * opinion
            changes["opinion"] = opinion
        if self.emotion is not None:
            emotion, velocity = self.emotion(state, graph, time_h, self.dt, seen, effects.emotion_drive)
            if out_graph is not None:
                emotion_out, velocity_out = self.emotion(state, out_graph, time_h, self.dt, seen, effects.emotion_drive)
                emotion = self.feed.mix(state.emotion, emotion, emotion_out)
                velocity = self.feed.mix(state.emotion_velocity, velocity, velocity_out)
            changes["emotion"], changes["emotion_velocity"] = emotion, velocity
        if self.cascade is not None:
            cascade_changes, cascade_log_prob = self.cascade(state, graph, t, time_h, self.dt, rng, estimator, effects)
            direct_reshares = cascade_changes.pop("direct_reshares", None)
            changes.update(cascade_changes)
            if cascade_log_prob is not None:
                log_prob = cascade_log_prob if log_prob is None else log_prob + cascade_log_prob
            if self.archetype_drive is not None:  # pushes from this step's new exposures, by archetype
                changes["opinion"], changes["emotion"] = self.archetype_drive.apply(
                    changes.get("opinion", state.opinion), changes.get("emotion", state.emotion),
                    changes["exposures"] - state.exposures)
        return state.replace(**changes), StepEvents(posts=posts, log_prob=log_prob, direct_reshares=direct_reshares)
