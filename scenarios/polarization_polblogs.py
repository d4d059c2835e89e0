"""Chronological vs interest-ranked feeds on the real political-blogs network (Adamic & Glance 2005).

The 1,490 blogs of the 2004 US election and their 19,090 hyperlinks (90.6% within a leaning), read
from ``polblogs.gml`` in the shared data folder (``$LPM_DATA``, default ``../shared/data`` beside
the repository). A link from blog A to blog B means A reads B, so B's posts reach A. Opinions start
by leaning (liberal -0.4, conservative +0.4, spread 0.3); the dynamics, arms and outcomes are
those of the ``polarization`` scenario.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.graph.io import read_gml
from lpm.scenario import Scenario
from lpm.scenarios.polarization import build_arms, build_model, population_for, record_for
from lpm.state import PopulationState


def data_dir() -> Path:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("LPM_DATA", default))


def _read() -> tuple[Graph, torch.Tensor]:
    folder = data_dir() / "polblogs"
    gml, nodes = folder / "polblogs.gml", folder / "polblogs_nodes.csv"
    if not gml.is_file() or not nodes.is_file():
        raise ConfigError(f"Expected the polblogs data at {folder} (polblogs.gml, polblogs_nodes.csv); set LPM_DATA")
    # "A links to B" means A reads B: information flows target -> source.
    graph, labels = read_gml(gml, flow="target_to_source")
    table = pd.read_csv(nodes)
    leaning = dict(zip(table["label"].astype(str), table["value_0lib_1cons"].astype(int)))
    missing = [str(label) for label in labels if str(label) not in leaning]
    if missing:
        raise ConfigError(f"Expected a leaning for every blog in polblogs_nodes.csv (got none for {missing[:3]})")
    groups = torch.tensor(np.array([leaning[str(label)] for label in labels]), dtype=torch.int64)
    return graph, groups


def build_graph(agents: int, seed: int, device: torch.device) -> Graph:
    return _read()[0].to(device)


def build_population(graph: Graph, batch: int, seed: int) -> PopulationState:
    return population_for(_read()[1], batch, seed).to(graph.device)


def build_record(graph: Graph, seed: int) -> dict:
    return record_for(graph, _read()[1])


SCENARIO = Scenario(
    name="polarization_polblogs",
    description=__doc__.strip().splitlines()[0],
    build_graph=build_graph,
    build_population=build_population,
    build_model=build_model,
    build_record=build_record,
    arms=build_arms,
    agents=1490,
    days=2.0,
    dt=0.5,
    seeds=4,
)
