"""Fit lpm's cascade dynamics to real reshare cascades (Twitter15/16) by gradient descent.

The simulated world (:class:`CascadeWorld`): a clustered scale-free follower graph (Holme-Kim) of
``N`` agents and ``C`` items per scenario, each posted by a random agent whose audience beyond the
graph is log-normal across items (rumour sources are popular accounts; a sampled graph cannot hold
their followers). Agents differ in how much of their feed they read, and posts stay visible for a
while (a feed half-life). Eleven parameters in the default world (seven without resharer audiences;
two more in opt-in worlds), all learnable (:data:`PARAMS`):

    transmissibility   per-exposure reshare probability
    audience           median out-of-graph audience of a source (accounts)
    audience_spread    log-normal spread of audiences across items
    attention          median share of its feed an agent reads per 10-minute step
    attention_spread   spread of attention across agents (logit scale)
    feed_half_life_h   hours until a post's visibility in feeds halves
    feed_tail          exponent of the power-law visibility decay after that (long tails of late reshares)
    resharer_audience  median out-of-graph audience of a resharer other than the source (accounts)
    resharer_audience_spread  log-normal spread of resharers' audiences across agents
    resharer_item_spread  log-normal spread of resharers' audiences across items
    first_level_audience_ratio  how many times larger the audiences of resharers attached to the source
                       are (worlds with ``first_level_audience``, the default)
    feed_item_spread   log-normal spread of the feed half-life across items (worlds with
                       ``feed_item_spread``; off by default)
    resharer_half_life_h  hours after an item's post at which its resharers' reach has halved
                       (worlds with ``resharer_novelty``)

Loss, computed on the model's expected-value (mean-field) dynamics (:class:`lpm.relax.Expected`;
straight-through and relaxed estimators are options), so it is deterministic with exact gradients:
quantile matching of log cascade sizes at each reading time up to the fit horizon (the growth
curves, and at the last time the size distribution), the squared error of the mean normalised
growth curve (the timing of reshares), and quantile matching of the share of reshares attached to
the root per cascade (its mean separates person-to-person spread from the source's broadcast, its
spread across cascades how many trees are shallow stars and how many deep), and quantile matching of
the share one level further down (depth 2): the mean field follows the reshares attached to the
source (:class:`~lpm.dynamics.cascade_state.LevelCascadeState`) and the expected reshares attached to
those, so the loss sees how deep the trees are without sampling them; with the root share it fixes the
share of everything deeper. Breadth and KS distances are evaluated on exact trees (:mod:`lpm.targets`).

Identifiability (what parameter recovery shows): with small ``q``, exposures enter the hazard as
``attention * q``, so ``transmissibility`` and ``attention`` are identified only through their
product's effect on sizes and the attention spread's effect on timing; fits hold ``attention``
fixed unless asked otherwise (see :data:`DEFAULT_FIXED`). With the six others free (planted
parameters, 64 cascades read to 4 h, bias-corrected), ``transmissibility``, ``audience`` and
``audience_spread`` come back within 4%; the three timing parameters (``attention_spread``,
``feed_half_life_h``, ``feed_tail``) trade off against one another in the growth curve and came
back 14-42% off, though the half-life alone (the other two known) comes back within 4%.

Bias: the mean-field dynamics treat exposures as independent, while on a clustered follower graph
the same agents are reached again and again; they overestimate person-to-person spread, so the
plain fit puts too little on ``transmissibility`` and too much on the audience (planted
parameters come back ~25-35% off). :func:`correct_bias` (``lpm calibrate cascades --debias 2``)
removes that bias by indirect inference: simulate exact cascades at the estimate, refit, correct.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor

from lpm.calibration.cascade_world import (_RAW, DEFAULT_FIXED, DEFAULTS, LEVEL_RECORD, PARAMS, RECORD, RESHARER_PARAMS,
                                           CascadeWorld, apply_params, load_cascades, model_params, set_params,
                                           simulate_cascades, world_from_meta)
from lpm.calibration.cascade_posterior import cascade_posterior
from lpm.calibration.common import CalibrationModule, FitResult, fit, load_params, save_params
from lpm.calibration.posterior import posterior_path
from lpm.errors import ConfigError
from lpm.executor import Executor
from lpm.graph import Graph
from lpm.relax import Expected, RelaxedBernoulli, StraightThrough
from lpm.simulate import simulate
from lpm.targets import GROWTH_HOURS, CascadeTargets, cascade_targets
# evaluation, checks and forecasts live beside the fit; re-exported so that `lpm calibrate|evaluate|check|
# forecast cascades` find every entry point in this one module (calibration.common.KINDS)
from lpm.calibration.cascade_evaluation import CHECK_METRICS, check, evaluate, fit_independent_cascade
from lpm.calibration.cascade_forecast import forecast

__all__ = ["PARAMS", "RESHARER_PARAMS", "DEFAULTS", "DEFAULT_FIXED", "CascadeWorld", "CascadeCalibration",
           "simulate_cascades", "calibrate", "evaluate", "check", "forecast", "load_cascades", "fit_independent_cascade",
           "correct_bias", "apply_params", "set_params", "model_params", "world_from_meta", "CHECK_METRICS"]


def _quantiles(values: Tensor, count: int) -> Tensor:
    """``(count, T)`` quantiles of each column of ``values (M, T)`` at levels ``(i + 1/2) / count``."""
    levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count
    return torch.quantile(values.double(), levels, dim=0)


class CascadeCalibration(CalibrationModule, pl.LightningModule):
    """A LightningModule fitting :class:`CascadeWorld` parameters to observed cascade targets.

    Args:
        observed: targets of the observed cascades (:func:`lpm.targets.cascade_targets`).
        world: the simulated world.
        init: initial parameter values (missing: :data:`DEFAULTS`).
        fixed: names held fixed.
        batch: scenarios per step (``batch x C`` simulated cascades per loss evaluation).
        fit_horizon_h: simulate this many hours per step (growth read up to it).
        temperature: of the relaxed reshare draws (``estimator="relaxed"``).
        estimator: ``"expected"`` (default: the mean-field dynamics, :class:`~lpm.relax.Expected`,
            deterministic with exact gradients), ``"straight_through"`` (exact samples forward) or
            ``"relaxed"`` (:class:`~lpm.relax.RelaxedBernoulli`).
        root_weight, shape_weight, depth_weight: weights of the root-share, growth-shape and depth-2
            share terms (the size term has weight 1); ``depth_weight=0`` leaves depth out (and the
            levels untracked, as fits before it did).
        growth_weight: weight of the growth-factor term: quantile matching of each cascade's
            ``log S(horizon) - log S(1 h)`` (how much it grows after its first hour, which the
            mean shape term fixes only on average). 0 (default) leaves it out.
        checkpoint_every: gradient checkpointing through time (:func:`lpm.simulate`): keep every k-th
            step's state for the backward pass and recompute the rest, trading about one more forward
            pass for memory that no longer grows with the steps (a fit at 5-minute steps holds 144).
            ``None`` (default) keeps every step.

    Fitted across processes (``fit(..., devices=W, strategy="ddp")``), each rank simulates ``batch / W``
    of the scenarios (:meth:`loss_terms`); ``batch`` must be a multiple of ``W``.
    """

    #: the step's simulated ensemble splits across DDP ranks (:meth:`loss_terms`)
    shards_ensemble = True

    def __init__(self, observed: CascadeTargets, world: CascadeWorld, init: Optional[Mapping[str, float]] = None,
                 fixed: Sequence[str] = DEFAULT_FIXED, batch: int = 2, fit_horizon_h: float = 12.0,
                 temperature: float = 0.5, learning_rate: float = 0.08, seed: int = 0, estimator: str = "expected",
                 dtype: torch.dtype = torch.float32, root_weight: float = 10.0, shape_weight: float = 4.0,
                 depth_weight: float = 10.0, growth_weight: float = 0.0, checkpoint_every: Optional[int] = None) -> None:
        super().__init__()
        if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                                             or checkpoint_every < 1):
            raise ConfigError(f"Expected checkpoint_every to be None or an int >= 1 (got {checkpoint_every!r})")
        self.checkpoint_every = checkpoint_every
        self.growth_weight = float(growth_weight)
        self.root_weight, self.shape_weight, self.depth_weight = float(root_weight), float(shape_weight), float(depth_weight)
        self.world, self.batch, self.seed, self.dtype_ = world, batch, seed, dtype
        self.learning_rate = learning_rate
        self.model = world.model(dict(init or {})).to(dtype)
        self.model.cascade.record_trees = False  # trees are for evaluation; the loss reads sizes only
        self.fixed = tuple(fixed)
        for name in self.fixed:
            if name not in _RAW:
                raise ConfigError(f"Expected fixed parameters among {PARAMS} (got {name!r})")
        fitted = {_RAW[name][0] for name in PARAMS if name not in self.fixed}
        for raw_name, param in self.model.cascade.named_parameters():
            param.requires_grad_(raw_name in fitted)  # the world has no interests, emotions or opinions to weigh
        # Expected events (mean field) by default: on Twitter15 the straight-through fit drifted
        # away from lower losses (its bias compounds over hundreds of steps of a near-critical
        # cascade) while the mean-field fit, with exact gradients, converged in a few dozen steps.
        estimators = {"expected": Expected(), "straight_through": StraightThrough(),
                      "relaxed": RelaxedBernoulli(temperature=temperature, hard=False)}
        if estimator not in estimators:
            raise ConfigError(f"Expected an estimator among {sorted(estimators)} (got {estimator!r})")
        self.estimator = estimators[estimator]
        self._graph: Optional[Graph] = None  # built on the module's device at the first step
        hours = observed.hours
        self.read = [i for i, h in enumerate(hours.tolist()) if h <= fit_horizon_h + 1e-9]
        if not self.read:
            raise ConfigError(f"Expected reading hours within the fit horizon {fit_horizon_h} h (got {hours.tolist()})")
        self.steps_at = [round(float(hours[i]) / world.dt_h) for i in self.read]
        self.steps = max(self.steps_at)
        count = batch * world.items
        observed_size = observed.size[:, self.read].clamp_min(1.0)
        self.register_buffer("target_log_size", _quantiles(observed_size.log(), count).to(dtype))  # (M', T')
        self.register_buffer("target_shape", (observed_size / observed_size[:, -1:]).mean(0).to(dtype))  # (T',)
        finite = observed.root_share[torch.isfinite(observed.root_share)]
        # quantiles, not only the mean: how the root share varies across cascades sets how many
        # trees are shallow stars and how many deep (the item spread of resharer audiences)
        self.register_buffer("target_root_share", _quantiles(finite[:, None], count)[:, 0].to(dtype))  # (M',)
        # the share one level below the root: with the root share it fixes the share of everything
        # deeper, which the root share alone left free (fits put 2.6x the observed share at depth >= 5)
        self.levels = self.depth_weight > 0 and observed.depth_profile is not None
        if self.levels:
            profile = observed.depth_profile.double()
            children = profile.sum(1)
            second = profile[children > 0, 1] / children[children > 0]
            self.register_buffer("target_second_share", _quantiles(second[:, None], count)[:, 0].to(dtype))  # (M',)
        self.growth_from = min(range(len(self.read)), key=lambda i: abs(float(hours[self.read[i]]) - 1.0))
        if self.growth_weight > 0:
            if self.growth_from == len(self.read) - 1:
                raise ConfigError(f"Expected a fit horizon beyond 1 h for growth_weight > 0 (got {fit_horizon_h} h)")
            growth = observed_size[:, -1].log() - observed_size[:, self.growth_from].log()
            self.register_buffer("target_growth", _quantiles(growth[:, None], count)[:, 0].to(dtype))  # (M',)
        self.params_before_step: dict[str, float] = {}

    def fitted_params(self) -> dict[str, float]:
        return model_params(self.model)

    @property
    def graph(self) -> Graph:
        if self._graph is None or self._graph.rowptr.device != self.device:
            self._graph = self.world.graph(self.device)
        return self._graph

    def _shard(self) -> tuple[int, int]:
        """``(rank, processes)`` the simulated ensemble is split over: the trainer's, else ``(0, 1)``."""
        trainer = self._trainer
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def setup(self, stage: str) -> None:  # noqa: D401 - Lightning hook, run on every rank
        _, processes = self._shard()
        if self.batch % processes:
            raise ConfigError(f"Expected the simulated scenarios per step (batch {self.batch}) to divide evenly over "
                              f"the {processes} processes of the fit (got remainder {self.batch % processes})")

    def loss_terms(self, step_seed: int) -> dict[str, Tensor]:
        """The loss and its terms on ``batch x C`` cascades simulated with seeds keyed by ``step_seed``.

        Under a multi-process strategy (DDP) rank ``r`` of ``W`` simulates only the contiguous block
        of scenarios ``r B/W .. (r+1) B/W - 1``, each seeded by its scenario id exactly as in one
        process, and gathers everyone's sizes (``all_gather`` with gradients), so every rank computes
        the single-process loss on the whole ensemble. The gather's backward sums the ``W`` identical
        upstream gradients and DDP averages over ranks, so the parameters' gradient is the
        single-process one, up to the order its per-scenario parts are summed in.
        """
        rank, processes = self._shard()
        share = self.batch // processes
        first = rank * share
        state = self.world.initial_state(share, self.device, self.dtype_, levels=self.levels)
        seeds = [self.seed * 7919 + step_seed * self.batch + b for b in range(first, first + share)]
        trajectory = simulate(self.model, state, self.graph, steps=self.steps,
                              record=LEVEL_RECORD if self.levels else RECORD, seed=seeds, estimator=self.estimator,
                              checkpoint_every=self.checkpoint_every)
        size = trajectory["size"][self.steps_at]  # (T', B/W, C)
        direct = trajectory["direct"][1 : self.steps + 1].sum(0)  # (B/W, C)
        second = trajectory["second"][1 : self.steps + 1].sum(0) if self.levels else torch.zeros_like(direct)
        if processes > 1:
            # one collective for all (the backward of each gather is a collective too, and one per
            # step keeps every rank's sequence of collectives trivially the same)
            mine = torch.cat([size, direct[None], second[None]])  # (T' + 2, B/W, C)
            every = self.all_gather(mine, sync_grads=True)  # (W, T' + 2, B/W, C), in rank order
            every = every.transpose(0, 1).reshape(mine.size(0), self.batch, -1)  # (T' + 2, B, C)
            size, direct, second = every[:-2], every[-2], every[-1]
        size = size.reshape(len(self.steps_at), -1).T.clamp_min(1.0)  # (M', T')
        log_size = torch.sort(size.log(), dim=0).values
        size_loss = ((log_size - self.target_log_size) ** 2).mean()
        shape = (size / size[:, -1:]).mean(0)
        shape_loss = ((shape - self.target_shape) ** 2).sum()
        direct = direct.reshape(-1)  # (M',)
        children = (size[:, -1] - 1.0).clamp_min(1.0)
        root_share = torch.sort(direct / children).values
        root_loss = ((root_share - self.target_root_share) ** 2).mean()
        terms = {"size": size_loss, "shape": shape_loss, "root": root_loss,
                 "loss": size_loss + self.shape_weight * shape_loss + self.root_weight * root_loss}
        if self.growth_weight > 0:
            growth = torch.sort(size[:, -1].log() - size[:, self.growth_from].log()).values
            terms["growth"] = ((growth - self.target_growth) ** 2).mean()
            terms["loss"] = terms["loss"] + self.growth_weight * terms["growth"]
        if self.levels:
            second_share = torch.sort(second.reshape(-1) / children).values
            terms["depth"] = ((second_share - self.target_second_share) ** 2).mean()
            terms["loss"] = terms["loss"] + self.depth_weight * terms["depth"]
        return terms

    def training_step(self, batch, batch_idx):
        self.params_before_step = self.fitted_params()
        terms = self.loss_terms(self.global_step)
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss")
        for name, value in self.params_before_step.items():
            self.log(f"param/{name}", value)
        return terms["loss"]


def _from_raw(world: CascadeWorld, values: Mapping[str, float], raw: Mapping[str, float]) -> dict[str, float]:
    """``values`` with the parameters in ``raw`` set from their unconstrained coordinates."""
    model = world.model(values)
    with torch.no_grad():
        for name, value in raw.items():
            getattr(model.cascade, _RAW[name][0]).fill_(float(value))
    return model_params(model)


def correct_bias(estimate: Callable[[CascadeTargets, Mapping[str, float]], Mapping[str, float]],
                 observed: CascadeTargets, world: CascadeWorld, *, free: Sequence[str], iterations: int = 2,
                 batch: Optional[int] = None, seed: int = 0, device: str = "cpu") -> list[dict[str, float]]:
    """Remove the bias of a fitting procedure by simulation (indirect inference; Gourieroux, Monfort
    & Renault 1993, J. Appl. Econometrics 8).

    ``estimate(targets, init)`` is the procedure, e.g. the mean-field fit, whose answer is biased
    because the mean-field dynamics are not the stochastic ones: on clustered graphs they treat
    correlated exposures as independent and overestimate person-to-person spread, so they put too
    little on ``transmissibility`` and too much on the audience. With ``theta_0 = estimate(observed)``,
    each iteration simulates exact cascades at the current ``theta`` (``batch x C`` of them, the
    same seed every iteration so the map is smooth in ``theta``), fits them with the same
    procedure, and moves ``theta`` by what that fit got wrong, in each parameter's unconstrained
    coordinate: ``theta <- theta + theta_0 - estimate(simulated(theta))``. At the fixed point the
    procedure applied to the model's cascades returns what it returned on the data.

    The iterations are sequential (each simulates at the previous one's ``theta``), so they run one
    after the other here; what an iteration does in parallel is its own (the fits' DDP processes).

    Returns:
        the iterates ``[theta_0, theta_1, ...]``; the last is the corrected estimate.
    """
    if iterations < 0:
        raise ConfigError(f"Expected iterations >= 0 (got {iterations})")
    unknown = set(free) - set(_RAW)
    if unknown:
        raise ConfigError(f"Expected free parameters among {PARAMS} (got {sorted(unknown)})")
    hours = observed.hours.tolist()
    batch = batch or max(1, math.ceil(observed.size.size(0) / world.items))

    def raw(values: Mapping[str, float]) -> dict[str, float]:
        return {name: _RAW[name][1](float(values[name])) for name in free}

    plain = dict(estimate(observed, {}))
    path = [plain]
    theta = dict(plain)
    for _ in range(iterations):
        simulated = cascade_targets(simulate_cascades(world, theta, hours=hours, batch=batch, seed=seed, device=device),
                                    hours)
        again = estimate(simulated, theta)
        now, target, got = raw(theta), raw(plain), raw(again)
        theta = _from_raw(world, theta, {name: now[name] + target[name] - got[name] for name in free})
        path.append(theta)
    return path


def calibrate(data: list[Path], out: Path, *, budget_s: Optional[float] = None, device: str = "cpu", seed: int = 0,
              work_dir: Optional[Path] = None, resume: bool = False, progress: bool = True, max_steps: int = 200,
              split: str = "train", logger: str = "wandb", world: Optional[CascadeWorld] = None,
              init: Optional[Mapping[str, float]] = None, fixed: Sequence[str] = DEFAULT_FIXED,
              batch: int = 2, fit_horizon_h: float = 12.0, agents: Optional[int] = None,
              items: Optional[int] = None, debias: int = 0, posterior: bool = False, devices: int = 1,
              num_nodes: int = 1, strategy: str = "auto", executor: Optional[Executor] = None,
              growth_weight: float = 0.0, checkpoint_every: Optional[int] = None) -> FitResult:
    """Fit the cascade model to the cascades in ``data`` (the ``split`` part) and write ``out``.

    ``agents`` and ``items`` override the default :class:`CascadeWorld`'s size. ``debias > 0``
    corrects the mean-field fit's bias with that many rounds of :func:`correct_bias` (each a
    simulation and a refit); ``out`` then holds the corrected parameters and its meta the plain fit
    and every iterate. ``budget_s / (1 + debias)`` is the plain fit's wall time; each refit repeats
    its procedure (the same start and number of steps, so about the same time), so the whole takes
    about ``budget_s`` plus the simulations. Checkpoints and ``resume`` apply to the plain fit only; a resumed
    plain fit counts the time it ran before against its share (Lightning's ``Timer`` state), while
    the budget itself starts again at the resume.

    ``posterior``: also compute the parameters' posterior (``FIT.posterior.json`` beside ``out``,
    :func:`lpm.calibration.cascade_posterior.cascade_posterior`: bias-corrected Gauss-Newton steps from
    the fitted values) and write its mode, the exact model's estimate, as the fitted parameters (the
    mean-field fit stays in the file's meta as ``mean_field_fit``).

    ``devices``, ``num_nodes``, ``strategy``: fit across processes with Lightning's DDP
    (:func:`lpm.calibration.common.fit`): each of the ``devices x num_nodes`` ranks simulates its
    share of the ``batch`` scenarios of every step (``batch`` must be a multiple of their number),
    for the loss and gradients of one process. Every rank runs this function to its end (the
    debias refits are fits across the same processes); only rank 0 writes ``out`` and the posterior.
    The debias rounds themselves are sequential: each simulates at the previous round's estimate.
    ``executor`` (:mod:`lpm.executor`; default here) runs the posterior's independent simulation
    replicates (:func:`~lpm.calibration.cascade_posterior.cascade_posterior`). ``growth_weight``: the
    loss's growth-after-the-first-hour term (:class:`CascadeCalibration`), in every fit and refit;
    ``checkpoint_every``: its gradient checkpointing through time, likewise."""
    processes = devices * num_nodes if min(devices, num_nodes) >= 1 else 1  # fit() names bad counts
    if batch % processes:  # checked before any process starts (CascadeCalibration.setup on each, too)
        raise ConfigError(f"Expected batch (scenarios per step, {batch}) to be a multiple of the fit's processes "
                          f"({devices} devices x {num_nodes} nodes)")
    table = load_cascades(data, split=split)
    # read only up to the fit horizon, so the root share the loss matches covers the simulated window
    observed = cascade_targets(table, [h for h in GROWTH_HOURS if h <= fit_horizon_h + 1e-9])
    world = world or CascadeWorld()
    world = replace(world, **{k: v for k, v in dict(agents=agents, items=items).items() if v is not None})
    meta = {"world": world.__dict__, "split": split, "cascades": table.num_cascades, "data": [str(p) for p in data],
            "fixed": list(fixed), "device": device, **({"growth_weight": growth_weight} if growth_weight else {}),
            **({"checkpoint_every": checkpoint_every} if checkpoint_every else {})}
    options = dict(kind="cascades", max_steps=max_steps, logger=logger, device=device,
                   progress=progress, devices=devices, num_nodes=num_nodes, strategy=strategy)
    module = CascadeCalibration(observed, world, init, fixed, batch=batch, fit_horizon_h=fit_horizon_h, seed=seed,
                                growth_weight=growth_weight, checkpoint_every=checkpoint_every)
    plain = fit(module, out=None if debias else out, work_dir=work_dir, resume=resume, meta=meta,
                budget_s=None if budget_s is None else budget_s / (1 + debias), **options)
    if not debias:
        if posterior and plain["global_rank"] == 0:
            return _with_posterior(out, plain, observed, world, plain["params"], fixed, batch, fit_horizon_h, seed,
                                   dict(meta, loss=plain["loss"]), executor)
        return plain
    free = [name for name in world.params if name not in fixed]
    fits = [plain]

    def estimate(targets: CascadeTargets, start: Mapping[str, float]) -> dict[str, float]:
        """The plain fit's procedure on ``targets``: its start and its number of steps, not ``start``
        and a budget share. Indirect inference needs one map from targets to estimates; a refit from
        the current estimate, stopped by the clock, maps the simulated cascades differently whenever
        the plain fit stopped short of its optimum (as CPU budgets make it), and the correction then
        chases where the fits stopped instead of the mean field's bias."""
        if not start:  # the plain fit on the data, already done
            return plain["averaged"]
        refit = CascadeCalibration(targets, world, init, fixed, batch=batch, fit_horizon_h=fit_horizon_h, seed=seed,
                                   growth_weight=growth_weight, checkpoint_every=checkpoint_every)
        fits.append(fit(refit, **dict(options, max_steps=plain["steps"])))
        return fits[-1]["averaged"]

    path = correct_bias(estimate, observed, world, free=free, iterations=debias, seed=seed + 1, device=device)
    corrected = path[-1]
    history = [row for result in fits for row in result["history"]]
    meta = dict(meta, loss=plain["loss"], debias={"iterations": debias, "path": path})
    result = FitResult(params=corrected, loss=plain["loss"], history=history, steps=sum(r["steps"] for r in fits),
                       averaged=corrected, global_rank=plain["global_rank"])
    if plain["global_rank"] != 0:
        return result
    save_params(out, "cascades", corrected, meta)
    if posterior:
        return _with_posterior(out, result, observed, world, corrected, fixed, batch, fit_horizon_h, seed, meta,
                               executor)
    return result


def _with_posterior(out: Path, result: FitResult, observed: CascadeTargets, world: CascadeWorld,
                    values: Mapping[str, float], fixed: Sequence[str], batch: int, fit_horizon_h: float, seed: int,
                    meta: Mapping, executor: Optional[Executor] = None) -> FitResult:
    """Write the posterior beside ``out`` and its mode into ``out``: the mode is the exact model's
    estimate (the mean field's bias corrected by simulation), the mean-field fit stays in the meta."""
    module = CascadeCalibration(observed, world, values, fixed, batch=batch, fit_horizon_h=fit_horizon_h, seed=seed)
    posterior = cascade_posterior(module, observed, seed=seed, executor=executor)
    posterior.save(posterior_path(out))
    mode = posterior.point()
    written = load_params(out, kind="cascades")[1] if out.exists() else {}  # the fit's own record (steps, time)
    save_params(out, "cascades", mode, {**written, **meta, "mean_field_fit": dict(values),
                                        "posterior": str(posterior_path(out))})
    return FitResult(params=mode, loss=result["loss"], history=result["history"], steps=result["steps"], averaged=mode,
                     global_rank=result.get("global_rank", 0))
