"""Forecasting a cascade's size from its first hour with the fitted simulator, post-processed
(EMOS) and scored beside regressions that use no simulation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from lpm.calibration.cascade_world import RECORD, load_cascades, world_from_meta
from lpm.calibration.common import load_params
from lpm.calibration.posterior import GaussianPosterior
from lpm.data.cascades import CascadeTable
from lpm.errors import ConfigError
from lpm.executor import Executor, resolve_executor, task_device
from lpm.graph import Graph
from lpm.relax import Hard
from lpm.simulate import simulate
from lpm.targets import cascade_targets

__all__ = ["forecast"]


def _first_hour_features(size_at: Tensor, root_share: Tensor) -> Tensor:
    """``(M, F)`` features of a cascade's first hour: log sizes at the observation times, and how much
    of it hangs off the root (scaled to weigh like one log-size step)."""
    return torch.cat([size_at.clamp_min(1.0).log(), 2.0 * root_share.nan_to_num(1.0)[:, None]], 1)


def _observed_prefix(table: CascadeTable, observe_hours: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Sizes ``(M, K)`` at the observation times and the root share ``(M,)`` of the observed prefix."""
    targets = cascade_targets(table, observe_hours)
    t_obs = max(observe_hours)
    seen = (table.time_h <= t_obs) & (table.parent >= 0)
    children = torch.bincount(table.cascade[seen], minlength=table.num_cascades).double()
    on_root = torch.bincount(table.cascade[seen & (table.depth == 1)], minlength=table.num_cascades).double()
    return targets.size, on_root / children.clamp_min(1.0)


def _whole_multiple(numerator: float, denominator: float) -> bool:
    ratio = numerator / denominator
    return round(ratio) >= 1 and abs(ratio - round(ratio)) < 1e-6


def _reading_grid(observe_h: float, reading_h: float, dt_h: float) -> list[float]:
    """The observation times ``reading_h, 2 reading_h, ..., observe_h``: a grid of the data, not of
    the model, so the first-hour regressions are the same whichever step the fit used."""
    if not (isinstance(reading_h, (int, float)) and math.isfinite(reading_h) and reading_h > 0):
        raise ConfigError(f"Expected reading_h (hours between first-hour readings) > 0 (got {reading_h!r})")
    if not _whole_multiple(reading_h, dt_h):
        raise ConfigError(f"Expected reading_h ({reading_h:.6g} h) to be a whole number of the fitted world's "
                          f"steps (dt_h = {dt_h:.6g} h)")
    if not _whole_multiple(observe_h, reading_h):
        raise ConfigError(f"Expected observe_h ({observe_h:.6g} h) to be a whole number of readings "
                          f"(reading_h = {reading_h:.6g} h)")
    return [reading_h * k for k in range(1, round(observe_h / reading_h) + 1)]


def _features_design(size_at: Tensor, root_share: Tensor) -> Tensor:
    """``(M, 1 + F)`` design of the regression on first-hour features alone: an intercept and the features."""
    return torch.cat([torch.ones_like(root_share)[:, None], _first_hour_features(size_at, root_share)], 1)


def _emos_design(size_at: Tensor, root_share: Tensor, growth_quantiles: Tensor) -> Tensor:
    """``(M, 3 + F)`` EMOS design: :func:`_features_design`'s columns, then the ensemble's median growth
    and its 10-90% spread (``growth_quantiles``: ``(3, M)`` 10/50/90% quantiles). Nested in the features
    regression, so what EMOS gains over it is what the simulations add."""
    q = growth_quantiles
    return torch.cat([_features_design(size_at, root_share), q[1][:, None], (q[2] - q[0])[:, None]], 1)


def _nearest_growth(features: Tensor, ensemble_features: Tensor, growth: Tensor, neighbours: int) -> Tensor:
    """``(M, k)`` growth after the observation window of the ``k`` ensemble members whose first-hour
    features are nearest each cascade's (approximate Bayesian computation by nearest neighbours)."""
    distance = torch.cdist(features, ensemble_features)  # (M, R)
    nearest = distance.topk(min(neighbours, distance.size(1)), largest=False).indices
    return growth[nearest]


def _ensemble_task(world, parameter_sets: tuple[dict[str, float], ...], graph: Graph, steps: int, observed: int,
                   seed: int, device: torch.device, task: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """Scenarios ``lo..hi-1`` of the ensemble under ``parameter_sets[k]`` (``task = (k, lo, hi)``):
    cumulative sizes ``(R, S+1)`` and direct reshares up to step ``observed`` ``(R,)``, R = scenarios x items."""
    k, lo, hi = task
    model = world.model(parameter_sets[k]).to(device)
    model.cascade.record_trees = False
    with torch.no_grad():
        trajectory = simulate(model, world.initial_state(hi - lo, device), graph.to(device), steps=steps, record=RECORD,
                              seed=[seed * 1_000_003 + 17 + b for b in range(lo, hi)], estimator=Hard())
    return (trajectory["size"].reshape(steps + 1, -1).T.double().cpu(),
            trajectory["direct"][1:observed + 1].sum(0).reshape(-1).double().cpu())


def forecast(params: Path, data: list[Path], *, observe_h: float = 1.0, horizon_h: float = 72.0,
             split: str = "test", batch: int = 24, neighbours: int = 32, device: str = "cpu",
             seed: int = 0, postprocess: str = "emos", posterior: Optional[GaussianPosterior] = None,
             draws: int = 8, chunk: Optional[int] = None, executor: Optional[Executor] = None,
             reading_h: float = 1 / 6) -> dict[str, float]:
    """Forecast each cascade's size at ``horizon_h`` from its first ``observe_h`` hours.

    The fitted model is conditioned on the observed prefix by simulation (approximate Bayesian
    computation): an ensemble of ``batch x C`` cascades is simulated on the device to the horizon;
    for each observed cascade the ``neighbours`` ensemble members whose prefix (log sizes every
    ``reading_h`` up to ``observe_h`` and the share attached to the root) is closest are kept, and each
    contributes the growth it had after ``observe_h``, ``log S(horizon) - log S(observe_h)``, on top
    of the observed size: the model's forecast distribution.

    ``postprocess="emos"`` (default) calibrates that distribution on the training cascades, as
    weather centres post-process their ensembles (ensemble model output statistics, Gneiting et al.
    2005, Mon. Weather Rev. 133): ``log S(horizon)`` is regressed on the first-hour features (log
    sizes every ``reading_h`` up to ``observe_h``, the root share), the ensemble's median growth and the
    ensemble's spread (its 10-90% range of growth) over the training cascades, and the 80% interval
    is the forecast plus the 10% and 90% quantiles of the training residuals, widened in proportion
    to the ensemble spread. This removes the model's systematic errors (e.g. growth too concentrated
    in the first hour) while keeping what its simulated cascades know beyond the first-hour
    features. ``"none"`` reports the ensemble as it is. Both sets of metrics are returned
    (``model_*``: the ensemble before post-processing).

    The baseline regresses ``log S(horizon)`` on ``log S(observe_h)`` over the same training
    cascades (Szabo & Huberman 2010).

    A stronger baseline regresses on every first-hour feature the ensemble is conditioned on
    (``features_baseline_rmsle_size``). EMOS uses the same features and adds the ensemble's two
    statistics, so its gain over that regression is what the simulated cascades add.

    ``posterior`` (the fit's :class:`~lpm.calibration.posterior.GaussianPosterior`): the ensemble's
    scenarios are split among ``draws`` parameter sets drawn from it, so intervals include parameter
    uncertainty; without it every scenario runs at the point estimate.

    ``reading_h``: the first hour is read on this fixed grid (default every 10 minutes), whatever the
    fitted world's step, so the regressions the forecast is compared with do not change with the
    model; it must be a whole number of the world's steps and divide ``observe_h``.

    ``chunk``: at most this many scenarios per simulated batch (default: one batch per parameter
    set); ``executor``: where the batches run (:mod:`lpm.executor`; default here). Each scenario's
    seed is fixed by its place in the ensemble, so neither changes the forecast.

    Returns:
        ``rmsle_size``, ``medape_size``, ``coverage80``, ``model_rmsle_size``, ``model_medape_size``,
        ``model_coverage80``, ``baseline_rmsle_size``, ``baseline_medape_size``,
        ``features_baseline_rmsle_size``, ``rmsle_minus_baseline_lo`` / ``_hi`` (90% paired bootstrap
        interval over cascades of ``rmsle_size - baseline_rmsle_size``), ``rmsle_minus_features_lo`` /
        ``_hi`` (the same against ``features_baseline_rmsle_size``), ``cascades``, ``ensemble``.
    """
    if not 0 < observe_h < horizon_h:
        raise ConfigError(f"Expected 0 < observe_h < horizon_h (got {observe_h}, {horizon_h})")
    if postprocess not in ("emos", "none"):
        raise ConfigError(f"Expected postprocess 'emos' or 'none' (got {postprocess!r})")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ConfigError(f"Expected chunk (scenarios per batch) to be None or an int >= 1 (got {chunk!r})")
    values, meta = load_params(params, kind="cascades")
    world = world_from_meta(meta)
    observe_hours = _reading_grid(observe_h, reading_h, world.dt_h)
    window = max(horizon_h, 72.0)

    def prefix_and_outcome(part: str) -> tuple[Tensor, Tensor, Tensor]:
        table = load_cascades(data, split=part, window_h=window)
        size_at, root_share = _observed_prefix(table, observe_hours)
        final = cascade_targets(table, [horizon_h]).size[:, 0]
        return size_at.double(), root_share.double(), final.double()

    test_size, test_root, test_final = prefix_and_outcome(split)
    train_size, train_root, train_final = prefix_and_outcome("train")

    # the ensemble: sizes every step and root attachment, from the fitted model
    graph = world.graph(device)
    steps = math.ceil(horizon_h / world.dt_h)
    at = [round(h / world.dt_h) for h in observe_hours]
    # without a posterior one parameter set runs all scenarios; with one, each of `draws` parameter
    # draws runs its share of them, so the ensemble carries what the fit leaves uncertain
    parameter_sets = [dict(values)] if posterior is None else posterior.draw(min(draws, batch), seed)
    shares = [len(part) for part in torch.arange(batch).tensor_split(len(parameter_sets))]
    tasks, first = [], 0  # (parameter set, first scenario, end): scenario b runs under its own seed
    for k, share in enumerate(shares):
        per = share if chunk is None else chunk
        tasks.extend((k, lo, min(lo + per, first + share)) for lo in range(first, first + share, per))
        first += share
    executor = resolve_executor(executor)
    parts = executor.map(_ensemble_task, tasks, shared=(world, tuple(parameter_sets), graph, steps, at[-1], seed,
                                                        task_device(executor, device)), device=device)
    sizes_parts, direct_parts = [p[0] for p in parts], [p[1] for p in parts]
    sizes, direct = torch.cat(sizes_parts), torch.cat(direct_parts)
    ensemble_root = direct / (sizes[:, at[-1]] - 1).clamp_min(1.0)
    ensemble_features = _first_hour_features(sizes[:, at], ensemble_root)
    growth = sizes[:, -1].clamp_min(1.0).log() - sizes[:, at[-1]].clamp_min(1.0).log()  # (R,)
    levels = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)

    def model_forecast(size_at: Tensor, root: Tensor) -> tuple[Tensor, Tensor]:
        """log observed size, and the ensemble's 10/50/90% growth quantiles ``(3, M)``."""
        grown = _nearest_growth(_first_hour_features(size_at, root), ensemble_features, growth, neighbours)
        return size_at[:, -1].clamp_min(1.0).log(), torch.quantile(grown, levels, dim=1)

    log_obs, q = model_forecast(test_size, test_root)
    truth = test_final
    metrics: dict[str, float] = {}

    def squared_log_errors(prediction: Tensor) -> Tensor:
        return (prediction.log1p() - truth.log1p()) ** 2

    def score(prefix: str, log_median: Tensor, log_low: Tensor, log_high: Tensor) -> None:
        median = log_median.exp()
        metrics[f"{prefix}rmsle_size"] = float(squared_log_errors(median).mean().sqrt())
        metrics[f"{prefix}medape_size"] = float(((median - truth).abs() / truth).median())
        metrics[f"{prefix}coverage80"] = float(((truth >= log_low.exp()) & (truth <= log_high.exp())).double().mean())

    score("model_", log_obs + q[1], log_obs + q[0], log_obs + q[2])
    if postprocess == "emos":
        _, train_q = model_forecast(train_size, train_root)
        x_train = _emos_design(train_size, train_root, train_q)
        target = train_final.clamp_min(1.0).log()
        coef = torch.linalg.lstsq(x_train, target[:, None]).solution[:, 0]
        # residuals scaled by the ensemble spread (plus its training median, so a zero spread still
        # gets an interval): wider ensembles get wider intervals
        typical_spread = float((train_q[2] - train_q[0]).median())

        def spread(qs: Tensor) -> Tensor:
            return (qs[2] - qs[0]) + typical_spread

        scaled = (target - x_train @ coef) / spread(train_q)
        low_r, high_r = torch.quantile(scaled, torch.tensor([0.1, 0.9], dtype=torch.float64))
        centre = _emos_design(test_size, test_root, q) @ coef
        score("", centre, centre + low_r * spread(q), centre + high_r * spread(q))
    else:
        centre = log_obs + q[1]
        metrics.update({k.removeprefix("model_"): v for k, v in metrics.items()})
    forecast_median = centre.exp()

    # Szabo-Huberman: log S(T) = a + b log S(t_obs), least squares on the training cascades
    train_target = train_final.clamp_min(1.0).log()
    x = torch.stack([torch.ones_like(train_final), train_size[:, -1].clamp_min(1.0).log()], 1)
    sh = torch.linalg.lstsq(x, train_target[:, None]).solution[:, 0]
    baseline = (sh[0] + sh[1] * log_obs).exp()
    metrics["baseline_rmsle_size"] = float(squared_log_errors(baseline).mean().sqrt())
    metrics["baseline_medape_size"] = float(((baseline - truth).abs() / truth).median())
    # A stronger baseline without the model: the same regression on every first-hour feature the
    # ensemble is conditioned on (log sizes each step, root share). What the post-processed
    # forecast gains over it is what the simulated cascades add.
    rich = torch.linalg.lstsq(_features_design(train_size, train_root), train_target[:, None]).solution[:, 0]
    rich_forecast = (_features_design(test_size, test_root) @ rich).exp()
    metrics["features_baseline_rmsle_size"] = float(squared_log_errors(rich_forecast).mean().sqrt())
    # 90% paired bootstrap intervals (over cascades) of rmsle_size minus each regression's
    own = squared_log_errors(forecast_median)
    draw = torch.randint(0, truth.numel(), (2000, truth.numel()), generator=torch.Generator().manual_seed(seed))
    for name, reference in (("baseline", baseline), ("features", rich_forecast)):
        gap = own[draw].mean(1).sqrt() - squared_log_errors(reference)[draw].mean(1).sqrt()
        low, high = torch.quantile(gap, torch.tensor([0.05, 0.95], dtype=torch.float64))
        metrics[f"rmsle_minus_{name}_lo"], metrics[f"rmsle_minus_{name}_hi"] = float(low), float(high)
    metrics.update({"cascades": float(truth.numel()), "ensemble": float(sizes.size(0)), "observe_h": observe_h,
                    "reading_h": reading_h, "horizon_h": horizon_h, "postprocess": postprocess,
                    "parameter_draws": float(len(parameter_sets)) if posterior is not None else 0.0})
    return metrics
