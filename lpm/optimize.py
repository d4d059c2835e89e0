"""Policy optimisation: the best intervention plan under a budget, by gradient through the dynamics,
and its honest validation against doing nothing, a grid and a gradient-free search.

:func:`optimize` differentiates an objective (e.g. the claim's final reach) through the mean-field
(:class:`~lpm.relax.Expected`) or relaxed dynamics with respect to the parameters of some
:mod:`lpm.levers` (whom to prebunk, when to label, how hard to downrank), with common random numbers
across iterations, and Adam steps within a time budget. Then, unless told not to, it *validates*:

* a grid over the same levers (each lever's hand-designed options, e.g. prebunk the most-followed,
  the most aligned, ...; label at the earliest, middle, latest time), scored like the gradient's
  objective, and its best arm;
* optuna's TPE over the same parameters, given the gradient's wall time, and its best arm;
* every plan re-run with the *exact* sampled dynamics (hard top-k, :class:`~lpm.relax.Hard`) on
  fresh seeds that the optimisation never saw, paired against doing nothing and against each other
  (common random numbers), through :func:`lpm.counterfactual`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from lpm.counterfactual import CounterfactualResult, counterfactual
from lpm.errors import ConfigError
from lpm.executor import Executor, resolve_executor
from lpm.graph import Graph
from lpm.interventions import Intervention, InterventionPlan
from lpm.levers import Lever
from lpm.model import Model
from lpm.relax import Estimator, Expected, Hard
from lpm.observables import Observable, negative_share, polarization
from lpm.simulate import Trajectory, simulate
from lpm.state import PopulationState
from lpm.uncertainty import ParameterDraws

__all__ = ["Objective", "final_reach", "final_reshares", "peak_negative_share", "final_polarization", "weighted", "OptimizedPlan", "optimize", "evaluate_plans",
           "grid_plans", "VALIDATION_SEED_OFFSET"]

#: Validation seeds start here; optimisation seeds are below it, so the plan is judged on draws it
#: was not fitted to.
VALIDATION_SEED_OFFSET = 1_000_000


@dataclass(frozen=True)
class Objective:
    """What a plan minimises, from a run.

    Args:
        name: e.g. ``final_reach``.
        smooth: ``(trajectory) -> (B,)`` differentiable value (mean-field or relaxed runs).
        exact: ``(trajectory) -> (B,)`` the same quantity in an exact run (what validation reports).
        record: observables the value needs recorded over time (none for final-state objectives).
    """

    name: str
    smooth: Callable[[Trajectory], Tensor]
    exact: Callable[[Trajectory], Tensor]
    record: Mapping[str, Observable] = field(default_factory=dict)


def _group_sum(values: Tensor, group: Optional[Tensor]) -> Tensor:
    return values.sum(1) if group is None else (values * group.to(values)[None]).sum(1)


def final_reach(item: int = 0, group: Optional[Tensor] = None) -> Objective:
    """Agents the item reached (of ``group``, a ``(N,)`` 0/1 mask, if given).

    Smooth: ``sum_i 1 - exp(-exposures_i)``, the probability of at least one exposure when
    exposures arrive as a Poisson count with the mean-field mean; exact: ``exposures_i > 0``.
    """
    def smooth(trajectory: Trajectory) -> Tensor:
        return _group_sum(-torch.expm1(-trajectory.final.exposures[..., item]), group)

    def exact(trajectory: Trajectory) -> Tensor:
        exposures = trajectory.final.exposures[..., item].detach()
        return _group_sum((exposures > 0).to(exposures.dtype), group)

    return Objective("final_reach" if group is None else "group_reach", smooth, exact)


def final_reshares(item: int = 0, group: Optional[Tensor] = None) -> Objective:
    """Agents who reshared the item (of ``group``, if given)."""
    def value(trajectory: Trajectory) -> Tensor:
        return _group_sum(trajectory.final.reshared[..., item], group)

    return Objective("final_reshares" if group is None else "group_reshares", value,
                     lambda trajectory: value(trajectory).detach())


def peak_negative_share(sharpness: float = 50.0) -> Objective:
    """The highest share of clearly negative agents over the run (:func:`lpm.observables.negative_share`).

    Smooth: the log-sum-exp soft maximum over steps with ``sharpness`` (a share of 0.01 moves it by
    about one ``1 / sharpness``); exact: the maximum.
    """
    def smooth(trajectory: Trajectory) -> Tensor:
        series = trajectory["negative_share"]  # (S, B)
        return torch.logsumexp(sharpness * series, 0) / sharpness

    return Objective("peak_negative_share", smooth, lambda trajectory: trajectory["negative_share"].detach().amax(0),
                     record={"negative_share": negative_share})


def final_polarization() -> Objective:
    """Polarization (:func:`lpm.observables.polarization`) at the end of the run."""
    return Objective("final_polarization", lambda trajectory: trajectory["polarization"][-1],
                     lambda trajectory: trajectory["polarization"][-1].detach(), record={"polarization": polarization})


def weighted(*terms: tuple[float, Objective]) -> Objective:
    """``sum_k w_k objective_k``: e.g. ``weighted((1.0, final_reach()), (500.0, peak_negative_share()))``
    trades agents reached against points of negative share at 500 agents per unit share."""
    if not terms:
        raise ConfigError("Expected at least one (weight, objective) term (got none)")
    for weight, objective in terms:
        if not isinstance(objective, Objective) or not math.isfinite(float(weight)):
            raise ConfigError(f"Expected (finite weight, Objective) terms (got ({weight!r}, {type(objective).__name__}))")
    record: dict[str, Observable] = {}
    for _, objective in terms:
        record.update(objective.record)
    name = " + ".join(f"{float(w):g}*{o.name}" for w, o in terms)
    return Objective(name, lambda trajectory: sum(float(w) * o.smooth(trajectory) for w, o in terms),
                     lambda trajectory: sum(float(w) * o.exact(trajectory) for w, o in terms), record)


@contextlib.contextmanager
def _quiet_late_starts():
    """A candidate plan may start an intervention after the horizon (a label at the latest allowed
    time): that is a choice being scored, not a user's mistake worth a warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*to start before the end of the simulation.*")
        yield


def _plan_interventions(levers: Sequence[Lever], hard: bool) -> list[Intervention]:
    return [intervention for lever in levers for intervention in lever.interventions(hard=hard)]


def _values(levers: Sequence[Lever]) -> dict[str, float]:
    out: dict[str, float] = {}
    for lever in levers:
        out.update(lever.values())
    return out


def evaluate_plans(model: Model, population: PopulationState, graph: Graph, plans: Sequence[Sequence[Intervention]],
                   objective: Objective, *, steps: int, seeds: Sequence[int] = (0,), estimator: Estimator = Expected(),
                   costs: Optional[Sequence[float]] = None, chunk: Optional[int] = None,
                   executor: Optional[Executor] = None) -> Tensor:
    """``(P,)`` mean objective (plus cost) over ``seeds`` of each plan; plans x seeds as the batch.

    Without gradient: for scoring grids and gradient-free search the way the gradient scores a plan.
    ``chunk``: at most this many plans per batch (default: all in one); ``executor``: where the
    batches run (:mod:`lpm.executor`; default here), one task per batch.

    Raises:
        ConfigError: no plans, or a ``chunk`` that is not an int >= 1.
    """
    if not plans:
        raise ConfigError("Expected at least one plan to evaluate (got none)")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ConfigError(f"Expected chunk (plans per batch) to be None or an int >= 1 (got {chunk!r})")
    executor = resolve_executor(executor)
    per_batch = len(plans) if chunk is None else chunk
    batches = [[list(plan) for plan in plans[lo:lo + per_batch]] for lo in range(0, len(plans), per_batch)]
    values = executor.map(_plans_task, batches, shared=(model, population, graph, objective, steps, tuple(seeds),
                                                        estimator), device=population.opinion.device)
    value = torch.cat(values)
    if costs is not None:
        value = value + torch.as_tensor(costs, dtype=torch.float64)
    return value


def _plans_task(model: Model, population: PopulationState, graph: Graph, objective: Objective, steps: int,
                seeds: tuple[int, ...], estimator: Estimator, plans: list[list[Intervention]]) -> Tensor:
    """``(P,)`` mean smooth objective over ``seeds`` of each plan, all plans in one batch (on the CPU)."""
    n_seeds = len(seeds)
    batch = len(plans) * n_seeds
    planned = list(model.interventions.interventions) if model.interventions is not None else []
    for k, plan in enumerate(plans):
        mask = torch.zeros(batch, dtype=torch.bool)
        mask[k * n_seeds:(k + 1) * n_seeds] = True
        planned.extend(intervention.restricted_to(mask) for intervention in plan)
    run_model = model.with_interventions(InterventionPlan(planned)).to(dtype=population.opinion.dtype)
    with torch.no_grad(), _quiet_late_starts():
        trajectory = simulate(run_model, population.expand_batch(batch), graph, steps=steps,
                              seed=[s for _ in plans for s in seeds], estimator=estimator, record=dict(objective.record))
        return objective.smooth(trajectory).reshape(len(plans), n_seeds).mean(1).double().cpu()


def grid_plans(levers: Sequence[Lever]) -> list[dict[str, float]]:
    """The cartesian product of every lever's hand-designed options (:meth:`Lever.grid`)."""
    options = [lever.grid() for lever in levers]
    return [dict(itertools.chain.from_iterable(d.items() for d in combo)) for combo in itertools.product(*options)]


def _score(models, population, graph, levers, objective, candidates, *, steps, seeds, estimator, chunk=None,
           executor=None) -> list[dict[str, float]]:
    """Each candidate's values with its smooth score (hard plans) averaged over ``models`` (the
    point estimate, or one model per posterior draw), as rows."""
    total = torch.zeros(len(candidates), dtype=torch.float64)
    for model in models:
        plans, costs = [], []
        for values in candidates:
            _set_all(levers, values)
            plans.append(_plan_interventions(levers, hard=True))
            costs.append(_cost_of(levers))
        total += evaluate_plans(model, population, graph, plans, objective, steps=steps, seeds=seeds,
                                estimator=estimator, costs=costs, chunk=chunk, executor=executor)
    scores = total / len(models)
    return [{**values, "score": float(score)} for values, score in zip(candidates, scores.tolist())]


def _set_all(levers: Sequence[Lever], values: Mapping[str, float]) -> None:
    for lever in levers:
        lever.set_values(values)


def _cost_of(levers: Sequence[Lever]) -> float:
    like = {"value": torch.zeros(1, dtype=torch.float64)}
    return float(sum(float(lever.cost(like).detach().sum()) for lever in levers))


@dataclass
class OptimizedPlan:
    """The result of :func:`optimize`.

    Attributes:
        values: the chosen lever parameters (policy weights, start times, strengths).
        levers: the levers, holding those values (``lever.selection(hard=True)`` etc.).
        trace: one row per iteration: ``iteration``, ``seconds``, ``objective`` (smooth, with costs).
        arms: ``{name: [interventions]}`` ready for :func:`lpm.counterfactual`: ``none``,
            ``optimized`` and, after validation, ``grid_best`` and ``tpe_best``.
        grid: every grid plan's values and smooth score; ``tpe``: every TPE trial's.
        validation: the exact re-run on fresh seeds (:class:`~lpm.counterfactual.CounterfactualResult`
            with an ``objective`` outcome), or ``None``.
        comparison: paired differences of the exact objective, one row per (arm, against).
    """

    objective: str
    values: dict[str, float]
    levers: list[Lever]
    trace: list[dict[str, float]]
    arms: dict[str, list[Intervention]]
    grid: list[dict[str, float]] = field(default_factory=list)
    tpe: list[dict[str, float]] = field(default_factory=list)
    validation: Optional[CounterfactualResult] = None
    comparison: Optional[object] = None
    #: with a posterior: the same comparison at the fit's point estimate (same fresh seeds)
    comparison_point_estimate: Optional[object] = None
    meta: dict[str, object] = field(default_factory=dict)


def _gradient_search(models, population, graph, levers, objective, *, steps, seeds, estimator, iterations, budget_s,
                     lr, checkpoint_every, anneal) -> tuple[list[dict[str, float]], float]:
    """Adam on the levers; iteration ``i`` runs under ``models[i % len(models)]`` (one model per
    posterior draw: a stochastic gradient of the objective's expectation over the draws)."""
    parameters = [p for lever in levers for p in lever.parameters() if p.requires_grad]
    if not parameters:
        raise ConfigError("Expected levers with learnable parameters (got none)")
    optimiser = torch.optim.Adam(parameters, lr=lr)
    state = population.expand_batch(len(seeds))
    trace: list[dict[str, float]] = []
    start = time.perf_counter()
    temperatures = [getattr(lever, "temperature", None) for lever in levers]
    for iteration in range(iterations):
        for lever, t0 in zip(levers, temperatures):  # anneal soft selections toward hard top-k
            if t0 is not None:
                lever.temperature = t0 * (anneal ** (iteration / max(1, iterations - 1)))
        optimiser.zero_grad()
        model = models[iteration % len(models)]
        base = list(model.interventions.interventions) if model.interventions is not None else []
        run_model = model.with_interventions(InterventionPlan(base + _plan_interventions(levers, hard=False)))
        with _quiet_late_starts():
            trajectory = simulate(run_model.to(dtype=population.opinion.dtype), state, graph, steps=steps,
                                  seed=list(seeds), estimator=estimator, record=dict(objective.record),
                                  checkpoint_every=checkpoint_every)
        value = objective.smooth(trajectory)
        loss = (value + sum(lever.cost({"value": value}) for lever in levers)).mean()
        loss.backward()
        optimiser.step()
        elapsed = time.perf_counter() - start
        trace.append({"iteration": iteration, "seconds": elapsed, "objective": float(loss.detach()), **_values(levers)})
        if budget_s is not None and elapsed > budget_s:
            break
    return trace, time.perf_counter() - start


def _tpe_search(models, population, graph, levers, objective, *, steps, seeds, estimator, budget_s, batch, seed,
                known: Sequence[Mapping[str, float]] = (), scoring: Optional[Mapping[str, object]] = None) -> list[dict[str, float]]:
    """optuna's TPE over the levers' search space for ``budget_s`` seconds, ``batch`` trials per
    batched evaluation, told the ``known`` scored plans (the grid) first."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {}
    for lever in levers:
        space.update(lever.search_space())
    distributions = {k: optuna.distributions.FloatDistribution(lo, hi) for k, (lo, hi) in space.items()}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="minimize")
    for row in known:
        params = {k: min(max(float(row[k]), distributions[k].low), distributions[k].high) for k in space}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=float(row["score"])))
    trials: list[dict[str, float]] = []
    start = time.perf_counter()
    while not trials or time.perf_counter() - start < budget_s:
        asked = [study.ask(distributions) for _ in range(batch)]
        rows = _score(models, population, graph, levers, objective, [t.params for t in asked], steps=steps,
                      seeds=seeds, estimator=estimator, **(scoring or {}))
        for trial, row in zip(asked, rows):
            study.tell(trial, row["score"])
            trials.append({**row, "seconds": time.perf_counter() - start})
    return trials


def _best(rows: list[dict[str, float]]) -> dict[str, float]:
    best = min(rows, key=lambda r: r["score"])
    return {k: v for k, v in best.items() if k not in ("score", "seconds")}


def _paired(values: np.ndarray, against: np.ndarray, level: float, resamples: int, rng) -> tuple[float, float, float]:
    diff = values - against
    index = rng.integers(0, diff.size, size=(resamples, diff.size))
    lo, hi = np.quantile(diff[index].mean(1), [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(diff.mean()), float(lo), float(hi)


def optimize(model: Model, population: PopulationState, graph: Graph, levers: Sequence[Lever],
             objective: Objective, *, steps: int, seeds: Sequence[int] = (0,), estimator: Estimator = Expected(),
             iterations: int = 30, budget_s: Optional[float] = None, lr: float = 0.1,
             checkpoint_every: Optional[int] = None, anneal: float = 0.25, warm_start: bool = True, validate: bool = True,
             validation_seeds: int = 16, tpe: bool = True, tpe_batch: int = 8, level: float = 0.9,
             seed: int = 0, posterior: Optional[ParameterDraws] = None, draws: int = 4, chunk: Optional[int] = None,
             executor: Optional[Executor] = None) -> OptimizedPlan:
    """Choose the levers' parameters that minimise ``objective`` (plus the levers' costs).

    Args:
        model: the dynamics (with a cascade for reach objectives); its own interventions stay on.
        population: the initial state of one scenario (``B = 1``).
        graph: the follower graph.
        levers: what the plan may choose (:mod:`lpm.levers`); their parameters are updated in place.
        objective: :func:`final_reach`, :func:`final_reshares`, or an :class:`Objective`.
        steps: simulated steps per evaluation.
        seeds: optimisation seeds (common random numbers: the same every iteration; one is enough for
            the deterministic mean field).
        estimator: how events are differentiated (mean field by default; e.g. a
            :class:`~lpm.relax.RelaxedBernoulli` with several seeds).
        iterations: Adam steps at most; ``budget_s``: stop after this many seconds.
        lr: Adam learning rate in the levers' unconstrained units.
        checkpoint_every: gradient checkpointing through time (memory for long horizons).
        anneal: soft top-k temperatures fall by this factor over the iterations.
        warm_start: start the gradient from the best grid plan (else from the levers' values).
        validate: run the grid, TPE (``tpe``) and the exact validation on ``validation_seeds`` fresh seeds.
        level: interval level of the paired comparisons.
        seed: seeds TPE, the bootstrap and the posterior draws.
        posterior: a fit's parameter uncertainty (:class:`lpm.uncertainty.ParameterDraws`): the search
            minimises the objective's mean over ``draws`` posterior draws (grid and TPE too), and the
            validation runs every fresh seed under its own draw, beside the point estimate
            (``comparison_point_estimate`` and ``meta["widening"]``).
        chunk: at most this many plans per batch when scoring the grid and TPE's trials (default: all
            of a round in one batch).
        executor: where those batches and the exact validation's run (:mod:`lpm.executor`; default
            here); the gradient steps run here. The numbers do not depend on it (TPE's trial count,
            bounded by wall time, may).

    Returns:
        An :class:`OptimizedPlan`.
    """
    if not levers:
        raise ConfigError("Expected at least one lever (got none)")
    if any(s >= VALIDATION_SEED_OFFSET for s in seeds):
        raise ConfigError(f"Expected optimisation seeds below {VALIDATION_SEED_OFFSET} (validation uses those above)")
    if population.batch_size != 1:
        raise ConfigError(f"Expected a population of one scenario (got batch size {population.batch_size})")
    run = dict(steps=steps, seeds=seeds, estimator=estimator)
    scoring = dict(chunk=chunk, executor=executor)
    models = [model]
    if posterior is not None:
        if not isinstance(posterior, ParameterDraws) or draws < 1:
            raise ConfigError(f"Expected a posterior with draw() and apply() and draws >= 1 (got "
                              f"{type(posterior).__name__}, draws={draws})")
        models = []
        for values in posterior.draw(draws, seed):
            drawn = copy.deepcopy(model)
            posterior.apply(drawn, values)
            models.append(drawn)
    grid_rows: list[dict[str, float]] = []
    if validate or warm_start:
        # the grid: every lever's hand-designed options, scored like the gradient's plans
        start = time.perf_counter()
        grid_rows = _score(models, population, graph, levers, objective, grid_plans(levers), **run, **scoring)
        grid_seconds = time.perf_counter() - start
        if warm_start:  # the gradient refines the best hand-designed plan
            _set_all(levers, _best(grid_rows))
    trace, spent = _gradient_search(models, population, graph, levers, objective, iterations=iterations,
                                    budget_s=budget_s, lr=lr, checkpoint_every=checkpoint_every, anneal=anneal, **run)
    chosen = _values(levers)
    plan = OptimizedPlan(objective=objective.name, values=chosen, levers=list(levers), trace=trace,
                         arms={"none": [], "optimized": _plan_interventions(levers, hard=True)}, grid=grid_rows,
                         meta={"gradient_seconds": spent, "gradient_iterations": len(trace), "warm_start": warm_start,
                               "optimisation_seeds": list(seeds), "estimator": type(estimator).__name__})
    if not validate:
        return plan
    plan.meta["grid_seconds"], plan.meta["grid_plans"] = grid_seconds, len(grid_rows)
    _set_all(levers, _best(grid_rows))
    plan.arms["grid_best"] = _plan_interventions(levers, hard=True)
    if tpe:
        # the same wall time as the gradient, starting from the same grid
        plan.tpe = _tpe_search(models, population, graph, levers, objective, budget_s=spent, batch=tpe_batch,
                               seed=seed, known=grid_rows, scoring=scoring, **run)
        _set_all(levers, _best(plan.tpe))
        plan.arms["tpe_best"] = _plan_interventions(levers, hard=True)
        plan.meta["tpe_trials"] = len(plan.tpe)
    _set_all(levers, chosen)  # the levers hold the optimised plan again
    # exact dynamics, hard plans, fresh seeds
    fresh = [VALIDATION_SEED_OFFSET + s for s in range(validation_seeds)]
    result = counterfactual(model, population, graph, plan.arms, steps=steps, seeds=fresh, estimator=Hard(),
                            record=dict(objective.record) or None, posterior=posterior, posterior_seed=seed + 1,
                            executor=executor)
    result = _with_objective(result, objective)
    plan.validation = result
    plan.comparison = _comparison(result, objective.name, level, seed)
    if result.fixed_parameters is not None:
        fixed = _with_objective(result.fixed_parameters, objective)
        plan.validation = dataclasses.replace(result, fixed_parameters=fixed)
        plan.comparison_point_estimate = _comparison(fixed, objective.name, level, seed)
        width = (plan.comparison["hi"] - plan.comparison["lo"]).to_numpy()
        width_point = (plan.comparison_point_estimate["hi"] - plan.comparison_point_estimate["lo"]).to_numpy()
        plan.meta["widening"] = {f"{r['arm']}-{r['against']}": float(w / wp) if wp > 0 else float("nan")
                                 for r, w, wp in zip(plan.comparison.to_dict(orient="records"), width, width_point)}
    return plan


def _with_objective(result: CounterfactualResult, objective: Objective) -> CounterfactualResult:
    """The result with an ``objective`` outcome: the exact objective of each run."""
    exact = objective.exact(result.trajectory).detach().cpu().numpy().astype(float)
    table = result.table.copy()
    table["objective"] = exact  # rows in batch order: arm a, seed s at a * S + s, as the table
    return dataclasses.replace(result, table=table, outcomes=tuple(result.outcomes) + ("objective",))


def _comparison(result: CounterfactualResult, objective: str, level: float, seed: int):
    """Paired differences of the exact objective: every plan against ``none``, and the optimised plan
    against the others. ``difference``/``lo``/``hi`` use the control-variate adjusted outcome where
    the counterfactual has one for this objective (the same expectation with less seed noise,
    :class:`~lpm.counterfactual.CounterfactualResult`); ``raw_*`` the realised values."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    adjusted = f"{objective}_adjusted"
    primary = adjusted if adjusted in result.outcomes else "objective"
    rows = []
    for arm in result.arms:
        for against in result.arms:
            if arm == against or (against != "none" and arm != "optimized"):
                continue
            raw = _paired(result._values(arm, "objective"), result._values(against, "objective"), level, 4000, rng)
            main = _paired(result._values(arm, primary), result._values(against, primary), level, 4000, rng)
            rows.append({"arm": arm, "against": against, "outcome": primary, "difference": main[0], "lo": main[1],
                         "hi": main[2], "excludes_zero": bool(main[2] < 0 or main[1] > 0),
                         "mean": float(result._values(arm, "objective").mean()),
                         "raw_difference": raw[0], "raw_lo": raw[1], "raw_hi": raw[2]})
    return pd.DataFrame(rows)
