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
"""

from __future__ import annotations

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


def build_graph(agents: int, seed: int, device: torch.device) -> Graph:
    return Graph.holme_kim(agents, 5, 0.3, seed=seed).to(device)


def affected(agents: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 17)
    return torch.rand(agents, generator=gen) < AFFECTED_SHARE


def build_population(graph: Graph, batch: int, seed: int) -> PopulationState:
    state = PopulationState.sample(graph.num_nodes, seed=seed, batch=batch, topics=1, emotions=2, opinion="bimodal")
    return state.to(graph.device)


def build_model(graph: Graph, dt: float, seed: int, archetypes: ArchetypeSetup | None = None) -> Model:
    shock = Shock(SHOCK_START_H, SHOCK_HOURS, impulse=(-0.6, 0.8), targets=affected(graph.num_nodes, seed))
    news = drive = None
    if archetypes is not None:
        outlets = tuple(torch.argsort(graph.out_degree(), descending=True)[:3].tolist())
        item = Item(source=outlets, start_h=SHOCK_START_H, text=NEWS, stance=0.0, topic=0)
        drive = archetypes.drive([item])
        # transmissibility 0.5 is logit 0: the archetype's share probability is the per-exposure one
        news = Cascade([item], transmissibility=0.5, prior=drive, archetype=drive.archetype, attention=0.25,
                       feed_half_life_h=3.0, record_trees=False)
    return Model(
        opinion=BiasedAssimilation(eps=0.4, rho=1.0, repulsion=0.03, rate=0.15, tau=0.05),
        emotion=EmotionContagion(coupling=0.6, decay=0.15, order=2, momentum=0.3, shocks=[shock]),
        activity=Hawkes(mu=0.05, alpha=0.6, beta=1.0, rhythm_amplitude=0.6, peak_hour=20.0,
                        bursts=[Burst(SHOCK_START_H, SHOCK_HOURS, 3.0)]),
        cascade=news,
        archetype_drive=drive,
        dt=dt,
    )


SCENARIO = Scenario(
    name="default",
    description=__doc__.strip().splitlines()[0],
    build_graph=build_graph,
    build_population=build_population,
    build_model=build_model,
    agents=100_000,
    days=7.0,
    dt=1.0 / 3.0,
    contexts=CONTEXTS,
)
