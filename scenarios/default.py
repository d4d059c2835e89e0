"""A week on a clustered scale-free follower network with a breaking-news shock on day 3.

100k users on a Holme-Kim graph (m = 5, triad closure 0.3: scale-free and clustered, as follower
graphs are). Opinions start in two camps and follow biased assimilation (attraction within 0.4,
repulsion beyond 1.0), so over the week the camps harden (polarization ~0.62 -> ~0.8). Emotions
(valence, arousal) spread from seen posts with momentum. Posting follows a network Hawkes process
with a daily rhythm peaking at 20:00. On day 3 at 08:00 a breaking-news event hits 20% of users
for 6 hours: negative valence, high arousal, and a tripled baseline posting rate; the rest of the
network learns of it through their feeds.

With archetypes (``lpm run default --archetypes K``), the news also spreads as a post (:data:`NEWS`)
from the three most-followed accounts at the shock; K archetypes' decisions about it set how likely
their members reshare it on each exposure and how each exposure moves their emotions.

Every number above is a key of :class:`Config` (``lpm run default --print-config`` lists them;
``--set model.opinion.eps=0.3`` changes one).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Optional

import torch

from lpm.archetypes import ArchetypeSetup
from lpm.dynamics import BiasedAssimilation, Burst, Cascade, EmotionContagion, Hawkes, Item, Shock
from lpm.graph import Graph
from lpm.model import Model
from lpm.scenario import Scenario
from lpm.state import PopulationState

SHOCK_START_H = 2 * 24 + 8.0
SHOCK_HOURS = 6.0
AFFECTED_SHARE = 0.2
NEWS = ("Breaking news: a major explosion downtown this morning. Several people are injured, roads are closed "
        "and authorities ask everyone to avoid the area.")
#: What archetypes are asked about (``lpm run default --archetypes K``).
CONTEXTS = (NEWS,)


@dataclass(frozen=True)
class GraphConfig:
    """Holme-Kim follower graph: ``m`` follows per new user, triad-closure probability ``p_triad``."""

    m: int = 5
    p_triad: float = 0.3


@dataclass(frozen=True)
class OpinionConfig:
    """:class:`lpm.dynamics.BiasedAssimilation` arguments."""

    eps: float = 0.4
    rho: float = 1.0
    repulsion: float = 0.03
    rate: float = 0.15
    tau: float = 0.05


@dataclass(frozen=True)
class EmotionConfig:
    """:class:`lpm.dynamics.EmotionContagion` arguments (valence, arousal)."""

    coupling: float = 0.6
    decay: float = 0.15
    order: int = 2
    momentum: float = 0.3


@dataclass(frozen=True)
class ActivityConfig:
    """:class:`lpm.dynamics.Hawkes` arguments (rates per hour; ``peak_hour`` of the daily rhythm)."""

    mu: float = 0.05
    alpha: float = 0.6
    beta: float = 1.0
    rhythm_amplitude: Optional[float] = 0.6
    peak_hour: float = 20.0


@dataclass(frozen=True)
class ModelConfig:
    opinion: OpinionConfig = field(default_factory=OpinionConfig)
    emotion: EmotionConfig = field(default_factory=EmotionConfig)
    activity: ActivityConfig = field(default_factory=ActivityConfig)


@dataclass(frozen=True)
class ShockConfig:
    """The breaking news: from ``start_h`` for ``hours``, a share of users pushed by (``valence``,
    ``arousal``) per hour, and everyone's baseline posting rate times ``posting_factor``."""

    start_h: float = SHOCK_START_H
    hours: float = SHOCK_HOURS
    affected_share: float = AFFECTED_SHARE
    valence: float = -0.6
    arousal: float = 0.8
    posting_factor: float = 3.0


@dataclass(frozen=True)
class Config:
    """The settings of the default scenario (keys of ``lpm run default --config / --set``)."""

    graph: GraphConfig = field(default_factory=GraphConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    shock: ShockConfig = field(default_factory=ShockConfig)


def build_graph(agents: int, seed: int, device: torch.device, config: Config = Config()) -> Graph:
    return Graph.holme_kim(agents, config.graph.m, config.graph.p_triad, seed=seed).to(device)


def affected(agents: int, seed: int, share: float = AFFECTED_SHARE) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 17)
    return torch.rand(agents, generator=gen) < share


def build_population(graph: Graph, batch: int, seed: int) -> PopulationState:
    state = PopulationState.sample(graph.num_nodes, seed=seed, batch=batch, topics=1, emotions=2, opinion="bimodal")
    return state.to(graph.device)


def build_model(graph: Graph, dt: float, seed: int, archetypes: ArchetypeSetup | None = None,
                config: Config = Config()) -> Model:
    s, m = config.shock, config.model
    shock = Shock(s.start_h, s.hours, impulse=(s.valence, s.arousal),
                  targets=affected(graph.num_nodes, seed, s.affected_share))
    news = drive = None
    if archetypes is not None:
        outlets = tuple(torch.argsort(graph.out_degree(), descending=True)[:3].tolist())
        item = Item(source=outlets, start_h=s.start_h, text=NEWS, stance=0.0, topic=0)
        drive = archetypes.drive([item])
        # transmissibility 0.5 is logit 0: the archetype's share probability is the per-exposure one
        news = Cascade([item], transmissibility=0.5, prior=drive, archetype=drive.archetype, attention=0.25,
                       feed_half_life_h=3.0, record_trees=False)
    return Model(
        opinion=BiasedAssimilation(**dataclasses.asdict(m.opinion)),
        emotion=EmotionContagion(**dataclasses.asdict(m.emotion), shocks=[shock]),
        activity=Hawkes(**dataclasses.asdict(m.activity), bursts=[Burst(s.start_h, s.hours, s.posting_factor)]),
        cascade=news,
        archetype_drive=drive,
        dt=dt,
    )


def scenario(config: Config = Config()) -> Scenario:
    """The default scenario with ``config``'s settings."""
    return Scenario(
        name="default",
        description=__doc__.strip().splitlines()[0],
        build_graph=functools.partial(build_graph, config=config),
        build_population=build_population,
        build_model=functools.partial(build_model, config=config),
        agents=100_000,
        days=7.0,
        dt=1.0 / 3.0,
        contexts=CONTEXTS,
        config=config,
        configure=scenario,
    )


SCENARIO = scenario()
