"""A hurricane landfall: collective emotion and posting volume, and official guidance messages.

100k users on a clustered scale-free follower graph. On day 2 at 08:00 a hurricane makes landfall
in a region holding 30% of users: for 12 hours they are driven toward negative valence and high
arousal, and everyone posts four times as much (disaster-time volume bursts, e.g. Sandy in the
Meng & Dong 2020 series). Emotions spread from seen posts with momentum and relax to a slightly
positive baseline. Arms, on the same seeds: no guidance; an empathetic or a rational message from
ten official accounts two hours after landfall; an empathetic warning six hours before landfall.
Outcomes: the share of clearly negative users (mean, peak, time of peak) and posting volume.

The numbers above are keys of :class:`Config` (``lpm run disaster --print-config`` lists them).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Optional

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


@dataclass(frozen=True)
class EmotionConfig:
    """:class:`lpm.dynamics.EmotionContagion` arguments; emotions relax to (``baseline_valence``, 0)."""

    coupling: float = 0.6
    decay: float = 0.12
    order: int = 2
    momentum: float = 0.3
    baseline_valence: float = 0.05


@dataclass(frozen=True)
class ActivityConfig:
    """:class:`lpm.dynamics.Hawkes` arguments (rates per hour)."""

    mu: float = 0.05
    alpha: float = 0.6
    beta: float = 1.0
    rhythm_amplitude: Optional[float] = 0.6


@dataclass(frozen=True)
class ModelConfig:
    emotion: EmotionConfig = field(default_factory=EmotionConfig)
    activity: ActivityConfig = field(default_factory=ActivityConfig)


@dataclass(frozen=True)
class LandfallConfig:
    """From ``at_h`` for ``hours``: users of the region (``region_share``) pushed by (``valence``,
    ``arousal``) per hour, and everyone's baseline posting rate times ``posting_factor``."""

    at_h: float = LANDFALL_H
    hours: float = HOURS
    region_share: float = REGION_SHARE
    valence: float = -0.8
    arousal: float = 0.9
    posting_factor: float = 4.0


@dataclass(frozen=True)
class Config:
    """The settings of the disaster scenario (keys of ``lpm run disaster --config / --set``)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    landfall: LandfallConfig = field(default_factory=LandfallConfig)


def build_graph(agents: int, seed: int, device: torch.device) -> Graph:
    return Graph.holme_kim(agents, 5, 0.3, seed=seed).to(device)


def build_population(graph: Graph, batch: int, seed: int) -> PopulationState:
    return PopulationState.sample(graph.num_nodes, seed=seed, batch=batch, topics=1).to(graph.device)


def in_region(agents: int, seed: int, share: float = REGION_SHARE) -> torch.Tensor:
    return torch.rand(agents, generator=torch.Generator().manual_seed(seed + 101)) < share


def build_model(graph: Graph, dt: float, seed: int, config: Config = Config()) -> Model:
    at, m = config.landfall, config.model
    landfall = Shock(at.at_h, at.hours, impulse=(at.valence, at.arousal),
                     targets=in_region(graph.num_nodes, seed, at.region_share))
    emotion = dataclasses.asdict(m.emotion)
    baseline = (emotion.pop("baseline_valence"), 0.0)
    return Model(
        emotion=EmotionContagion(**emotion, baseline=baseline, shocks=[landfall]),
        activity=Hawkes(**dataclasses.asdict(m.activity), bursts=[Burst(at.at_h, at.hours, at.posting_factor)]),
        dt=dt,
    )


def build_arms(graph: Graph, config: Config = Config()) -> dict:
    officials = torch.argsort(graph.out_degree(), descending=True)[:10].tolist()
    landfall_h = config.landfall.at_h  # guidance is timed from the landfall
    return {
        "none": [],
        "empathetic@+2h": [GuidanceMessage(officials, graph, at=landfall_h + 2.0, tone="empathetic")],
        "rational@+2h": [GuidanceMessage(officials, graph, at=landfall_h + 2.0, tone="rational")],
        "empathetic@-6h": [GuidanceMessage(officials, graph, at=landfall_h - 6.0, tone="empathetic")],
    }


def scenario(config: Config = Config()) -> Scenario:
    """The disaster scenario with ``config``'s settings."""
    return Scenario(
        name="disaster",
        description=__doc__.strip().splitlines()[0],
        build_graph=build_graph,
        build_population=build_population,
        build_model=functools.partial(build_model, config=config),
        arms=functools.partial(build_arms, config=config),
        agents=100_000,
        days=4.0,
        dt=1.0,
        seeds=4,
        config=config,
        configure=scenario,
    )


SCENARIO = scenario()
