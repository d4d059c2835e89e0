"""A hurricane landfall: collective emotion and posting volume, and official guidance messages.

100k users on a clustered scale-free follower graph. On day 2 at 08:00 a hurricane makes landfall
in a region holding 30% of users: for 12 hours they are driven toward negative valence and high
arousal, and everyone posts four times as much (disaster-time volume bursts, e.g. Sandy in the
Meng & Dong 2020 series). Emotions spread from seen posts with momentum and relax to a slightly
positive baseline. Arms, on the same seeds: no guidance; an empathetic or a rational message from
ten official accounts two hours after landfall; an empathetic warning six hours before landfall.
Outcomes: the share of clearly negative users (mean, peak, time of peak) and posting volume.
"""

from __future__ import annotations

import torch

from lpm.dynamics import Burst, EmotionContagion, Hawkes, Shock
from lpm.graph import Graph
from lpm.interventions import GuidanceMessage
from lpm.model import Model
from lpm.scenario import Scenario
from lpm.state import PopulationState

LANDFALL_H = 24.0 + 8.0
HOURS = 12.0
REGION_SHARE = 0.3


def build_graph(agents: int, seed: int, device: torch.device) -> Graph:
    return Graph.holme_kim(agents, 5, 0.3, seed=seed).to(device)


def build_population(graph: Graph, batch: int, seed: int) -> PopulationState:
    return PopulationState.sample(graph.num_nodes, seed=seed, batch=batch, topics=1).to(graph.device)


def in_region(agents: int, seed: int) -> torch.Tensor:
    return torch.rand(agents, generator=torch.Generator().manual_seed(seed + 101)) < REGION_SHARE


def build_model(graph: Graph, dt: float, seed: int) -> Model:
    landfall = Shock(LANDFALL_H, HOURS, impulse=(-0.8, 0.9), targets=in_region(graph.num_nodes, seed))
    return Model(
        emotion=EmotionContagion(coupling=0.6, decay=0.12, order=2, momentum=0.3, baseline=(0.05, 0.0), shocks=[landfall]),
        activity=Hawkes(mu=0.05, alpha=0.6, beta=1.0, rhythm_amplitude=0.6, bursts=[Burst(LANDFALL_H, HOURS, 4.0)]),
        dt=dt,
    )


def build_arms(graph: Graph) -> dict:
    officials = torch.argsort(graph.out_degree(), descending=True)[:10].tolist()
    return {
        "none": [],
        "empathetic@+2h": [GuidanceMessage(officials, graph, at=LANDFALL_H + 2.0, tone="empathetic")],
        "rational@+2h": [GuidanceMessage(officials, graph, at=LANDFALL_H + 2.0, tone="rational")],
        "empathetic@-6h": [GuidanceMessage(officials, graph, at=LANDFALL_H - 6.0, tone="empathetic")],
    }


SCENARIO = Scenario(
    name="disaster",
    description=__doc__.strip().splitlines()[0],
    build_graph=build_graph,
    build_population=build_population,
    build_model=build_model,
    arms=build_arms,
    agents=100_000,
    days=4.0,
    dt=1.0,
    seeds=4,
)
