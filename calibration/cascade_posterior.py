"""Posterior of the cascade parameters: a Laplace approximation of a bias-corrected synthetic likelihood.

Statistics (``K = T + 3`` of them, over the reading times ``T`` up to the fit horizon, and ``T + 4``
when the fit follows depth): the mean log cascade size at each reading time, the SD of the log size
at the last one, the mean and SD across cascades of the share of reshares attached to the root, and
the mean share one level further down (depth 2), all over the fit horizon's window. The model's statistics come from
the mean-field dynamics (differentiable, deterministic under fixed seeds) plus a correction ``b``
for the mean field's bias, ``b = E_exact[s] - s_meanfield`` at the current estimate, estimated from
exact (sampled) cascades and re-estimated each round, so the mode is the exact model's (the same
indirect-inference idea as :func:`lpm.calibration.fit_cascades.correct_bias`).

Noise of ``s_obs - s(z)`` (all estimated, never assumed): the observed statistics' bootstrap
covariance over cascades, the mean-field statistics' covariance over simulation seeds, and the
bias estimate's bootstrap covariance over the exact cascades.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import torch
from torch import Tensor

from lpm.calibration.cascade_world import _RAW, LEVEL_RECORD, RECORD, simulate_cascades
from lpm.calibration.posterior import GaussianPosterior, gauss_newton, statistics_noise
from lpm.errors import ConfigError
from lpm.executor import Executor, resolve_executor
from lpm.simulate import simulate
from lpm.targets import CascadeTargets, cascade_targets

if TYPE_CHECKING:  # the fit module imports this one to write a posterior beside its fit
    from lpm.calibration.fit_cascades import CascadeCalibration

__all__ = ["TRANSFORM_OF", "fit_statistics", "observed_statistics", "cascade_posterior"]

#: the constraint of each cascade parameter (see ``cascade_world._RAW``)
TRANSFORM_OF = {"transmissibility": "logit", "audience": "log", "audience_spread": "softplus", "attention": "logit",
                "attention_spread": "softplus", "feed_half_life_h": "softplus", "feed_tail": "softplus1",
                "resharer_audience": "log", "resharer_audience_spread": "softplus",
                "resharer_item_spread": "softplus", "first_level_audience_ratio": "log",
                "feed_item_spread": "softplus", "resharer_half_life_h": "softplus"}


def fit_statistics(size: Tensor, root_share: Tensor, second_share: Optional[Tensor] = None) -> Tensor:
    """``(T + 3,)`` statistics of ``M`` cascades: mean log size per reading time, SD of the last log
    size, mean and SD of the root share (cascades without reshares count as all-root, as one
    reshare would be); with ``second_share``, ``(T + 4,)``: its mean too (no reshares: none at depth 2).

    Shapes:
        size: ``(M, T)`` sizes at the reading times; root_share, second_share: ``(M,)``.
    """
    log_size = size.clamp_min(1.0).log()
    root_share = root_share.nan_to_num(1.0)
    parts = [log_size.mean(0), log_size[:, -1].std().reshape(1), root_share.mean().reshape(1),
             root_share.std().reshape(1)]
    if second_share is not None:
        parts.append(second_share.nan_to_num(0.0).mean().reshape(1))
    return torch.cat(parts)


def _second_share(targets: CascadeTargets) -> Tensor:
    """``(M,)`` each cascade's share of reshares at depth 2 (NaN for a lone root)."""
    profile = targets.depth_profile
    if profile is None:
        raise ConfigError("Expected cascade targets with a depth profile for the depth-2 statistic (got none)")
    profile = profile.double()
    return profile[:, 1] / profile.sum(1)


def observed_statistics(observed: CascadeTargets, draws: int = 200, seed: int = 0,
                        depth: bool = False) -> tuple[Tensor, Tensor]:
    """Statistics of observed cascades and their ``(K, K)`` bootstrap covariance over cascades
    (``depth``: with the depth-2 share)."""
    second = _second_share(observed) if depth else None
    stats = fit_statistics(observed.size.double(), observed.root_share.double(), second)
    generator = torch.Generator().manual_seed(seed)
    m = observed.num_cascades
    replicates = []
    for _ in range(draws):
        index = torch.randint(0, m, (m,), generator=generator)
        replicates.append(fit_statistics(observed.size[index].double(), observed.root_share[index].double(),
                                         None if second is None else second[index]))
    return stats, statistics_noise(replicates)


def _mean_field_statistics(module: "CascadeCalibration", step_seed: int) -> Tensor:
    """The statistics of the module's mean-field simulation (one seed set), differentiable."""
    state = module.world.initial_state(module.batch, module.device, module.dtype_, levels=module.levels)
    seeds = [module.seed * 7919 + step_seed * module.batch + b for b in range(module.batch)]
    trajectory = simulate(module.model, state, module.graph, steps=module.steps,
                          record=LEVEL_RECORD if module.levels else RECORD, seed=seeds, estimator=module.estimator)
    size = trajectory["size"][module.steps_at].reshape(len(module.steps_at), -1).T  # (M', T)
    direct = trajectory["direct"][1 : module.steps + 1].sum(0).reshape(-1)
    children = size[:, -1] - 1.0
    # as in the data: a cascade with no reshares has no root share; count it as all-root
    root_share = torch.where(children > 0.5, direct / children.clamp_min(1.0), torch.ones_like(children))
    second_share = None
    if module.levels:
        second = trajectory["second"][1 : module.steps + 1].sum(0).reshape(-1)
        second_share = torch.where(children > 0.5, second / children.clamp_min(1.0), torch.zeros_like(children))
    return fit_statistics(size.double(), root_share.double(), None if second_share is None else second_share.double())


def cascade_posterior(module: "CascadeCalibration", observed: CascadeTargets, *, rounds: int = 2,
                      iterations: int = 6, seed_replicates: Optional[int] = None, exact_batch: int = 8,
                      prior_sd: float = 3.0, seed: int = 0, executor: Optional[Executor] = None) -> GaussianPosterior:
    """The posterior of ``module``'s free parameters given ``observed`` (module docstring).

    Starts from the module's current parameters (a fit's point estimate) and leaves them at the
    posterior mode. ``observed`` must be read at the module's reading times (``observed.hours`` up to
    its fit horizon, so the root share covers the same window).

    Args:
        rounds: bias re-estimations; each is followed by up to ``iterations`` Gauss-Newton steps.
        seed_replicates: mean-field seed sets for the simulation noise (default ``K + 2``).
        exact_batch: scenarios of exact cascades (``exact_batch x C``) per bias estimate.
        prior_sd: SD of the Gaussian prior around the starting point, in unconstrained units.
        executor: where the seed replicates of the simulation noise run (:mod:`lpm.executor`;
            default here): they are independent simulations at the starting point, one task each,
            keyed by their replicate id, so any executor gives the same posterior. The rounds and
            their Gauss-Newton steps are sequential (each starts where the last ended) and stay here.
    """
    hours = [float(observed.hours[i]) for i in module.read]
    if len(hours) != observed.hours.numel():
        raise ConfigError(f"Expected observed targets read only up to the fit horizon {max(hours)} h "
                          f"(got readings at {observed.hours.tolist()})")
    names = [n for n in module.world.params if n not in module.fixed]
    if not names:
        raise ConfigError("Expected at least one free parameter for a posterior (got all fixed)")
    params = [getattr(module.model.cascade, _RAW[n][0]) for n in names]
    s_obs, noise_obs = observed_statistics(observed, seed=seed, depth=module.levels)
    k = s_obs.numel()

    def get() -> Tensor:
        return torch.stack([p.detach().double() for p in params])

    def put(z: Tensor) -> None:
        with torch.no_grad():
            for p, v in zip(params, z.tolist()):
                p.fill_(v)

    executor = resolve_executor(executor)
    replicates = executor.map(_replicate_statistics, [10_000 + r for r in range(seed_replicates or k + 2)],
                              shared=(module, executor.remote), device=module.device)
    noise_sim = statistics_noise(replicates)
    start = get()
    bias = torch.zeros(k, dtype=torch.float64)
    history: list[list[float]] = []
    biases: list[list[float]] = []
    for round_ in range(rounds):
        bias, noise_bias = _exact_bias(module, hours, exact_batch, seed=seed + 1 + round_)
        biases.append(bias.tolist())
        noise = noise_obs + noise_sim + noise_bias

        def statistics(jacobian: bool) -> tuple[Tensor, Optional[Tensor]]:
            if not jacobian:
                with torch.no_grad():
                    return _mean_field_statistics(module, 0) + bias, None
            s = _mean_field_statistics(module, 0)
            rows = [torch.stack([g if g is not None else torch.zeros((), dtype=s.dtype)
                                 for g in torch.autograd.grad(s[i], params, retain_graph=i < k - 1, allow_unused=True)])
                    for i in range(k)]
            return s.detach() + bias, torch.stack(rows).double()

        z, covariance, path = gauss_newton(statistics, get, put, s_obs, noise, prior_mean=start, prior_sd=prior_sd,
                                           iterations=iterations)
        history.append(path)
    fixed = {n: v for n, v in module.fitted_params().items() if n not in names}
    return GaussianPosterior("cascades", tuple(names), tuple(TRANSFORM_OF[n] for n in names), z, covariance, fixed,
                             meta={"statistics": [f"mean_log_size@{h:g}h" for h in hours]
                                   + ["sd_log_size", "root_share", "sd_root_share"]
                                   + (["depth_2_share"] if module.levels else []),
                                   "observed": s_obs.tolist(), "bias": biases, "objective": history,
                                   "noise_sd": {"observed": noise_obs.diagonal().sqrt().tolist(),
                                                "simulation": noise_sim.diagonal().sqrt().tolist()},
                                   "rounds": rounds, "prior_sd": prior_sd, "cascades": observed.num_cascades})


def _replicate_statistics(module: "CascadeCalibration", remote: bool, step_seed: int) -> Tensor:
    """One executor task: the mean-field statistics under the seeds of ``step_seed`` (on the CPU
    when they travel back from another process)."""
    with torch.no_grad():
        stats = _mean_field_statistics(module, step_seed)
    return stats.cpu() if remote else stats


def _exact_bias(module: "CascadeCalibration", hours: Sequence[float], batch: int, seed: int) -> tuple[Tensor, Tensor]:
    """``E_exact[s] - s_meanfield`` at the module's parameters, and the covariance of that estimate."""
    values = module.fitted_params()
    exact = cascade_targets(simulate_cascades(module.world, values, hours=hours, batch=batch, seed=seed,
                                              device=str(module.device)), hours)
    with torch.no_grad():
        mean_field = _mean_field_statistics(module, 0)
    exact_stats, exact_noise = observed_statistics(exact, seed=seed, depth=module.levels)
    return exact_stats - mean_field, exact_noise
