"""A false rumour seeded at influential accounts, and what platforms can do about it.

100k users on a clustered scale-free follower graph (Holme-Kim, m = 5). A false claim is posted at
time 0 by the three most-followed accounts. Users are online a quarter of the time in each
30-minute step; a reshare stays in followers' feeds with a half-life of 3 hours; each time an
online user sees it, it convinces with probability ~3%, more for users whose opinion is aligned
with the claim. Arms, each compared with doing nothing on the same seeds (common random
numbers):

* fact-check label on the claim at 1 h, 6 h or 24 h;
* rebuttal posts by five official accounts: early and frequent (from 1 h, every 2 h, 6 posts)
  vs late (from 12 h, every 6 h, 2 posts);
* suspension vs edge blocking of the ten most-followed spreaders other than the sources, at 2 h;
* prebunking 10% or 30% of users before the claim appears;
* downranking the claim in feeds from 2 h.
"""

from __future__ import annotations

import torch

from lpm.dynamics import Cascade, Item
from lpm.graph import Graph
from lpm.interventions import Downranking, EdgeBlocking, FactCheckLabel, Prebunking, Rebuttal, Suspension
from lpm.model import Model
from lpm.scenario import Scenario
from lpm.state import PopulationState

CLAIM = "A claim that vaccine X alters human DNA"


def accounts_by_followers(graph: Graph) -> list[int]:
    return torch.argsort(graph.out_degree(), descending=True).tolist()


def build_graph(agents: int, seed: int, device: torch.device) -> Graph:
    return Graph.holme_kim(agents, 5, 0.3, seed=seed).to(device)


def build_population(graph: Graph, batch: int, seed: int) -> PopulationState:
    return PopulationState.sample(graph.num_nodes, seed=seed, batch=batch, topics=1, opinion="bimodal").to(graph.device)


def build_model(graph: Graph, dt: float, seed: int) -> Model:
    sources = tuple(accounts_by_followers(graph)[:3])
    item = Item(source=sources, text=CLAIM, stance=1.0, topic=0)
    cascade = Cascade([item], transmissibility=0.03, alignment_weight=0.8, attention=0.25, feed_half_life_h=3.0)
    return Model(cascade=cascade, dt=dt)


def build_arms(graph: Graph) -> dict:
    ranked = accounts_by_followers(graph)
    officials, spreaders = ranked[13:18], ranked[3:13]
    n = graph.num_nodes
    return {
        "none": [],
        "label@1h": [FactCheckLabel(0, at=1.0)],
        "label@6h": [FactCheckLabel(0, at=6.0)],
        "label@24h": [FactCheckLabel(0, at=24.0)],
        "rebuttal_early": [Rebuttal(0, officials, n, graph, at=1.0, every_h=2.0, count=6)],
        "rebuttal_late": [Rebuttal(0, officials, n, graph, at=12.0, every_h=6.0, count=2)],
        "suspend_top10": [Suspension(spreaders, n, at=2.0)],
        "block_top10": [EdgeBlocking(spreaders, graph, at=2.0)],
        "prebunk10": [Prebunking([0], n, at=-1.0, share=0.1)],
        "prebunk30": [Prebunking([0], n, at=-1.0, share=0.3)],
        "downrank": [Downranking(0, at=2.0)],
    }


SCENARIO = Scenario(
    name="misinformation",
    description=__doc__.strip().splitlines()[0],
    build_graph=build_graph,
    build_population=build_population,
    build_model=build_model,
    arms=build_arms,
    agents=100_000,
    days=2.0,
    dt=0.5,
    seeds=6,
)
