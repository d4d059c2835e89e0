"""Opinion models side by side: NDlib's Algorithmic Bias and Hegselmann-Krause, lpm's Deffuant and
bounded confidence (timed step by step), and the check of NDlib's HK rule against lpm's kernel."""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from typing import Any, Sequence

import numpy as np
import torch

from lpm import kernels
from lpm.bench.common import (
    AB_EPSILON, AB_GAMMA, HK_EPSILON, _GlobalRandomState, _LpmRun, _import_ndlib, _lpm_rng, _lpm_state,
    _ndlib_opinions, _set_ndlib_opinions, _to_unit,
)
from lpm.graph import Graph
from lpm.model import Model


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

