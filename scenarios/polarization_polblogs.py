"""Chronological vs interest-ranked feeds on the real political-blogs network (Adamic & Glance 2005).

The 1,490 blogs of the 2004 US election and their 19,090 hyperlinks (90.6% within a leaning), read
from ``<data_dir>/polblogs/polblogs.gml``: the data folder is the ``data_dir`` setting (``lpm run
polarization_polblogs --data-dir DIR``, or ``--set data_dir=DIR``), else the ``LPM_DATA`` environment
variable, else ``../shared/data`` beside the repository. A link from blog A to blog B means A reads
B, so B's posts reach A. Opinions start by leaning (liberal -0.4, conservative +0.4, spread 0.3);
the dynamics, arms and outcomes are those of the ``polarization`` scenario.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.graph.io import read_gml
from lpm.scenario import Scenario
from lpm.scenarios.polarization import ModelConfig, build_arms, build_model, population_for, record_for
from lpm.state import PopulationState

#: The environment variable naming the data folder when ``data_dir`` is not set.
DATA_ENV = "LPM_DATA"


@dataclass(frozen=True)
class Config:
    """The settings of polarization_polblogs: the data folder (``None``: ``$LPM_DATA``, else
    ``../shared/data`` beside the repository) and the polarization scenario's dynamics."""

    data_dir: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)


def data_dir(configured: Optional[str] = None) -> Path:
    """The data folder: ``configured``, else ``$LPM_DATA``, else ``../shared/data`` beside the repository."""
    if configured is not None:
        return Path(configured).expanduser()
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get(DATA_ENV, default))


def _read(configured: Optional[str] = None) -> tuple[Graph, torch.Tensor]:
    folder = data_dir(configured) / "polblogs"
    gml, nodes = folder / "polblogs.gml", folder / "polblogs_nodes.csv"
    if not gml.is_file() or not nodes.is_file():
        raise ConfigError(f"Expected the polblogs data at {folder} (polblogs.gml, polblogs_nodes.csv; "
                          f"from --data-dir, else ${DATA_ENV}) (got no such files)")
    # "A links to B" means A reads B: information flows target -> source.
    graph, labels = read_gml(gml, flow="target_to_source")
    table = pd.read_csv(nodes)
    leaning = dict(zip(table["label"].astype(str), table["value_0lib_1cons"].astype(int)))
    missing = [str(label) for label in labels if str(label) not in leaning]
    if missing:
        raise ConfigError(f"Expected a leaning for every blog in polblogs_nodes.csv (got none for {missing[:3]})")
    groups = torch.tensor(np.array([leaning[str(label)] for label in labels]), dtype=torch.int64)
    return graph, groups


def build_graph(agents: int, seed: int, device: torch.device, config: Config = Config()) -> Graph:
    return _read(config.data_dir)[0].to(device)


def build_population(graph: Graph, batch: int, seed: int, config: Config = Config()) -> PopulationState:
    return population_for(_read(config.data_dir)[1], batch, seed).to(graph.device)


def build_record(graph: Graph, seed: int, config: Config = Config()) -> dict:
    return record_for(graph, _read(config.data_dir)[1])


def scenario(config: Config = Config()) -> Scenario:
    """The polarization_polblogs scenario with ``config``'s settings (the network fixes the agents at 1,490)."""
    return Scenario(
        name="polarization_polblogs",
        description=__doc__.strip().splitlines()[0],
        build_graph=functools.partial(build_graph, config=config),
        build_population=functools.partial(build_population, config=config),
        build_model=functools.partial(build_model, model=config.model),
        build_record=functools.partial(build_record, config=config),
        arms=functools.partial(build_arms, model=config.model),
        agents=1490,
        days=2.0,
        dt=0.5,
        seeds=4,
        config=config,
        configure=scenario,
    )


SCENARIO = scenario()
