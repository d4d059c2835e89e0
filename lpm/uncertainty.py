"""Parameter uncertainty in counterfactuals: one posterior draw of the fitted parameters per seed.

Seed noise says how much an effect varies between runs of one model; a fit's posterior says how
much the model itself is uncertain. With a posterior, seed ``s`` of every arm runs under parameter
draw ``s`` (arms stay paired: same seed, same draw), so the spread over seeds of a paired
difference carries both, and :func:`interval_widening` sets it beside the run at the point estimate.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Mapping, Optional, Protocol, Sequence, runtime_checkable

import torch

from lpm.errors import ConfigError
from lpm.simulate import Trajectory
from lpm.state import PopulationState

__all__ = ["ParameterDraws", "run_with_draws", "interval_widening"]


@runtime_checkable
class ParameterDraws(Protocol):
    """A posterior over a model's parameters (e.g. :class:`lpm.calibration.posterior.GaussianPosterior`)."""

    def draw(self, count: int, seed: int = 0) -> list[dict[str, float]]:
        """``count`` parameter sets, each ``{name: value}``."""

    def apply(self, model, values: Mapping[str, float]) -> list[str]:
        """Set ``model``'s parameters to ``values`` in place; returns the names applied."""


def run_with_draws(run_batch, merge, model, names: tuple[str, ...], seed_list: tuple[int, ...],
                   posterior: ParameterDraws, posterior_seed: int, groups_of):
    """The counterfactual with seed ``s`` under posterior draw ``s`` (see the module docstring).

    ``run_batch(model, group, seeds)`` runs arms ``names[group]`` under ``seeds`` (one
    :class:`~lpm.counterfactual.CounterfactualResult`), ``merge(parts, baseline)`` joins results over
    disjoint arms, ``groups_of(num_seeds)`` cuts the arms into batches. Returns one result over all
    arms and seeds, scenario ``a * S + s`` as without a posterior.
    """
    import pandas as pd

    if not isinstance(posterior, ParameterDraws):
        raise ConfigError(f"Expected a posterior with draw(count, seed) and apply(model, values) "
                          f"(got {type(posterior).__name__})")
    draws = posterior.draw(len(seed_list), posterior_seed)
    per_seed = []
    for seed, values in zip(seed_list, draws):
        drawn = copy.deepcopy(model)
        posterior.apply(drawn, values)
        parts = [run_batch(drawn, group, (seed,)) for group in groups_of(1)]
        per_seed.append(parts[0] if len(parts) == 1 else merge(parts, names[0]))
    first = per_seed[0]

    def arms_major(tensors: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
        # each part holds one seed of every arm along ``dim``: interleave to arm-major, seed-minor
        stacked = torch.stack(list(tensors), dim=dim + 1)  # (..., A, S, ...)
        return stacked.flatten(dim, dim + 1)

    trajectory = Trajectory(
        times_h=first.trajectory.times_h,
        values={k: arms_major([p.trajectory.values[k] for p in per_seed], 1) for k in first.trajectory.values},
        final=PopulationState.from_flat([arms_major(list(ts), 0)
                                         for ts in zip(*(p.trajectory.final.flat() for p in per_seed))],
                                        like=first.trajectory.final),
        dt=first.trajectory.dt)
    table = pd.concat([p.table for p in per_seed], ignore_index=True)
    order = {a: i for i, a in enumerate(names)}
    table = table.sort_values(["arm", "seed"], key=lambda c: c.map(order) if c.name == "arm" else c,
                              kind="stable").reset_index(drop=True)
    return dataclasses.replace(first, table=table, trajectory=trajectory, arms=names, seeds=seed_list)


def interval_widening(result, outcome: Optional[str] = None, level: float = 0.9):
    """Per arm: the paired difference and its interval with parameter uncertainty (posterior draws)
    and without (the point estimate, same seeds), and how many times wider the interval gets.

    Raises:
        ConfigError: ``result`` was not run with a posterior.
    """
    fixed = getattr(result, "fixed_parameters", None)
    if fixed is None:
        raise ConfigError("Expected a counterfactual run with posterior=... (got one without parameter draws)")
    with_draws = result.differences(outcome, level=level).set_index("arm")
    point = fixed.differences(outcome, level=level).set_index("arm")
    table = with_draws[["difference", "lo", "hi"]].merge(point[["difference", "lo", "hi"]], left_index=True,
                                                          right_index=True, suffixes=("", "_point_estimate"))
    width = table["hi"] - table["lo"]
    width_point = table["hi_point_estimate"] - table["lo_point_estimate"]
    table["widening"] = width / width_point.where(width_point > 0)
    return table.reset_index()
