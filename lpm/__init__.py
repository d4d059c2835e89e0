"""lpm: a Large Population Model of social media.

Millions of users' opinions, emotions and posting activity as tensors, updated by message passing
over a sparse follower graph, differentiable end to end.
"""

from lpm import dynamics, engine, generators, interventions, io, kernels, metrics, observables, relax
from lpm import archetypes  # after dynamics and interventions, which it builds on; no optional imports
from lpm import data, targets
from lpm.counterfactual import CounterfactualResult, counterfactual
from lpm import levers
from lpm.optimize import OptimizedPlan, optimize  # after counterfactual, which it validates with
from lpm.errors import (
    BackendError,
    CacheMissError,
    ConfigError,
    DataFormatError,
    DependencyError,
    GraphFormatError,
    LPMError,
    NumericalError,
    ResourceError,
    StateError,
)
from lpm.graph import Graph
from lpm.model import Model, StepEvents
from lpm.simulate import Trajectory, simulate
from lpm.state import PopulationState, Traits

__version__ = "0.1.0"

__all__ = [
    "Graph",
    "PopulationState",
    "Traits",
    "Model",
    "StepEvents",
    "simulate",
    "Trajectory",
    "counterfactual",
    "CounterfactualResult",
    "optimize",
    "OptimizedPlan",
    "levers",
    "interventions",
    "metrics",
    "dynamics",
    "engine",
    "kernels",
    "observables",
    "relax",
    "archetypes",
    "data",
    "targets",
    "LPMError",
    "GraphFormatError",
    "DataFormatError",
    "ConfigError",
    "StateError",
    "BackendError",
    "CacheMissError",
    "NumericalError",
    "ResourceError",
    "DependencyError",
]
