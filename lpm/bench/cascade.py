"""Independent Cascade side by side: NDlib run by run, lpm one run at a time and as one batch."""

from __future__ import annotations

import statistics
import time
from typing import Any, Sequence

import numpy as np
import torch

from lpm.bench.common import IC_MAX_STEPS, IC_P, IC_SEED_FRACTION, _GlobalRandomState, _LpmRun
from lpm.dynamics import Cascade, Item, init_cascade_state
from lpm.graph import Graph
from lpm.model import Model
from lpm.relax import Hard
from lpm.state import PopulationState


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

