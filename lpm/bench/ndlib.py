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

import logging
import os
import platform
from typing import Any, Optional, Sequence

import numpy as np
import torch

from lpm.bench.cascade import _ic_seed_sets, _run_lpm_ic_batch, _run_lpm_ic_single, _run_ndlib_ic
from lpm.bench.common import (
    AB_DEFINITION, AB_EPSILON, AB_GAMMA, AB_MU, BA_M, HK_DEFINITION, HK_EPSILON, HK_RATE, IC_DEFINITION, IC_P,
    IC_RUNS, IC_SEED_FRACTION, LPM_MIN_STEPS, MODELS, RULE_TAU, TAU, _LpmRun, _build_graphs, _import_ndlib,
    _initial_opinions, _ks, _median,
)
from lpm.bench.opinion import _hk_rule_check, _run_lpm, _run_ndlib_ab, _run_ndlib_hk
from lpm.dynamics import BoundedConfidence, Deffuant
from lpm.errors import ConfigError
from lpm.graph import Graph

log = logging.getLogger(__name__)


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
        verbose: log progress (``logging`` INFO on ``lpm.bench.ndlib``; ``lpm bench`` shows it).

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
    say = log.info if verbose else (lambda *a, **k: None)
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

    if out_json is not None:
        from lpm.io_atomic import atomic_write_json

        path = atomic_write_json(out_json, rows)  # strict JSON: NaN (e.g. no agent to compare) is null
        say(f"wrote {len(rows)} rows to {path}")
    return rows

