"""Counterfactuals: compare intervention arms on one population, as one batched simulation.

Arms x seeds run together as the batch dimension (on the CPU, large batches are cut into batches
of whole arms, which run faster there and give the same numbers: :data:`CPU_BATCH_AGENTS`). With
common random numbers (the default) every arm gets the same seeds, so each arm sees the same draws
wherever the arms do not differ, and the difference between an arm and the baseline is measured on
paired runs: its interval is much narrower than with independent seeds (Glasserman & Yao 1992 on
common random numbers).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from lpm.dynamics.cascade import Cascade
from lpm.errors import ConfigError
from lpm.executor import Executor, resolve_executor, task_device
from lpm.graph import Graph
from lpm.interventions import Intervention, InterventionPlan
from lpm.model import Model
from lpm.observables import Observable, negative_share, posts, reshares
from lpm.relax import Estimator, Hard
from lpm.rng import CounterRNG
from lpm.simulate import Trajectory, simulate
from lpm.state import PopulationState
from lpm.variance import martingale_controls

from lpm.uncertainty import ParameterDraws, difference_interval, run_with_draws

__all__ = ["counterfactual", "CounterfactualResult", "arm_batches", "CPU_BATCH_AGENTS", "OUTCOMES", "ADJUSTED"]

#: Cascade outcomes per (arm, seed). The cascade's timing is ``half_time_h``, the hour at which it
#: reached half its final size, not the hour of most new reshares: items posted by large accounts
#: get most of their reshares in the very first step (feeds forget within minutes), so that peak
#: was the first step in every arm and seed of ``lpm run misinformation`` and told nothing.
OUTCOMES = ("final_reach", "final_reshares", "half_time_h", "max_depth")
#: The same expectations as final reach and reshares, less seed-to-seed noise (control variates).
ADJUSTED = ("final_reach_adjusted", "final_reshares_adjusted")
SCALAR: Mapping[str, Observable] = {"negative_share": negative_share, "posts": posts}


def _observable_outcomes(trajectory: Trajectory, arms: tuple[str, ...], seeds: tuple[int, ...]):
    """Final, mean, peak and peak time of each scalar observable, per scenario."""
    import pandas as pd

    columns: dict[str, np.ndarray] = {
        "arm": np.repeat(np.array(arms, dtype=object), len(seeds)),
        "seed": np.tile(np.array(seeds), len(arms)),
    }
    hours = trajectory.times_h.numpy()
    for name, value in trajectory.values.items():
        if value.dim() != 2:
            raise ConfigError(f"Expected scalar observables (S, B) for outcomes (got {name} of shape {tuple(value.shape)})")
        series = value.detach().double().cpu().numpy()[1:]  # (S, B), after the initial state
        columns[f"mean_{name}"] = series.mean(0)
        columns[f"peak_{name}"] = series.max(0)
        columns[f"peak_time_{name}"] = hours[1:][series.argmax(0)]
        columns[f"final_{name}"] = series[-1]
    return pd.DataFrame(columns)


def _ratio(spread: float, narrower: float) -> float:
    return float(spread / narrower) if narrower > 0 else math.inf


@dataclass(frozen=True, eq=False)
class CounterfactualResult:
    """Outcomes per arm and seed, with summaries and paired differences.

    Attributes:
        table: one row per (arm, seed): ``arm``, ``seed``, ``final_reach`` (agents the item reached),
            ``final_reshares`` (agents who reshared it), ``half_time_h`` (hour at which the cascade
            reached half its final size), ``max_depth`` (deepest reshare chain).
        trajectory: the batched run; scenario ``a * S + s`` is arm ``a``, seed ``s``.
        arms: arm names in batch order; ``baseline``: the arm differences are taken against.
        common_random_numbers: whether arms shared their seeds (paired comparisons).

    With an exact cascade run the table also has ``final_reach_adjusted`` and
    ``final_reshares_adjusted``: the realized values minus mean-zero control variates built from
    each agent's reshare draw and the hazard it was exposed to
    (:func:`lpm.variance.martingale_controls`). They estimate the same expected reach and
    reshares with less seed-to-seed noise (1.1-1.6x less spread per arm in ``lpm run
    misinformation``; paired differences narrow far more), so differences and pairing use the
    adjusted reach by default (:attr:`headline`); bands over seeds in :meth:`summary` stay on what
    happened.
    """

    table: "object"
    trajectory: Trajectory
    arms: tuple[str, ...]
    seeds: tuple[int, ...]
    baseline: str
    common_random_numbers: bool
    outcomes: tuple[str, ...] = OUTCOMES
    #: with ``counterfactual(..., posterior=...)``: the same arms and seeds at the point estimate
    fixed_parameters: Optional["CounterfactualResult"] = None

    @property
    def headline(self) -> str:
        """The outcome differences are reported on by default: adjusted reach when tabulated, else
        the first outcome."""
        adjusted = f"{self.outcomes[0]}_adjusted"
        return adjusted if adjusted in self.outcomes else self.outcomes[0]

    def summary(self, level: float = 0.9):
        """Per arm: mean and the central ``level`` band over seeds of each outcome."""
        import pandas as pd

        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        rows = []
        for arm in self.arms:
            part = self.table[self.table.arm == arm]
            row = {"arm": arm}
            for name in self.outcomes:
                values = part[name].to_numpy(dtype=float)
                row[name] = float(values.mean())
                row[f"{name}_lo"] = float(np.quantile(values, lo))
                row[f"{name}_hi"] = float(np.quantile(values, hi))
            rows.append(row)
        return pd.DataFrame(rows)

    def differences(self, outcome: Optional[str] = None, *, level: float = 0.9, resamples: int = 4000,
                    seed: int = 0):
        """Mean difference of ``outcome`` between each arm and the baseline, with a bootstrap interval.

        Paired (per-seed differences resampled together) under common random numbers; otherwise
        the two arms' seeds are resampled independently. The interval is BCa
        (:func:`lpm.uncertainty.difference_interval`). ``outcome`` defaults to :attr:`headline`.
        """
        import pandas as pd

        outcome = self.headline if outcome is None else outcome
        if outcome not in self.outcomes:
            raise ConfigError(f"Expected an outcome in {self.outcomes} (got {outcome!r})")
        rng = np.random.default_rng(seed)
        base = self._values(self.baseline, outcome)
        rows = []
        for arm in self.arms:
            values = self._values(arm, outcome)
            low, high = difference_interval(values, base, paired=self.common_random_numbers, level=level,
                                            resamples=resamples, rng=rng)
            rows.append({"arm": arm, "outcome": outcome, "difference": float(values.mean() - base.mean()),
                         "lo": float(low), "hi": float(high), "width": float(high - low)})
        return pd.DataFrame(rows)

    def pairing(self, outcome: Optional[str] = None):
        """How much pairing narrowed each arm's difference interval, and how much any pairing could.

        Per arm (baseline excluded): the seed-to-seed standard deviations of the arm and the
        baseline, their correlation across paired seeds, the standard deviation of the paired
        differences, and two width ratios of the difference's interval:

        * ``gain``: independent seeds over these runs, ``sqrt(var_a + var_b) / sd(a - b)``; with
          common random numbers, what the pairing bought (1 without it, in expectation).
        * ``bound``: the most any coupling of the same two marginal laws can give,
          ``sqrt(var_a + var_b) / |sd_a - sd_b|``, since ``Var(a - b) >= (sd_a - sd_b)^2`` for any
          correlation (Cauchy-Schwarz). An arm that removes most of the baseline's seed-to-seed
          variation (a strong, early intervention that stops the rumour's take-offs) has a bound
          near 1: its effect genuinely differs from seed to seed, and no random-number sharing
          can narrow that.

        For an adjusted outcome (``<name>_adjusted``) also ``gain_over_raw``: independent seeds on
        the unadjusted outcome over these runs, what pairing and the control variates bought together.

        ``outcome`` defaults to :attr:`headline`. Needs at least 3 seeds. Returns a DataFrame with
        columns ``arm``, ``outcome``, ``sd_arm``, ``sd_baseline``, ``correlation``,
        ``sd_difference``, ``gain``, ``bound`` (and ``gain_over_raw``).
        """
        import pandas as pd

        outcome = self.headline if outcome is None else outcome
        if outcome not in self.outcomes:
            raise ConfigError(f"Expected an outcome in {self.outcomes} (got {outcome!r})")
        if len(self.seeds) < 3:
            raise ConfigError(f"Expected at least 3 seeds to estimate spreads (got {len(self.seeds)})")
        raw = outcome[: -len("_adjusted")] if outcome.endswith("_adjusted") else None
        raw = raw if raw in self.outcomes else None
        base = self._values(self.baseline, outcome)
        rows = []
        for arm in self.arms:
            if arm == self.baseline:
                continue
            values = self._values(arm, outcome)
            sd_arm, sd_base = values.std(ddof=1), base.std(ddof=1)
            sd_diff = (values - base).std(ddof=1)
            independent = math.hypot(sd_arm, sd_base)
            spread = sd_arm * sd_base
            row = {"arm": arm, "outcome": outcome, "sd_arm": float(sd_arm), "sd_baseline": float(sd_base),
                   "correlation": float(np.corrcoef(values, base)[0, 1]) if spread > 0 else float("nan"),
                   "sd_difference": float(sd_diff),
                   "gain": _ratio(independent, sd_diff),
                   "bound": _ratio(independent, abs(sd_arm - sd_base))}
            if raw is not None:
                row["gain_over_raw"] = _ratio(math.hypot(self._values(arm, raw).std(ddof=1),
                                                         self._values(self.baseline, raw).std(ddof=1)), sd_diff)
            rows.append(row)
        return pd.DataFrame(rows)

    def _values(self, arm: str, outcome: str) -> np.ndarray:
        part = self.table[self.table.arm == arm].sort_values("seed")
        return part[outcome].to_numpy(dtype=float)

    def to_parquet(self, path: str | os.PathLike) -> Path:
        """Write the per-(arm, seed) table atomically."""
        from lpm.io_atomic import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            self.table.to_parquet(tmp, index=False)
        return path

    def figure(self, outcome: Optional[str] = None, *, scenario: str = "", level: float = 0.9):
        """The headline figure: each arm's paired difference of ``outcome`` (default :attr:`headline`)
        from the baseline with its ``level`` interval, as :meth:`differences` gives it, beside the
        arms' mean curves over time (:func:`lpm.plots.counterfactual_figure`). Returns a
        :class:`matplotlib.figure.Figure`; the matplotlib backend is left alone."""
        from lpm.plots import counterfactual_figure  # matplotlib is loaded only when drawing

        return counterfactual_figure(self, outcome, scenario=scenario, level=level)

    def plot(self, path: str | os.PathLike, outcome: Optional[str] = None, *, scenario: str = "") -> Path:
        """Write :meth:`figure` to ``path`` (a PNG, atomically)."""
        from lpm.plots import save_figure

        return save_figure(self.figure(outcome, scenario=scenario), path)


def counterfactual(
    model: Model,
    population: PopulationState,
    graph: Graph,
    arms: Mapping[str, Sequence[Intervention]],
    *,
    steps: int,
    seeds: int | Sequence[int] = 16,
    device: str | torch.device = "cpu",
    item: int = 0,
    baseline: Optional[str] = None,
    common_random_numbers: bool = True,
    estimator: Estimator = Hard(),
    record: Optional[Mapping[str, Observable]] = None,
    chunk: Optional[int] = None,
    progress: bool = False,
    posterior: Optional[ParameterDraws] = None,
    posterior_seed: int = 0,
    executor: Optional[Executor] = None,
) -> CounterfactualResult:
    """Run every arm under every seed, arms x seeds as the batch, and tabulate the outcomes for ``item``.

    Args:
        model: the dynamics; its own interventions (if any) apply to all arms. With a cascade, the
            outcomes are cascade outcomes of ``item``; without, summaries of ``record``.
            Its modules are moved to ``device`` and the population's dtype.
        population: the initial state of one scenario (``B = 1``).
        graph: the follower graph.
        arms: ``{name: [interventions]}``; ``[]`` is the do-nothing arm. Interventions are copied.
        steps: simulated steps.
        seeds: how many seeds (``0..S-1``) or the seeds themselves.
        device: where to run.
        item: the item whose cascade is measured.
        baseline: the arm differences are taken against (default: the first arm).
        common_random_numbers: give every arm the same seeds (paired runs).
        estimator: how events are drawn (exact by default; pass a relaxed one for gradients).
        record: for models without a cascade, the scalar observables whose final, mean, peak and
            peak time become the outcomes (default: negative share and posts).
        chunk: at most this many scenarios (arms x seeds) per batch; whole arms go together, so it
            must be at least the number of seeds. Default: one batch on a GPU; on the CPU, batches
            of whole arms holding at most :data:`CPU_BATCH_AGENTS` agents x scenarios (see there).
            A batch of B scenarios equals B single runs, so batching changes speed and memory,
            never the numbers.
        progress: show a progress bar (one per batch).
        posterior: parameter uncertainty (:class:`lpm.uncertainty.ParameterDraws`, e.g. a fit's
            :func:`lpm.calibration.posterior.load_posterior`): seed ``s`` of every arm runs under
            posterior draw ``s`` (``posterior_seed`` seeds the draws), so intervals include what the
            data leave uncertain about the parameters; the same seeds at the model's own parameters
            are kept in ``fixed_parameters`` (:func:`lpm.uncertainty.interval_widening` compares them).
        executor: where the batches run (:mod:`lpm.executor`): here (default) or on Ray workers
            (:class:`lpm.executor.RayExecutor`), one task per batch (``chunk`` sets the batches); the
            numbers do not depend on it. A remote executor needs an exact run or gradients off.

    Returns:
        A :class:`CounterfactualResult`.

    Raises:
        ConfigError: no arms, an unknown baseline, a population with B != 1, a ``chunk`` below
            the number of seeds, or a remote executor for a run that records gradients.
    """
    has_cascade = getattr(model, "cascade", None) is not None
    if not arms:
        raise ConfigError("Expected at least one arm (got none)")
    names = tuple(arms)
    baseline = names[0] if baseline is None else baseline
    if baseline not in arms:
        raise ConfigError(f"Expected the baseline to be one of the arms {list(names)} (got {baseline!r})")
    if population.batch_size != 1:
        raise ConfigError(f"Expected a population of one scenario (got batch size {population.batch_size})")
    seed_list = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if len(seed_list) < 2:
        raise ConfigError(f"Expected at least 2 seeds for intervals (got {len(seed_list)})")
    if has_cascade and not 0 <= item < model.cascade.num_items:
        raise ConfigError(f"Expected an item index in [0, {model.cascade.num_items}) (got {item})")
    for name in names:
        for intervention in arms[name]:
            if not isinstance(intervention, Intervention):
                raise ConfigError(f"Expected interventions in arm {name!r} (got {type(intervention).__name__})")
    device = torch.device(device)
    executor = resolve_executor(executor)
    grad = torch.is_grad_enabled() and not isinstance(estimator, Hard)
    if executor.remote and grad:
        raise ConfigError(f"Expected an exact run (estimator Hard) or gradients off for the remote executor "
                          f"{executor!r} (got {type(estimator).__name__} with gradients on: they cannot cross processes)")
    groups = arm_batches(len(names), len(seed_list), population.num_agents, device, chunk)
    options = dict(steps=steps, device=task_device(executor, device), item=item,
                   common_random_numbers=common_random_numbers, estimator=estimator, record=record,
                   progress=progress and not executor.remote, grad=grad,
                   # several batches on a GPU: keep only one batch's tensors there
                   to_cpu=device.type != "cpu" and (executor.remote or len(groups) > 1 or posterior is not None))

    def run_batches(models: Sequence[Model], tasks: Sequence[tuple[int, range, tuple[int, ...]]]):
        return executor.map(_batch_task, tasks, shared=(tuple(models), population, graph, arms, names, options),
                            device=device)

    parts = run_batches([model], [(0, group, seed_list) for group in groups])
    result = dataclasses.replace(parts[0], baseline=baseline) if len(parts) == 1 else _merge(parts, baseline)
    if posterior is None:
        return result
    drawn = run_with_draws(run_batches, _merge, model, names, seed_list, posterior, posterior_seed,
                           lambda num_seeds: arm_batches(len(names), num_seeds, population.num_agents, device, chunk))
    return dataclasses.replace(drawn, baseline=baseline, fixed_parameters=result)


#: Agents x scenarios per batch on the CPU when no ``chunk`` is given. A step's temporaries are
#: ``(B, N, C)`` tensors; above glibc's mmap threshold (32 MB at most) each one is a fresh mapping
#: whose pages the kernel zeroes again on first touch. Measured (misinformation arms, 10^5 agents,
#: 16 seeds, 72 steps, 2-core CPU): batches of 16 / 32 / 64 / 176 scenarios took 115 / 109 / 108 /
#: 258 s in all. 2^22 keeps float32 ``(B, N, 1)`` tensors at 16 MB, clear of the threshold.
CPU_BATCH_AGENTS = 1 << 22


def arm_batches(num_arms: int, num_seeds: int, num_agents: int, device: torch.device,
                chunk: Optional[int] = None) -> list[range]:
    """The arm indices run together in each batch (see ``chunk`` in :func:`counterfactual`).

    Raises:
        ConfigError: a ``chunk`` that is not an int of at least ``num_seeds``.
    """
    if chunk is not None:
        check_chunk(chunk, num_seeds)
        per_batch = chunk // num_seeds
    elif torch.device(device).type == "cpu":
        per_batch = max(1, CPU_BATCH_AGENTS // max(1, num_agents * num_seeds))
    else:
        per_batch = num_arms
    return [range(lo, min(lo + per_batch, num_arms)) for lo in range(0, num_arms, per_batch)]


def check_chunk(chunk: Optional[int], num_seeds: int) -> None:
    """Raise :class:`ConfigError` unless ``chunk`` is ``None`` or an int of at least ``num_seeds``
    (a batch holds whole arms)."""
    if chunk is not None and (isinstance(chunk, bool) or not (isinstance(chunk, int) and chunk >= num_seeds)):
        raise ConfigError(f"Expected chunk (scenarios per batch) to be an int >= the {num_seeds} seeds of "
                          f"an arm (got {chunk!r})")


def _batch_task(models: tuple[Model, ...], population: PopulationState, graph: Graph,
                arms: Mapping[str, Sequence[Intervention]], names: tuple[str, ...], options: Mapping[str, object],
                task: tuple[int, range, tuple[int, ...]]) -> CounterfactualResult:
    """One batch as an executor runs it: ``task = (model index, arm indices, seeds)``."""
    options = dict(options)
    to_cpu = options.pop("to_cpu")
    index, group, seeds = task
    with torch.set_grad_enabled(options.pop("grad")):  # a worker's own grad mode is its default
        part = _run_batch(models[index], population, graph, arms, names, group, seeds, **options)
    return _to_cpu(part) if to_cpu else part


def _run_batch(model: Model, population: PopulationState, graph: Graph, arms: Mapping[str, Sequence[Intervention]],
               names: tuple[str, ...], group: range, seed_list: tuple[int, ...], *, steps: int, device: torch.device,
               item: int, common_random_numbers: bool, estimator: Estimator,
               record: Optional[Mapping[str, Observable]], progress: bool) -> CounterfactualResult:
    """The arms ``names[group]`` x seeds as one batch (arm indices are global, so are the seeds)."""
    import pandas as pd

    from lpm.metrics import cascade_depth

    has_cascade = getattr(model, "cascade", None) is not None
    group_names = tuple(names[a] for a in group)
    n_arms, n_seeds = len(group_names), len(seed_list)
    batch = n_arms * n_seeds

    planned = list(model.interventions.interventions) if model.interventions is not None else []
    for k, name in enumerate(group_names):
        mask = torch.zeros(batch, dtype=torch.bool)
        mask[k * n_seeds:(k + 1) * n_seeds] = True
        for intervention in arms[name]:
            planned.append(copy.deepcopy(intervention).restricted_to(mask))
    # A new Model around the same dynamics modules (shared parameters, so gradients reach them).
    arm_model = model.with_interventions(InterventionPlan(planned)).to(device=device, dtype=population.opinion.dtype)

    if common_random_numbers:
        scenario_seeds = [s for _ in group for s in seed_list]
    else:
        scenario_seeds = [s + 1_000_003 * (a + 1) for a in group for s in seed_list]
    state = population.to(device).expand_batch(batch)
    record = {"reshares": reshares} if has_cascade else dict(record or SCALAR)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not isinstance(estimator, Hard)):
        trajectory = simulate(arm_model, state, graph.to(device), steps=steps, seed=scenario_seeds,
                              record=record, estimator=estimator, progress=progress)
    if not has_cascade:
        table = _observable_outcomes(trajectory, group_names, seed_list)
        outcomes = tuple(c for c in table.columns if c not in ("arm", "seed"))
        return CounterfactualResult(table=table, trajectory=trajectory, arms=group_names, seeds=seed_list,
                                    baseline=group_names[0], common_random_numbers=common_random_numbers, outcomes=outcomes)
    final = trajectory.final
    reach = (final.exposures[..., item].detach() > 0).sum(1).cpu().numpy()
    resh = final.reshared[..., item].detach().sum(1).cpu().numpy()
    curve = trajectory["reshares"][..., item].detach().cpu()  # (S, B), cumulative
    half = trajectory.times_h[(curve >= 0.5 * curve[-1]).to(torch.uint8).argmax(0)].numpy()  # first such step
    depth = cascade_depth(final.parent[..., item:item + 1].cpu(), final.reshare_time[..., item:item + 1].detach().cpu())
    max_depth = depth.amax(dim=(1, 2)).clamp_min(0).numpy()
    table = pd.DataFrame({
        "arm": np.repeat(np.array(group_names, dtype=object), n_seeds),
        "seed": np.tile(np.array(seed_list), n_arms),
        "final_reach": reach.astype(float),
        "final_reshares": resh.astype(float),
        "half_time_h": half.astype(float),
        "max_depth": max_depth.astype(float),
    })
    outcomes = OUTCOMES
    if isinstance(arm_model.cascade, Cascade) and isinstance(estimator, Hard):
        rng = CounterRNG.from_seed(scenario_seeds, batch, device)
        graph = graph.to(device)
        with torch.no_grad():  # a post-processing of the exact run: no gradient
            reach_control, reshare_control = martingale_controls(
                arm_model.cascade, final, graph, rng, arm_model.dt,
                lambda time_h: arm_model.effects(final, graph, time_h).edge_scale)
        table["final_reach_adjusted"] = reach - reach_control[:, item].cpu().numpy()
        table["final_reshares_adjusted"] = resh - reshare_control[:, item].cpu().numpy()
        outcomes = OUTCOMES + ADJUSTED
    return CounterfactualResult(table=table, trajectory=trajectory, arms=group_names, seeds=seed_list,
                                baseline=group_names[0], common_random_numbers=common_random_numbers, outcomes=outcomes)


def _merge(parts: list[CounterfactualResult], baseline: str) -> CounterfactualResult:
    """One result from results over disjoint arms with the same seeds (batches concatenated in order)."""
    import pandas as pd

    first = parts[0]
    trajectory = Trajectory(
        times_h=first.trajectory.times_h,
        values={name: torch.cat([p.trajectory.values[name] for p in parts], dim=1) for name in first.trajectory.values},
        final=PopulationState.from_flat([torch.cat(tensors, dim=0)
                                         for tensors in zip(*(p.trajectory.final.flat() for p in parts))],
                                        like=first.trajectory.final),
        dt=first.trajectory.dt,
    )
    return dataclasses.replace(first, table=pd.concat([p.table for p in parts], ignore_index=True),
                               trajectory=trajectory, arms=tuple(a for p in parts for a in p.arms), baseline=baseline)


def _to_cpu(result: CounterfactualResult) -> CounterfactualResult:
    t = result.trajectory
    trajectory = Trajectory(times_h=t.times_h, values={k: v.cpu() for k, v in t.values.items()},
                            final=t.final.to("cpu"), dt=t.dt)
    return dataclasses.replace(result, trajectory=trajectory)
