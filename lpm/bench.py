"""Benchmarks behind ``lpm bench``. Section 1 of BENCHMARKS.md: lpm against NDlib, on the CPU.

:func:`bench_ndlib` runs NDlib's Independent Cascade and opinion models and their lpm counterparts
side by side, on the same Barabasi-Albert graph (the same edges: lpm's generator builds it, NDlib
gets it as a networkx graph) from the same seeded initial state (opinions; seed sets), and reports
seconds per iteration, their ratio and how well the two agree. Graph construction and model setup
are timed apart from stepping. NDlib's Hegselmann-Krause runs in a child process so that an
iteration longer than the time cap can be abandoned; everything else runs in this process, one thing
at a time.

What one iteration is (NDlib 6.0.1; checked against its source):

* **Algorithmic Bias, gamma = 0** (asynchronous Deffuant). NDlib: ``N`` pairwise encounters; each
  draws an initiator uniformly (with replacement) and one of its neighbours uniformly; if their
  opinions (in [0, 1]) differ by less than ``epsilon`` both take their mean (the convergence
  parameter is fixed at 1/2 in this NDlib). Every encounter sees the previous ones. lpm
  (:class:`~lpm.dynamics.Deffuant`): one synchronous step; every agent meets one random followee
  and moves half-way toward it when within ``eps`` (one way: only the follower moves). On the
  mutual-follow graph an NDlib iteration moves ~2N encounter ends and an lpm step N, so the
  distance between the final distributions is also reported after 2k lpm steps.
* **Hegselmann-Krause**. NDlib: ``N`` draws of an agent, each computing the mean opinion of its
  neighbours (itself excluded) within ``epsilon`` from the pre-iteration opinions. Every draw
  rebuilds ``list(graph.nodes)``, so an iteration costs O(N^2); and only the last drawn agent's new
  opinion is stored (the assignment sits after the loop), so an NDlib iteration moves at most one
  agent. lpm (:class:`~lpm.dynamics.BoundedConfidence`, rate 0.999, tau 1e-3): one synchronous
  step; every agent moves to the mean of itself and its followees within ``eps`` (classic HK).
  Agreement is therefore reported twice: the KS distance between final distributions (large:
  different processes) and, for the agents NDlib moved, the difference between NDlib's new opinion
  and the same confidence-set mean computed with lpm's aggregation kernel.

* **Independent Cascade** (p = 0.1, 1% of the nodes as seeds). NDlib (``IndependentCascadesModel``
  on the undirected graph, every edge's ``threshold`` set to p): an iteration visits every node;
  each node infected in the previous iteration (the frontier, seeds first) tries each still
  susceptible neighbour once, infecting it when a uniform draw is ``<= threshold``, and is then
  removed. lpm (:meth:`Cascade.independent_cascade <lpm.dynamics.Cascade.independent_cascade>`,
  one item, everyone online, no reshare trees): one synchronous step, every agent that has not
  reshared reshares with probability ``1 - (1 - p)^k``, ``k`` its followees in the frontier (the
  same law on the mutual-follow graph). All seeds of a run form one cascade: they are written into
  the initial cascade state (reshared and in the frontier), and the item's own start lies past the
  run. The final size is everyone ever infected (NDlib: infected + removed; lpm: reshared), seeds
  included; both run until the frontier is empty. 100 seed sets, the same in both; lpm runs them as
  one batch of 100 scenarios. The two samples of final sizes are compared with a two-sample KS test.

NDlib opinions live in [0, 1] and lpm's in [-1, 1]: ``x_lpm = 2 x_ndlib - 1``, so lpm's radius is
``2 epsilon``. Statistics are computed on the [0, 1] scale.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from lpm import kernels
from lpm.dynamics import BoundedConfidence, Cascade, Deffuant, Item, init_cascade_state
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.model import Model
from lpm.relax import Hard
from lpm.state import PopulationState, Traits

__all__ = ["bench_ndlib", "format_table", "add_arguments", "run", "main", "MODELS"]

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
        from lpm.generators import barabasi_albert
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


# ---------------------------------------------------------------------------------------- lpm
@dataclass
class _LpmRun:
    setup_s: float
    step_times: list[float]  # wall clock
    step_cpu_times: list[float]  # process CPU time (sums over torch threads)
    snapshots: dict[int, np.ndarray]


def _run_lpm(opinion_module: torch.nn.Module, graph: Graph, x01: np.ndarray, steps: int,
             snapshot_at: Sequence[int], seed: int) -> _LpmRun:
    """Time ``steps`` steps of lpm one by one (no autograd), keeping opinions after ``snapshot_at``."""
    start = time.perf_counter()
    model = Model(opinion=opinion_module, gate_by_posts=False)
    state = _lpm_state(x01)
    rng = _lpm_rng(seed)
    setup_s = time.perf_counter() - start
    times, cpu_times, snapshots = [], [], {}
    with torch.no_grad():
        for t in range(1, steps + 1):
            start, start_cpu = time.perf_counter(), time.process_time()
            state, _ = model.step(state, graph, t, rng)
            cpu_times.append(time.process_time() - start_cpu)
            times.append(time.perf_counter() - start)
            if t in snapshot_at:
                snapshots[t] = _to_unit(state.opinion)
    return _LpmRun(setup_s, times, cpu_times, snapshots)


# ---------------------------------------------------------------------------------------- NDlib
def _run_ndlib_ab(nx_graph, x01: np.ndarray, iterations: int, budget_s: float, seed: int) -> dict[str, Any]:
    """NDlib Algorithmic Bias in this process; stops early once ``budget_s`` would be exceeded."""
    model_config, AlgorithmicBiasModel, _ = _import_ndlib()
    rng_state = _GlobalRandomState()
    try:
        start = time.perf_counter()
        model = AlgorithmicBiasModel(nx_graph, seed=seed)
        config = model_config.Configuration()
        config.add_model_parameter("epsilon", AB_EPSILON)
        config.add_model_parameter("gamma", AB_GAMMA)
        model.set_initial_status(config)
        _set_ndlib_opinions(model, x01)
        model.iteration(node_status=False)  # NDlib's iteration 0 only reports the initial state
        setup_s = time.perf_counter() - start
        rng_state.seed(seed)
        times: list[float] = []
        cpu_times: list[float] = []
        for _ in range(iterations):
            start, start_cpu = time.perf_counter(), time.process_time()
            model.iteration(node_status=False)
            cpu_times.append(time.process_time() - start_cpu)
            times.append(time.perf_counter() - start)
            if sum(times) + times[-1] > budget_s:
                break
        return {"setup_s": setup_s, "times": times, "cpu_times": cpu_times,
                "final": _ndlib_opinions(model, x01.size)}
    finally:
        rng_state.restore()


def _hk_worker(conn, nx_graph, x01: np.ndarray, iterations: int, cap_s: float, seed: int) -> None:
    """Child process: NDlib HK, one message per finished iteration (its time and the opinions)."""
    try:
        model_config, _, HKModel = _import_ndlib()
        start = time.perf_counter()
        model = HKModel(nx_graph)  # reseeds numpy from the OS: seed only after construction
        config = model_config.Configuration()
        config.add_model_parameter("epsilon", HK_EPSILON)
        model.set_initial_status(config)
        _set_ndlib_opinions(model, x01)
        model.iteration(node_status=False)  # iteration 0 only reports the initial state
        conn.send(("setup", time.perf_counter() - start))
        random.seed(seed)
        np.random.seed(seed % 2**32)
        spent = 0.0
        for _ in range(iterations):
            start, start_cpu = time.perf_counter(), time.process_time()
            model.iteration(node_status=False)
            cpu = time.process_time() - start_cpu
            elapsed = time.perf_counter() - start
            spent += elapsed
            conn.send(("iteration", elapsed, cpu, _ndlib_opinions(model, x01.size)))
            if spent + elapsed > cap_s:  # the next one would (probably) not fit
                break
        conn.send(("done",))
    except BaseException as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _run_ndlib_hk(nx_graph, x01: np.ndarray, iterations: int, cap_s: float, seed: int,
                  setup_timeout_s: float = 300.0) -> dict[str, Any]:
    """NDlib HK in a child process, abandoned (killed) once its stepping time passes ``cap_s``."""
    _import_ndlib()  # fail here, with the install hint, rather than in the child
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_hk_worker, args=(sender, nx_graph, x01, iterations, cap_s, seed), daemon=True)
    proc.start()
    sender.close()
    setup_s = None
    times: list[float] = []
    cpu_times: list[float] = []
    opinions: list[np.ndarray] = []
    finished = False
    deadline = time.monotonic() + setup_timeout_s
    try:
        while not finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not receiver.poll(remaining):
                break
            try:
                message = receiver.recv()
            except EOFError:
                break
            kind = message[0]
            if kind == "setup":
                setup_s = message[1]
                # A little slack for the last message to arrive, never more than 1 s.
                deadline = time.monotonic() + cap_s + min(1.0, 0.05 * cap_s)
            elif kind == "iteration":
                times.append(message[1])
                cpu_times.append(message[2])
                opinions.append(message[3])
            elif kind == "done":
                finished = True
            elif kind == "error":
                raise RuntimeError(f"NDlib's HKModel failed in the benchmark's child process: {message[1]}")
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        receiver.close()
    if setup_s is None:
        raise RuntimeError(f"Expected NDlib's HKModel to be set up within {setup_timeout_s:.0f} s (it was not)")
    final = opinions[-1] if opinions else None
    return {"setup_s": setup_s, "times": times, "cpu_times": cpu_times, "opinions": opinions, "final": final,
            "capped": not times}


def _hk_rule_check(graph: Graph, x01: np.ndarray, trajectory: Sequence[np.ndarray], tau: float) -> tuple[float, int]:
    """Max |NDlib's new opinion - confidence-set mean from lpm's kernel| over the agents NDlib moved.

    For every NDlib iteration (``trajectory[k]`` the opinions after iteration ``k + 1``, ``x01``
    before the first), the agents whose opinion changed are compared with NDlib's rule, the mean of
    the neighbours within eps (the agent itself excluded), computed from the opinions before that
    iteration with :func:`lpm.kernels.neighbor_pull` and the smooth indicator of lpm's HK at
    temperature ``tau`` (on lpm's [-1, 1] scale): ``x + pull / W``.

    Returns:
        ``(max_abs_diff, agents_checked)``; ``(nan, 0)`` if NDlib moved nobody.
    """
    pair = kernels.SmoothBoundedConfidence(eps=2.0 * HK_EPSILON, tau=tau)
    worst, checked = float("nan"), 0
    before = x01
    for after in trajectory:
        moved = np.flatnonzero(after != before)
        if moved.size:
            x = torch.from_numpy(2.0 * before - 1.0).view(1, -1, 1)
            with torch.no_grad():
                pull, weight = kernels.neighbor_pull(graph, x, pair)
            mean = (x + pull / weight.clamp_min(1e-300))[0, :, 0].numpy()
            diff = float(np.max(np.abs((mean[moved] + 1.0) / 2.0 - after[moved])))
            worst = diff if checked == 0 else max(worst, diff)
            checked += int(moved.size)
        before = after
    return worst, checked


# ---------------------------------------------------------------------------------------- cascade
def _ic_seed_sets(num_nodes: int, runs: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """``runs`` seed sets of ``1%`` of the nodes (at least one) and one lpm RNG seed per run."""
    rng = np.random.default_rng([seed, num_nodes, 2])
    k = max(1, int(num_nodes * IC_SEED_FRACTION))
    seed_sets = [np.sort(rng.choice(num_nodes, size=k, replace=False)) for _ in range(runs)]
    lpm_seeds = [int(s) for s in rng.integers(0, 2**62, size=runs)]
    return seed_sets, lpm_seeds


def _run_ndlib_ic(nx_graph, seed_sets: Sequence[np.ndarray], iterations: int, budget_s: float,
                  seed: int) -> dict[str, Any]:
    """NDlib Independent Cascade, one run per seed set until nobody is infected.

    The model is configured once (every edge's threshold = p; NDlib keeps edge thresholds only if
    there is one per edge of the networkx graph, each undirected edge once) and ``reset`` to each
    seed set. The first run always finishes; later ones start only while the time spent so far
    plus the mean run time fits in ``budget_s``. Run ``r`` seeds NumPy's global RNG (NDlib's
    source) with ``(seed, r)``.

    Returns:
        ``times`` / ``cpu_times``: the first ``iterations`` iterations of every run (the timed
        sample); ``all_times``: every iteration; ``run_times``: each run's stepping time;
        ``run_iterations``; ``sizes``: final sizes (infected + removed, seeds included).
    """
    import ndlib.models.ModelConfig as model_config
    from ndlib.models.epidemics import IndependentCascadesModel

    num_nodes = nx_graph.number_of_nodes()
    rng_state = _GlobalRandomState()
    try:
        start = time.perf_counter()
        model = IndependentCascadesModel(nx_graph)  # reseeds numpy from the OS: seed per run below
        config = model_config.Configuration()
        for edge in nx_graph.edges():
            config.add_edge_configuration("threshold", edge, IC_P)
        config.add_model_initial_configuration("Infected", seed_sets[0].tolist())
        model.set_initial_status(config)
        setup_s = time.perf_counter() - start
        stored = len(model.params["edges"].get("threshold", {}))
        if stored != nx_graph.number_of_edges():
            raise RuntimeError(f"Expected NDlib to keep a threshold for each of {nx_graph.number_of_edges()} "
                               f"edges (got {stored})")
        times: list[float] = []
        cpu_times: list[float] = []
        all_times: list[float] = []
        run_times: list[float] = []
        run_iterations: list[int] = []
        sizes: list[int] = []
        for r, seeds in enumerate(seed_sets):
            if run_times and sum(run_times) + statistics.fmean(run_times) > budget_s:
                break
            model.reset(infected_nodes=seeds.tolist())
            rng_state.seed(int(np.random.SeedSequence([seed, r]).generate_state(1)[0]))
            model.iteration(node_status=False)  # iteration 0 only reports the initial state
            spent, count = 0.0, 0
            while True:
                start, start_cpu = time.perf_counter(), time.process_time()
                result = model.iteration(node_status=False)
                cpu = time.process_time() - start_cpu
                elapsed = time.perf_counter() - start
                spent += elapsed
                count += 1
                all_times.append(elapsed)
                if count <= iterations:
                    times.append(elapsed)
                    cpu_times.append(cpu)
                if result["node_count"][1] == 0:
                    break
            run_times.append(spent)
            run_iterations.append(count)
            sizes.append(num_nodes - result["node_count"][0])
        return {"setup_s": setup_s, "times": times, "cpu_times": cpu_times, "all_times": all_times,
                "run_times": run_times, "run_iterations": run_iterations, "sizes": np.asarray(sizes)}
    finally:
        rng_state.restore()


def _ic_state(num_nodes: int, seed_sets: Sequence[np.ndarray], seed: int) -> PopulationState:
    """``B = len(seed_sets)`` scenarios, scenario ``b``'s seeds resharing (and in the frontier) at 0."""
    state = init_cascade_state(PopulationState.sample(num_nodes, seed=seed, batch=len(seed_sets)), 1)
    reshared = torch.zeros_like(state.reshared)
    for b, seeds in enumerate(seed_sets):
        reshared[b, torch.from_numpy(seeds).long(), 0] = 1.0
    reshare_time = torch.where(reshared > 0, torch.zeros_like(reshared), state.reshare_time)
    return state.replace(reshared=reshared, frontier=reshared.clone(), reshare_time=reshare_time)


def _ic_model(seed_sets: Sequence[np.ndarray]) -> Model:
    # The item's own posting (at its start_h) lies past any run: the seeds come from the state.
    item = Item(source=int(seed_sets[0][0]), start_h=1e9)
    return Model(cascade=Cascade.independent_cascade([item], IC_P, record_trees=False), dt=1.0)


def _run_lpm_ic_single(graph: Graph, seeds: np.ndarray, lpm_seed: int, steps: int, seed: int) -> _LpmRun:
    """Time ``steps`` steps of one cascade (``B = 1``), one by one, without autograd."""
    from lpm.rng import CounterRNG

    start = time.perf_counter()
    state = _ic_state(graph.num_nodes, [seeds], seed)
    model = _ic_model([seeds])
    rng = CounterRNG.from_seed([lpm_seed], 1)
    estimator = Hard()
    setup_s = time.perf_counter() - start
    times, cpu_times = [], []
    with torch.no_grad():
        for t in range(steps):
            start, start_cpu = time.perf_counter(), time.process_time()
            state, _ = model.step(state, graph, t, rng, estimator)
            cpu_times.append(time.process_time() - start_cpu)
            times.append(time.perf_counter() - start)
    return _LpmRun(setup_s, times, cpu_times, {})


def _run_lpm_ic_batch(graph: Graph, seed_sets: Sequence[np.ndarray], lpm_seeds: Sequence[int], steps: int,
                      seed: int, say=lambda *a, **k: None) -> dict[str, Any]:
    """All seed sets as one batch through :func:`lpm.simulate` (hard samples, no autograd).

    ``steps`` doubles (the run is repeated) until every scenario's frontier is empty at the end.
    """
    from lpm import observables
    from lpm.simulate import simulate

    model = _ic_model(seed_sets)
    state = _ic_state(graph.num_nodes, seed_sets, seed)
    while True:
        start, start_cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            trajectory = simulate(model, state, graph, steps=steps, seed=list(lpm_seeds),
                                  record={"reshares": observables.reshares}, estimator=Hard())
        elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        active = int((trajectory.final.frontier.sum(dim=(1, 2)) > 0).sum())
        if active == 0 or steps >= IC_MAX_STEPS:
            break
        say(f"    {active} lpm cascade(s) still active after {steps} steps: rerunning with {2 * steps}")
        steps *= 2
    sizes = trajectory.final.reshared.sum(dim=(1, 2)).double().numpy()
    counts = trajectory["reshares"][:, :, 0]  # (S + 1, B)
    lengths = (counts != counts[-1:]).sum(dim=0)  # steps until the last new reshare
    return {"sizes": sizes, "steps": steps, "run_s": elapsed, "s_per_step": elapsed / steps,
            "cpu_s_per_step": cpu / steps,
            "active_at_end": active, "lengths": lengths.numpy()}


# ---------------------------------------------------------------------------------------- rows
_DETAIL_DEFAULTS: dict[str, Any] = {
    "ks": None,
    "ks_pvalue": None,
    "ks_lpm_2k_steps": None,
    "ks_ndlib_vs_initial": None,
    "ks_lpm_vs_initial": None,
    "ndlib_agents_moved": None,
    "hk_rule_max_abs_diff": None,
    "hk_rule_agents": None,
    "hk_rule_max_abs_diff_at_tau": None,
    # Independent Cascade
    "lpm_batched_s_per_iter": None,
    "mean_size_lpm": None,
    "mean_size_ndlib": None,
    "runs": None,
    "ic": None,
}


def _row(model_name: str, n: int, graph: Graph, ndlib: dict[str, Any], lpm_run: _LpmRun,
         common: dict[str, Any]) -> dict[str, Any]:
    ndlib_s = _median(ndlib["times"]) if ndlib["times"] else float(common["cap_s"])
    lpm_s = _median(lpm_run.step_times)
    capped = bool(ndlib.get("capped", False))
    ndlib_cpu = _median(ndlib["cpu_times"]) if ndlib["cpu_times"] else None
    lpm_cpu = _median(lpm_run.step_cpu_times)
    return {
        "model": model_name,
        "n": n,
        "ndlib_s_per_iter": ndlib_s,
        "lpm_s_per_iter": lpm_s,
        "ratio": ndlib_s / lpm_s,
        "ndlib_capped": capped,
        "ratio_is_lower_bound": capped,
        "ndlib_cpu_s_per_iter": ndlib_cpu,
        "lpm_cpu_s_per_iter": lpm_cpu,
        "ratio_cpu": ndlib_cpu / lpm_cpu if ndlib_cpu is not None and lpm_cpu > 0 else None,
        "num_edges": graph.num_edges,
        "ndlib_iterations": len(ndlib["times"]),
        "ndlib_s_per_iter_min": min(ndlib["times"]) if ndlib["times"] else None,
        "lpm_steps": len(lpm_run.step_times),
        "lpm_s_per_iter_min": min(lpm_run.step_times),
        "ndlib_setup_s": ndlib["setup_s"],
        "lpm_setup_s": lpm_run.setup_s,
        **_DETAIL_DEFAULTS,
        **common,
    }


def bench_ndlib(
    sizes: Sequence[int] = (10_000, 100_000),
    *,
    seed: int = 0,
    iterations: int = 10,
    hk_time_cap_s: float = 120.0,
    ab_time_budget_s: float = 120.0,
    ic_time_budget_s: float = 300.0,
    ic_runs: int = IC_RUNS,
    models: Sequence[str] = MODELS,
    threads: Optional[int] = 1,
    out_json: Optional[str | os.PathLike] = None,
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """lpm against NDlib: Algorithmic Bias (gamma = 0), Hegselmann-Krause and Independent Cascade.

    Args:
        sizes: numbers of agents ``n`` of the BA graphs (m = 5).
        seed: seeds the graph, the initial opinions and both models' random draws.
        iterations: NDlib iterations to run and time per model and size (fewer if a cap or budget
            stops them); the agreement statistics compare both after that many iterations.
        hk_time_cap_s: cap on NDlib HK's stepping time. If not even one iteration finishes within
            it, NDlib's time is reported as the cap, ``ndlib_capped`` is true and the ratio is a
            lower bound.
        ab_time_budget_s: NDlib Algorithmic Bias stops starting iterations past this (at least one).
        ic_time_budget_s: NDlib Independent Cascade starts another run only while the runs so far
            plus one more (at their mean time) fit in this (at least one run); the KS test then
            compares the runs NDlib finished with lpm's on the same seed sets.
        ic_runs: Independent Cascade seed sets (runs) per size; lpm runs all of them as one batch.
        models: which of :data:`MODELS` to run, in that order per size.
        threads: torch CPU threads for lpm (NDlib is single-threaded); ``None`` leaves torch's setting.
        out_json: write the rows to this file as a JSON list.
        verbose: print progress and the table.

    Returns:
        One row per (model, size) with keys ``model, n, ndlib_s_per_iter, lpm_s_per_iter, ratio``
        (ratio = NDlib / lpm time per iteration, medians) and details: agreement statistics,
        iteration counts, setup times, threads, versions. Independent Cascade rows add
        ``lpm_batched_s_per_iter`` (the batched run's time per step divided by the batch size),
        ``mean_size_lpm``, ``mean_size_ndlib``, ``runs`` (seed sets in the KS test) and run details.

    Raises:
        ConfigError: bad sizes, iterations, caps or threads.
        ImportError: ndlib (or scipy) is not installed.
    """
    sizes = [int(s) for s in sizes]
    if not sizes or any(s <= BA_M + 1 for s in sizes):
        raise ConfigError(f"Expected sizes > {BA_M + 1} (got {sizes})")
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ConfigError(f"Expected iterations >= 1 (got {iterations!r})")
    if not (hk_time_cap_s > 0 and ab_time_budget_s > 0 and ic_time_budget_s > 0):
        raise ConfigError(f"Expected positive time caps "
                          f"(got {hk_time_cap_s!r}, {ab_time_budget_s!r}, {ic_time_budget_s!r})")
    if not (isinstance(ic_runs, int) and ic_runs >= 2):
        raise ConfigError(f"Expected ic_runs >= 2 (got {ic_runs!r})")
    models = tuple(models)
    if not models or any(m not in MODELS for m in models):
        raise ConfigError(f"Expected models among {MODELS} (got {models})")
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"Expected threads >= 1 or None (got {threads!r})")
    _import_ndlib()
    from importlib.metadata import PackageNotFoundError, version

    try:
        ndlib_version = version("ndlib")
    except PackageNotFoundError:
        ndlib_version = "unknown"
    say = print if verbose else (lambda *a, **k: None)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    environment = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "torch_version": torch.__version__,
        "ndlib_version": ndlib_version,
        "seed": seed,
        "ba_m": BA_M,
    }
    rows: list[dict[str, Any]] = []
    try:
        for n in sizes:
            graph, nx_graph, lpm_graph_s, ndlib_graph_s, source = _build_graphs(n, seed)
            x01 = _initial_opinions(n, seed)
            graphs = {"lpm_graph_s": lpm_graph_s, "ndlib_graph_s": ndlib_graph_s, "graph_source": source}
            say(f"[n={n}] graph: {graph.num_edges} directed edges "
                f"(lpm {lpm_graph_s:.3f} s, networkx {ndlib_graph_s:.3f} s)")

            # Algorithmic Bias / Deffuant.
            if "algorithmic_bias" in models:
                say(f"[n={n}] NDlib AlgorithmicBias: up to {iterations} iterations ...")
                ab = _run_ndlib_ab(nx_graph, x01, iterations, ab_time_budget_s, seed)
                k = len(ab["times"])
                deffuant = Deffuant(eps=2 * AB_EPSILON, rate=AB_MU, tau=TAU)
                run_ab = _run_lpm(deffuant, graph, x01, max(2 * k, LPM_MIN_STEPS), (k, 2 * k), seed)
                ks, p_value = _ks(run_ab.snapshots[k], ab["final"])
                ks_matched, _ = _ks(run_ab.snapshots[2 * k], ab["final"])
                rows.append(_row("algorithmic_bias", n, graph, ab, run_ab, {
                    **environment, **graphs, "cap_s": None,
                    "agreement_stat": "ks", "agreement": ks,
                    "ks": ks, "ks_pvalue": p_value, "ks_lpm_2k_steps": ks_matched,
                    "ks_ndlib_vs_initial": _ks(ab["final"], x01)[0],
                    "ks_lpm_vs_initial": _ks(run_ab.snapshots[k], x01)[0],
                    "ndlib_params": {"epsilon": AB_EPSILON, "gamma": AB_GAMMA, "mu": AB_MU},
                    "lpm_params": {"eps": 2 * AB_EPSILON, "rate": AB_MU, "tau": TAU},
                    "iteration_definition": AB_DEFINITION,
                }))
                say(f"[n={n}] algorithmic_bias: NDlib {rows[-1]['ndlib_s_per_iter']:.4g} s/iter, "
                    f"lpm {rows[-1]['lpm_s_per_iter']:.4g} s/step, KS {ks:.4f}")

            # Hegselmann-Krause.
            if "hegselmann_krause" in models:
                say(f"[n={n}] NDlib HK: up to {iterations} iterations, capped at {hk_time_cap_s:g} s ...")
                hk = _run_ndlib_hk(nx_graph, x01, iterations, hk_time_cap_s, seed)
                k = len(hk["times"])
                hegselmann = BoundedConfidence(eps=2 * HK_EPSILON, rate=HK_RATE, tau=TAU)
                snapshot_at = (k,) if k else ()
                run_hk = _run_lpm(hegselmann, graph, x01, max(k, LPM_MIN_STEPS), snapshot_at, seed)
                extra: dict[str, Any] = {"ks": None}
                if k:
                    ks, p_value = _ks(run_hk.snapshots[k], hk["final"])
                    rule_diff, rule_agents = _hk_rule_check(graph, x01, hk["opinions"], RULE_TAU)
                    rule_diff_tau, _ = _hk_rule_check(graph, x01, hk["opinions"], TAU)
                    extra = {"ks": ks, "ks_pvalue": p_value,
                             "ndlib_agents_moved": int(np.count_nonzero(hk["final"] != x01)),
                             "hk_rule_max_abs_diff": rule_diff, "hk_rule_agents": rule_agents,
                             "hk_rule_max_abs_diff_at_tau": rule_diff_tau,
                             "ks_ndlib_vs_initial": _ks(hk["final"], x01)[0],
                             "ks_lpm_vs_initial": _ks(run_hk.snapshots[k], x01)[0]}
                rows.append(_row("hegselmann_krause", n, graph, hk, run_hk, {
                    **environment, **graphs, "cap_s": hk_time_cap_s,
                    "agreement_stat": "ks", "agreement": extra["ks"], **extra,
                    "ndlib_params": {"epsilon": HK_EPSILON},
                    "lpm_params": {"eps": 2 * HK_EPSILON, "rate": HK_RATE, "tau": TAU},
                    "iteration_definition": HK_DEFINITION,
                }))
                ndlib_text = (f">= {hk_time_cap_s:g} s/iter (capped)" if hk["capped"]
                              else f"{rows[-1]['ndlib_s_per_iter']:.4g} s/iter")
                say(f"[n={n}] hegselmann_krause: NDlib {ndlib_text}, lpm {rows[-1]['lpm_s_per_iter']:.4g} s/step")
            # Independent Cascade.
            if "independent_cascade" in models:
                seed_sets, lpm_seeds = _ic_seed_sets(n, ic_runs, seed)
                say(f"[n={n}] NDlib IndependentCascades: {ic_runs} runs of {seed_sets[0].size} seeds, "
                    f"budget {ic_time_budget_s:g} s ...")
                ic = _run_ndlib_ic(nx_graph, seed_sets, iterations, ic_time_budget_s, seed)
                runs = len(ic["sizes"])
                run_ic = _run_lpm_ic_single(graph, seed_sets[0], lpm_seeds[0], max(iterations, LPM_MIN_STEPS), seed)
                say(f"[n={n}] lpm: {ic_runs} cascades as one batch ...")
                batch = _run_lpm_ic_batch(graph, seed_sets, lpm_seeds, int(1.5 * max(ic["run_iterations"])) + 8,
                                          seed, say)
                lpm_sizes = batch["sizes"][:runs]  # the seed sets NDlib ran
                ks, p_value = _ks(lpm_sizes, ic["sizes"], method="auto")
                rows.append(_row("independent_cascade", n, graph, ic, run_ic, {
                    **environment, **graphs, "cap_s": ic_time_budget_s,
                    "agreement_stat": "ks", "agreement": ks, "ks": ks, "ks_pvalue": p_value,
                    "lpm_batched_s_per_iter": batch["s_per_step"] / ic_runs,
                    "mean_size_lpm": float(np.mean(lpm_sizes)),
                    "mean_size_ndlib": float(np.mean(ic["sizes"])),
                    "runs": runs,
                    "ic": {
                        "runs_requested": ic_runs,
                        "ndlib_budget_s": ic_time_budget_s,
                        "ndlib_runs_capped": runs < ic_runs,
                        "seeds_per_run": int(seed_sets[0].size),
                        "std_size_lpm": float(np.std(lpm_sizes)),
                        "std_size_ndlib": float(np.std(ic["sizes"])),
                        "mean_size_lpm_all_runs": float(np.mean(batch["sizes"])),
                        "ndlib_run_s_median": _median(ic["run_times"]),
                        "ndlib_run_s_total": float(sum(ic["run_times"])),
                        "ndlib_iterations_per_run_mean": float(np.mean(ic["run_iterations"])),
                        "ndlib_iterations_per_run_max": int(max(ic["run_iterations"])),
                        "ndlib_s_per_iter_all_median": _median(ic["all_times"]),
                        "lpm_batch_size": ic_runs,
                        "lpm_batched_steps": batch["steps"],
                        "lpm_batched_run_s": batch["run_s"],
                        "lpm_batched_s_per_step": batch["s_per_step"],
                        "lpm_batched_cpu_s_per_step": batch["cpu_s_per_step"],
                        "lpm_cascade_steps_mean": float(np.mean(batch["lengths"])),
                        "lpm_cascade_steps_max": int(np.max(batch["lengths"])),
                        "lpm_active_at_end": batch["active_at_end"],
                    },
                    "ndlib_params": {"threshold": IC_P, "seed_fraction": IC_SEED_FRACTION},
                    "lpm_params": {"transmissibility": IC_P, "seed_fraction": IC_SEED_FRACTION,
                                   "record_trees": False, "estimator": "Hard"},
                    "iteration_definition": IC_DEFINITION,
                }))
                say(f"[n={n}] independent_cascade: NDlib {rows[-1]['ndlib_s_per_iter']:.4g} s/iter, "
                    f"lpm {rows[-1]['lpm_s_per_iter']:.4g} s/step (B=1), KS {ks:.4f} (p={p_value:.3g}) "
                    f"over {runs} runs")
    finally:
        torch.set_num_threads(saved_threads)

    say("")
    say(format_table(rows))
    if out_json is not None:
        from lpm.io_atomic import atomic_write_json

        path = atomic_write_json(out_json, rows)  # strict JSON: NaN (e.g. no agent to compare) is null
        say(f"\nwrote {len(rows)} rows to {path}")
    return rows


# ---------------------------------------------------------------------------------------- output
def _agreement_text(row: dict[str, Any]) -> str:
    if row["model"] == "independent_cascade":
        capped = " (NDlib budget)" if row["ic"]["ndlib_runs_capped"] else ""
        return (f"KS={row['ks']:.3f} p={row['ks_pvalue']:.3g} over {row['runs']} runs{capped}; "
                f"mean size lpm {row['mean_size_lpm']:.1f} / NDlib {row['mean_size_ndlib']:.1f}")
    if row["model"] == "algorithmic_bias":
        return (f"KS={row['ks']:.3f} after {row['ndlib_iterations']} iters "
                f"(lpm at 2x steps: {row['ks_lpm_2k_steps']:.3f}; NDlib vs initial: {row['ks_ndlib_vs_initial']:.3f})")
    if row["ks"] is None:
        return "n/a (NDlib did not finish an iteration)"
    if row["hk_rule_agents"]:
        rule_text = (f"rule |d|={row['hk_rule_max_abs_diff']:.1e} (tau->0), "
                     f"{row['hk_rule_max_abs_diff_at_tau']:.1e} (tau={row['lpm_params']['tau']:g}) "
                     f"on {row['hk_rule_agents']} agent(s)")
    else:
        rule_text = "rule: n/a (nobody moved)"
    return (f"KS={row['ks']:.3f} after {row['ndlib_iterations']} iters (NDlib moved {row['ndlib_agents_moved']} "
            f"agents, lpm all); {rule_text}")


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a plain-text table, with set-up times and iteration definitions below it."""
    header = ["model", "n", "NDlib s/iter", "lpm s/iter", "ratio", "ratio (CPU time)", "lpm batched s/iter/B",
              "agreement"]
    body = []
    for row in rows:
        capped = row["ndlib_capped"]
        ndlib_text = f">={row['ndlib_s_per_iter']:.4g}" if capped else f"{row['ndlib_s_per_iter']:.4g}"
        ratio_text = f"{'>=' if capped else ''}{row['ratio']:.0f}x"
        cpu_text = "n/a" if row["ratio_cpu"] is None else f"{row['ratio_cpu']:.0f}x"
        batched = row["lpm_batched_s_per_iter"]
        batched_text = "-" if batched is None else f"{batched:.3g} (B={row['ic']['lpm_batch_size']})"
        body.append([row["model"], f"{row['n']:.0e}".replace("+0", ""), ndlib_text,
                     f"{row['lpm_s_per_iter']:.3g}", ratio_text, cpu_text, batched_text, _agreement_text(row)])
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if rows:
        first = rows[0]
        lines.append("")
        lines.append(f"wall-clock medians over timed iterations; device=cpu, lpm torch threads={first['threads']}, "
                     f"NDlib single-threaded; ndlib {first['ndlib_version']}, torch {first['torch_version']}")
        lines.append("ratio (CPU time): the same with process CPU time, less sensitive to other load on a shared "
                     "machine (it sums torch threads, so it favours NDlib when threads > 1)")
        lines.append("set-up (s), not included above: model, n, graph lpm / networkx, model setup lpm / NDlib")
        for row in rows:
            lines.append(f"  {row['model']}, {row['n']}: {row['lpm_graph_s']:.3f} / {row['ndlib_graph_s']:.3f}, "
                         f"{row['lpm_setup_s']:.4f} / {row['ndlib_setup_s']:.4f}")
        if any(r["ndlib_capped"] for r in rows):
            lines.append("'>=': NDlib did not finish one iteration within the cap; its time is the cap and "
                         "the ratio a lower bound")
        models = {r["model"] for r in rows}
        if "independent_cascade" in models:
            lines.append("independent_cascade: NDlib s/iter is the median over the first iterations of every run "
                         "(ndlib_s_per_iter_all_median: all iterations), lpm s/iter the median step of one cascade "
                         "(B=1); lpm batched: one simulate() of all runs as B scenarios, wall time / steps / B")
            for row in rows:
                if row["model"] == "independent_cascade":
                    ic = row["ic"]
                    lines.append(
                        f"  n={row['n']}: {row['runs']}/{ic['runs_requested']} NDlib runs of {ic['seeds_per_run']} "
                        f"seeds, {ic['ndlib_iterations_per_run_mean']:.1f} iterations and "
                        f"{ic['ndlib_run_s_median']:.3g} s per run (median), {ic['ndlib_run_s_total']:.1f} s in all; "
                        f"lpm: {ic['lpm_batched_steps']} steps in {ic['lpm_batched_run_s']:.1f} s, cascades stop "
                        f"after {ic['lpm_cascade_steps_mean']:.1f} steps (max {ic['lpm_cascade_steps_max']}); "
                        f"size sd lpm {ic['std_size_lpm']:.1f} / NDlib {ic['std_size_ndlib']:.1f}")
            lines.append(f"independent_cascade iteration: {IC_DEFINITION}")
        if "algorithmic_bias" in models:
            lines.append(f"algorithmic_bias iteration: {AB_DEFINITION}")
        if "hegselmann_krause" in models:
            lines.append(f"hegselmann_krause iteration: {HK_DEFINITION}")
            lines.append("rule |d|: NDlib's new opinion vs the confidence-set mean (self excluded, as NDlib) "
                         "from lpm's aggregation kernel, for every agent NDlib moved, from the opinions before that "
                         "iteration; at tau -> 0 (the hard indicator) and at the benchmark's tau")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- CLI
def _parse_sizes(text: str) -> list[int]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"Expected comma-separated sizes like 1e4,1e5 (got {text!r})") from exc
    if not values or any(v != int(v) or v <= BA_M + 1 for v in values):
        raise argparse.ArgumentTypeError(f"Expected whole sizes > {BA_M + 1} (got {text!r})")
    return [int(v) for v in values]


def _parse_models(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(name not in MODELS for name in names):
        raise argparse.ArgumentTypeError(f"Expected a comma-separated subset of {','.join(MODELS)} (got {text!r})")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``lpm bench ndlib``."""
    parser.add_argument("--sizes", type=_parse_sizes, default=[10_000, 100_000],
                        help="comma-separated numbers of agents (default 1e4,1e5)")
    parser.add_argument("--json", dest="json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--hk-cap-s", type=float, default=120.0,
                        help="cap on NDlib HK's stepping time in seconds (default 120)")
    parser.add_argument("--ab-budget-s", type=float, default=120.0,
                        help="NDlib Algorithmic Bias stops starting iterations past this (default 120)")
    parser.add_argument("--ic-budget-s", type=float, default=300.0,
                        help="NDlib Independent Cascade starts no run past this many seconds of stepping; the KS "
                             "test uses the runs that fit (default 300)")
    parser.add_argument("--ic-runs", type=int, default=IC_RUNS,
                        help=f"Independent Cascade seed sets (runs) per size (default {IC_RUNS})")
    parser.add_argument("--models", type=_parse_models, default=list(MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)} (default all)")
    parser.add_argument("--iterations", type=int, default=10,
                        help="NDlib iterations timed per model; for Independent Cascade, the first this many of "
                             "every run (default 10)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for lpm (default 1: NDlib is single-threaded); 0 keeps torch's default")
    parser.add_argument("--seed", type=int, default=0, help="seed of graph, opinions and draws (default 0)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``lpm bench ndlib`` with parsed ``args``; returns the exit status."""
    bench_ndlib(
        args.sizes,
        seed=args.seed,
        iterations=args.iterations,
        hk_time_cap_s=args.hk_cap_s,
        ab_time_budget_s=args.ab_budget_s,
        ic_time_budget_s=args.ic_budget_s,
        ic_runs=args.ic_runs,
        models=args.models,
        threads=args.threads or None,
        out_json=args.json,
    )
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Standalone entry: ``python -m lpm.bench [--sizes 1e4,1e5] [--json FILE] ...``."""
    parser = add_arguments(argparse.ArgumentParser(prog="lpm bench ndlib", description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
