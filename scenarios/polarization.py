"""Does an interest-ranked feed polarize a homophilous network? Chronological vs personalized feeds.

100k users in two communities (stochastic block model, 80% of follows within the community; in
the political-blogs network 90.6% of links stay within a leaning, Adamic & Glance 2005). Opinions
start apart by community (+-0.4, spread 0.3); users are stubborn (Friedkin-Johnsen anchoring 0.15)
and move toward what they see. Half of each feed is from followees, half from random accounts.
Arms, on the same seeds: a chronological feed, and an interest-ranked (personalized) feed that
ranks posts close to the reader's opinion up (Perra & Rocha 2019). Outcomes over two days:
polarization (opinion variance), the distance between the communities' mean opinions, and the
echo-chamber index (correlation of a user's opinion with its followees' mean, Cinelli et al. 2021).

The dynamics' parameters are keys of :class:`Config` (``lpm run polarization --print-config``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Optional

import torch

from lpm import metrics
from lpm.dynamics import Feed, FriedkinJohnsen, Hawkes
from lpm.graph import Graph
from lpm.interventions import RecommenderChange
from lpm.model import Model
from lpm.scenario import Scenario
from lpm.state import PopulationState, Traits

COMMUNITIES = 2
HOMOPHILY = 0.8
MEAN_DEGREE = 10.0


@dataclass(frozen=True)
class OpinionConfig:
    """:class:`lpm.dynamics.FriedkinJohnsen` argument: the pull toward each user's initial opinion."""

    anchoring: float = 0.5


@dataclass(frozen=True)
class ActivityConfig:
    """:class:`lpm.dynamics.Hawkes` arguments (rates per hour; no daily rhythm by default)."""

    mu: float = 0.3
    alpha: float = 0.3
    rhythm_amplitude: Optional[float] = None


@dataclass(frozen=True)
class FeedConfig:
    """:class:`lpm.dynamics.Feed`: the share of the feed from followees, and the ranking before any
    intervention; ``personalization``: how strongly the interest arm's ranker favours close opinions."""

    in_network: float = 0.5
    ranker: str = "chronological"
    personalization: float = 10.0


@dataclass(frozen=True)
class ModelConfig:
    opinion: OpinionConfig = field(default_factory=OpinionConfig)
    activity: ActivityConfig = field(default_factory=ActivityConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)


@dataclass(frozen=True)
class Config:
    """The settings of the polarization scenario (keys of ``lpm run polarization --config / --set``)."""

    model: ModelConfig = field(default_factory=ModelConfig)


def community(agents: int) -> torch.Tensor:
    """``(N,)`` community of each user: ``sbm_homophily`` assigns contiguous, equal blocks."""
    return torch.arange(agents) * COMMUNITIES // agents


def build_graph(agents: int, seed: int, device: torch.device) -> Graph:
    graph, _ = Graph.sbm_homophily(agents, COMMUNITIES, MEAN_DEGREE, HOMOPHILY, seed=seed)
    return graph.to(device)


def population_for(groups: torch.Tensor, batch: int, seed: int) -> PopulationState:
    """Opinions +-0.4 by group (0 -> -0.4, 1 -> +0.4) with spread 0.3; stubbornness 0.3."""
    n = groups.numel()
    side = groups.double() * 2 - 1
    noise = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 7))
    opinion = (0.4 * side + 0.3 * noise).clamp(-1, 1).float().view(1, n, 1).expand(batch, n, 1).contiguous()
    traits = Traits.uniform(n, batch=batch, stubbornness=0.3)
    return PopulationState.create(opinion, torch.zeros(batch, n, 2), traits=traits)


def build_population(graph: Graph, batch: int, seed: int) -> PopulationState:
    return population_for(community(graph.num_nodes), batch, seed).to(graph.device)


def build_model(graph: Graph, dt: float, seed: int, model: ModelConfig = ModelConfig()) -> Model:
    a = model.activity
    return Model(opinion=FriedkinJohnsen(model.opinion.anchoring),
                 activity=Hawkes(mu=a.mu, alpha=a.alpha, rhythm_amplitude=a.rhythm_amplitude),
                 feed=Feed(model.feed.in_network, model.feed.ranker), dt=dt)


def build_record(graph: Graph, seed: int) -> dict:
    return record_for(graph, community(graph.num_nodes))


def record_for(graph: Graph, groups: torch.Tensor) -> dict:
    """Polarization, distance between the groups' means, and the echo-chamber index per step."""
    groups = groups.to(graph.device)
    return {
        "polarization": lambda s, e: metrics.polarization_variance(s.opinion),
        "between_communities": lambda s, e: metrics.between_group_distance(s.opinion, groups),
        "echo_chamber": lambda s, e: metrics.echo_chamber_index(s.opinion, graph),
    }


def build_arms(graph: Graph, model: ModelConfig = ModelConfig()) -> dict:
    return {"chronological": [],
            "interest": [RecommenderChange(at=-1.0, personalization=model.feed.personalization)]}


def scenario(config: Config = Config()) -> Scenario:
    """The polarization scenario with ``config``'s settings."""
    return Scenario(
        name="polarization",
        description=__doc__.strip().splitlines()[0],
        build_graph=build_graph,
        build_population=build_population,
        build_model=functools.partial(build_model, model=config.model),
        build_record=build_record,
        arms=functools.partial(build_arms, model=config.model),
        agents=100_000,
        days=2.0,
        dt=0.5,
        seeds=2,
        config=config,
        configure=scenario,
    )


SCENARIO = scenario()
