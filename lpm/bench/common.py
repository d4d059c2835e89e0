"""The benchmark's constants and what every runner shares: seeded graphs, opinions and states,
NDlib's import and global random state, and the record of an lpm run."""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from lpm.graph import Graph
from lpm.state import PopulationState, Traits

MODELS = ("algorithmic_bias", "hegselmann_krause", "independent_cascade")

BA_M = 5  # edges per new node of the Barabasi-Albert graph
AB_EPSILON = 0.32  # NDlib units (opinions in [0, 1])
AB_GAMMA = 0.0  # no algorithmic bias: classic Deffuant
AB_MU = 0.5  # NDlib's convergence parameter, fixed in its code
HK_EPSILON = 0.32  # NDlib units
HK_RATE = 0.999  # lpm's rate must lie in (0, 1); rate -> 1 is classic HK
TAU = 1e-3  # lpm's smooth-indicator temperature, -> 0 is the hard indicator
RULE_TAU = 1e-12  # the hard-indicator limit, for checking NDlib's HK rule against lpm's kernel
LPM_MIN_STEPS = 20  # lpm steps are cheap: time at least this many for the median
IC_P = 0.1  # Independent Cascade transmission probability (NDlib's per-edge threshold)
IC_SEED_FRACTION = 0.01  # share of the nodes seeding each cascade
IC_RUNS = 100  # seed sets (runs) per size
IC_MAX_STEPS = 4096  # lpm's batched run doubles its steps until every frontier is empty, up to this

AB_DEFINITION = (
    "NDlib: N asynchronous pairwise encounters (random initiator, random neighbour, both move to "
    "their mean if |dx| < eps); lpm: 1 synchronous step, every agent meets 1 random followee and "
    "moves halfway toward it if within eps (one way)"
)
IC_DEFINITION = (
    "NDlib: 1 pass over all nodes, each node infected in the previous iteration tries each susceptible "
    "neighbour once (uniform <= p) and is removed; lpm: 1 synchronous step, each non-resharer reshares "
    "w.p. 1-(1-p)^k, k = its frontier followees (one frontier expansion in both)"
)
HK_DEFINITION = (
    "NDlib: N random draws, each an O(N) node lookup plus its confidence-set mean (neighbours only), "
    "but only the last drawn agent's new opinion is stored; lpm: 1 synchronous step, every agent "
    "moves to the mean of itself and its followees within eps"
)


# ---------------------------------------------------------------------------------------- set-up
def _import_ndlib():
    try:
        import ndlib.models.ModelConfig as model_config
        from ndlib.models.opinions import AlgorithmicBiasModel, HKModel
    except ImportError as exc:
        raise ImportError(
            f"Expected ndlib (with six, scikit-learn, tqdm) to be installed for `lpm bench ndlib` "
            f"(got {type(exc).__name__}: {exc}); install it with: pip install 'lpm[bench]'"
        ) from exc
    return model_config, AlgorithmicBiasModel, HKModel


def _ks(a: np.ndarray, b: np.ndarray, method: str = "asymp") -> tuple[float, float]:
    from scipy.stats import ks_2samp

    result = ks_2samp(a, b, method=method)
    return float(result.statistic), float(result.pvalue)


def _build_graphs(num_nodes: int, seed: int):
    """The same BA graph for both: lpm's CSR graph and a networkx graph with the same edges.

    Returns ``(graph, nx_graph, lpm_graph_s, ndlib_graph_s, source)``; the NDlib time is that of
    building the networkx graph from the edge list (what NDlib needs as input).
    """
    import networkx as nx

    try:
        from lpm.graph.generators import barabasi_albert
    except ImportError:
        barabasi_albert = None
    if barabasi_albert is not None:
        start = time.perf_counter()
        graph = barabasi_albert(num_nodes, BA_M, seed=seed)
        lpm_graph_s = time.perf_counter() - start
        source = "lpm.generators.barabasi_albert"
        start = time.perf_counter()
        edges = graph.edge_index.t().numpy()
        edges = edges[edges[:, 0] < edges[:, 1]]  # mutual follows: one undirected edge per pair
        nx_graph = nx.Graph()
        nx_graph.add_nodes_from(range(num_nodes))
        nx_graph.add_edges_from(edges.tolist())
        ndlib_graph_s = time.perf_counter() - start
    else:
        start = time.perf_counter()
        nx_graph = nx.barabasi_albert_graph(num_nodes, BA_M, seed=seed)
        ndlib_graph_s = time.perf_counter() - start
        source = "networkx.barabasi_albert_graph"
        start = time.perf_counter()
        pairs = torch.tensor(list(nx_graph.edges()), dtype=torch.int64).t()
        graph = Graph.from_edge_index(torch.cat([pairs, pairs.flip(0)], dim=1), num_nodes)
        lpm_graph_s = time.perf_counter() - start
    return graph, nx_graph, lpm_graph_s, ndlib_graph_s, source


def _initial_opinions(num_nodes: int, seed: int) -> np.ndarray:
    """Uniform opinions in [0, 1] (NDlib's scale and default distribution), float64."""
    return np.random.default_rng([seed, num_nodes, 1]).uniform(0.0, 1.0, num_nodes)


def _lpm_state(x01: np.ndarray) -> PopulationState:
    n = x01.size
    opinion = torch.from_numpy(2.0 * x01 - 1.0).to(torch.float32).view(1, n, 1)
    return PopulationState.create(opinion, torch.zeros(1, n, 0), traits=Traits.uniform(n))


def _lpm_rng(seed: int):
    """The step's source of randomness: lpm's counter RNG (a torch.Generator before it existed)."""
    try:
        from lpm.rng import CounterRNG
    except ImportError:
        return torch.Generator().manual_seed(seed)
    return CounterRNG.from_seed(seed, 1)


def _to_unit(opinion: torch.Tensor) -> np.ndarray:
    return ((opinion[0, :, 0].double() + 1.0) / 2.0).numpy()


def _ndlib_opinions(model, num_nodes: int) -> np.ndarray:
    status = model.status
    return np.fromiter((status[i] for i in range(num_nodes)), dtype=np.float64, count=num_nodes)


def _set_ndlib_opinions(model, x01: np.ndarray) -> None:
    """Overwrite the opinions NDlib drew in ``set_initial_status`` with ours (same node order)."""
    model.status = {i: float(v) for i, v in enumerate(x01)}
    model.initial_status = dict(model.status)


class _GlobalRandomState:
    """NDlib draws from the global ``random`` and ``numpy.random``: seed them, restore on exit."""

    def __init__(self) -> None:
        self.saved = (random.getstate(), np.random.get_state())

    def seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)

    def restore(self) -> None:
        random.setstate(self.saved[0])
        np.random.set_state(self.saved[1])


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


@dataclass
class _LpmRun:
    setup_s: float
    step_times: list[float]  # wall clock
    step_cpu_times: list[float]  # process CPU time (sums over torch threads)
    snapshots: dict[int, np.ndarray]

