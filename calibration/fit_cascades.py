"""Fit lpm's cascade dynamics to real reshare cascades (Twitter15/16) by gradient descent.

The simulated world (:class:`CascadeWorld`): a clustered scale-free follower graph (Holme-Kim) of
``N`` agents and ``C`` items per scenario, each posted by a random agent whose audience beyond the
graph is log-normal across items (rumour sources are popular accounts; a sampled graph cannot hold
their followers). Agents differ in how much of their feed they read, and posts stay visible for a
while (a feed half-life). Nine parameters (seven in worlds without resharer audiences), all learnable (:data:`PARAMS`):

    transmissibility   per-exposure reshare probability
    audience           median out-of-graph audience of a source (accounts)
    audience_spread    log-normal spread of audiences across items
    attention          median share of its feed an agent reads per 10-minute step
    attention_spread   spread of attention across agents (logit scale)
    feed_half_life_h   hours until a post's visibility in feeds halves
    feed_tail          exponent of the power-law visibility decay after that (long tails of late reshares)
    resharer_audience  median out-of-graph audience of a resharer other than the source (accounts)
    resharer_audience_spread  log-normal spread of resharers' audiences across agents

Loss, computed on the model's expected-value (mean-field) dynamics (:class:`lpm.relax.Expected`;
straight-through and relaxed estimators are options), so it is deterministic with exact gradients:
quantile matching of log cascade sizes at each reading time up to the fit horizon (the growth
curves, and at the last time the size distribution), the squared error of the mean normalised
growth curve (the timing of reshares), and the squared error of the mean share of reshares
attached to the root (which separates person-to-person spread from the source's broadcast). Depth, breadth and KS distances are evaluated on exact trees (:mod:`lpm.targets`).

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
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lpm.calibration.common import CalibrationModule, FitResult, fit, load_params, save_params, split_index
from lpm.data.cascades import CascadeTable
from lpm.dynamics.base import inverse_softplus, logit
from lpm.dynamics.cascade import Cascade, Item, init_cascade_state
from lpm.errors import ConfigError
from lpm.graph import Graph
from lpm.model import Model
from lpm.relax import Expected, Hard, RelaxedBernoulli, StraightThrough
from lpm.simulate import simulate
from lpm.state import PopulationState
from lpm.targets import GROWTH_HOURS, CascadeTargets, cascade_metrics, cascade_targets

__all__ = ["PARAMS", "DEFAULTS", "DEFAULT_FIXED", "CascadeWorld", "CascadeCalibration", "simulate_cascades",
           "calibrate", "evaluate", "check", "forecast", "load_cascades", "fit_independent_cascade", "correct_bias"]

PARAMS = ("transmissibility", "audience", "audience_spread", "attention", "attention_spread", "feed_half_life_h",
          "feed_tail", "resharer_audience", "resharer_audience_spread")
#: parameters of the resharer-audience mechanism, present only in worlds with ``resharer_audience=True``
RESHARER_PARAMS = ("resharer_audience", "resharer_audience_spread")
DEFAULTS: dict[str, float] = dict(transmissibility=0.004, audience=30000.0, audience_spread=1.0, attention=0.3,
                                  attention_spread=1.0, feed_half_life_h=0.25, feed_tail=1.5, resharer_audience=30.0,
                                  resharer_audience_spread=1.5)
#: held fixed by default: not separately identifiable from ``transmissibility`` (see the module docstring)
DEFAULT_FIXED = ("attention",)

#: each parameter's raw (unconstrained) attribute on the Cascade and the map from its value to it
_RAW = {"transmissibility": ("raw_transmissibility", logit), "audience": ("raw_audience", math.log),
        "audience_spread": ("raw_audience_spread", inverse_softplus), "attention": ("raw_attention", logit),
        "attention_spread": ("raw_attention_spread", inverse_softplus),
        "feed_half_life_h": ("raw_feed_half_life", inverse_softplus),
        "feed_tail": ("raw_feed_tail", lambda tail: inverse_softplus(tail - 1.0)),  # read as 1 + softplus
        "resharer_audience": ("raw_resharer_audience", math.log),
        "resharer_audience_spread": ("raw_resharer_audience_spread", inverse_softplus)}


def _direct(state, events) -> Tensor:
    if events.direct_reshares is None:
        return torch.zeros_like(state.reshared[:, 0, :])
    return events.direct_reshares


def _sizes(state, events) -> Tensor:
    return state.reshared.sum(1)


RECORD = {"size": _sizes, "direct": _direct}


@dataclass(frozen=True)
class CascadeWorld:
    """The synthetic platform cascades are simulated on.

    Args:
        agents: N.
        m, p_triad: Holme-Kim graph parameters (mean degree ~ 2 m, clustering via triads).
        items: C cascades per scenario (each scenario also draws its own source audiences).
        dt_h: step length (hours).
        seed: seed of the graph and the sources.
        resharer_audience: resharers other than the source have out-of-graph audiences too
            (:data:`RESHARER_PARAMS`); fits saved before this option load with ``False``.
    """

    agents: int = 10_000
    m: int = 5
    p_triad: float = 0.3
    items: int = 16
    dt_h: float = 1.0 / 6.0
    seed: int = 0
    resharer_audience: bool = True

    def __post_init__(self) -> None:
        if self.agents < 10 * self.m or self.items < 1 or not self.dt_h > 0:
            raise ConfigError(f"Expected agents >= 10 m, items >= 1 and dt_h > 0 (got {self})")

    def graph(self, device: str | torch.device = "cpu") -> Graph:
        return Graph.holme_kim(self.agents, self.m, self.p_triad, seed=self.seed, device=device)

    def sources(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + 1)
        return torch.randperm(self.agents, generator=generator)[: self.items].tolist()

    def model(self, params: Mapping[str, float]) -> Model:
        """A cascade-only :class:`~lpm.Model` with ``params`` (any missing name takes :data:`DEFAULTS`)."""
        names = self.params
        unknown = set(params) - set(names)
        if unknown:
            raise ConfigError(f"Expected parameters among {names} (got {sorted(unknown)})")
        p = {**DEFAULTS, **params}
        resharers = dict(resharer_audience=p["resharer_audience"],
                         resharer_audience_spread=p["resharer_audience_spread"]) if self.resharer_audience else {}
        items = [Item(source=s) for s in self.sources()]
        cascade = Cascade(items, transmissibility=p["transmissibility"], attention=p["attention"],
                          attention_spread=p["attention_spread"], audience=p["audience"],
                          audience_spread=p["audience_spread"], feed_half_life_h=p["feed_half_life_h"],
                          feed_tail=p["feed_tail"], **resharers)
        return Model(cascade=cascade, dt=self.dt_h)

    @property
    def params(self) -> tuple[str, ...]:
        """The names of this world's parameters."""
        return PARAMS if self.resharer_audience else tuple(n for n in PARAMS if n not in RESHARER_PARAMS)

    def initial_state(self, batch: int, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32) -> PopulationState:
        state = PopulationState.create(torch.zeros(batch, self.agents, 1, dtype=dtype, device=device),
                                       torch.zeros(batch, self.agents, 2, dtype=dtype, device=device))
        return init_cascade_state(state, self.items)


def model_params(model: Model) -> dict[str, float]:
    """The constrained values of a world model's six parameters."""
    c = model.cascade
    with torch.no_grad():
        return _params_of(c)


def _params_of(c: Cascade) -> dict[str, float]:
    sp = nn.functional.softplus
    return {"transmissibility": float(torch.sigmoid(c.raw_transmissibility)), "audience": float(c.raw_audience.exp()),
            "audience_spread": float(sp(c.raw_audience_spread)), "attention": float(torch.sigmoid(c.raw_attention)),
            "attention_spread": float(sp(c.raw_attention_spread)), "feed_half_life_h": float(c.feed_half_life_h),
            "feed_tail": float(c.feed_tail),
            **({"resharer_audience": float(c.raw_resharer_audience.exp()),
                "resharer_audience_spread": float(sp(c.raw_resharer_audience_spread))}
               if c.raw_resharer_audience is not None and c.raw_resharer_audience_spread is not None else {})}


def simulate_cascades(world: CascadeWorld, params: Mapping[str, float], *, hours: Sequence[float] = GROWTH_HOURS,
                      batch: int = 4, seed: int = 0, device: str = "cpu", graph: Optional[Graph] = None,
                      continuous_times: bool = True) -> CascadeTable:
    """Exact reshare trees of ``batch x C`` simulated cascades up to ``max(hours)``, as a table.

    A step records its reshares at the step's end; with ``continuous_times`` each reshare's time is
    drawn uniformly within its step instead (``t - U dt``), as a continuous-time process would place
    it. Real delays are continuous, so step-end times alone would give a staircase delay CDF whose
    Kolmogorov-Smirnov distance to any real one is at least the share of reshares in the first step.
    Order within trees is kept: a parent reshared in an earlier step than its child.
    """
    graph = world.graph(device) if graph is None else graph
    model = world.model(params).to(device)
    steps = math.ceil(max(hours) / world.dt_h)
    with torch.no_grad():
        trajectory = simulate(model, world.initial_state(batch, device), graph, steps=steps, record={},
                              seed=[seed * 1_000_003 + b for b in range(batch)], estimator=Hard())
    table = CascadeTable.from_state(trajectory.final.to("cpu"), [0.0] * world.items)
    if not continuous_times:
        return table
    within = torch.rand(table.time_h.shape, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64)
    time_h = torch.where(table.parent >= 0, table.time_h - world.dt_h * within, table.time_h)
    return replace(table, time_h=time_h)


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
    """

    def __init__(self, observed: CascadeTargets, world: CascadeWorld, init: Optional[Mapping[str, float]] = None,
                 fixed: Sequence[str] = DEFAULT_FIXED, batch: int = 2, fit_horizon_h: float = 12.0,
                 temperature: float = 0.5, learning_rate: float = 0.08, seed: int = 0, estimator: str = "expected",
                 dtype: torch.dtype = torch.float32, root_weight: float = 10.0, shape_weight: float = 4.0) -> None:
        super().__init__()
        self.root_weight, self.shape_weight = float(root_weight), float(shape_weight)
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
        self.register_buffer("target_root_share", finite.mean().to(dtype).reshape(()))
        self.params_before_step: dict[str, float] = {}

    def fitted_params(self) -> dict[str, float]:
        return model_params(self.model)

    @property
    def graph(self) -> Graph:
        if self._graph is None or self._graph.rowptr.device != self.device:
            self._graph = self.world.graph(self.device)
        return self._graph

    def loss_terms(self, step_seed: int) -> dict[str, Tensor]:
        state = self.world.initial_state(self.batch, self.device, self.dtype_)
        seeds = [self.seed * 7919 + step_seed * self.batch + b for b in range(self.batch)]
        trajectory = simulate(self.model, state, self.graph, steps=self.steps, record=RECORD, seed=seeds,
                              estimator=self.estimator)
        size = trajectory["size"][self.steps_at]  # (T', B, C)
        size = size.reshape(len(self.steps_at), -1).T.clamp_min(1.0)  # (M', T')
        log_size = torch.sort(size.log(), dim=0).values
        size_loss = ((log_size - self.target_log_size) ** 2).mean()
        shape = (size / size[:, -1:]).mean(0)
        shape_loss = ((shape - self.target_shape) ** 2).sum()
        direct = trajectory["direct"][1 : self.steps + 1].sum(0).reshape(-1)  # (M',)
        children = (size[:, -1] - 1.0).clamp_min(1.0)
        root_share = (direct / children).mean()
        root_loss = (root_share - self.target_root_share) ** 2
        return {"size": size_loss, "shape": shape_loss, "root": root_loss,
                "loss": size_loss + self.shape_weight * shape_loss + self.root_weight * root_loss}

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


def load_cascades(paths: Sequence[Path], *, window_h: float = 72.0, split: str = "all", holdout: float = 0.2,
                  split_seed: int = 0) -> CascadeTable:
    """Cascades from rumdetect2017 zips/folders, restricted to a deterministic hold-out ``split``."""
    from lpm.data.rumdetect import load_rumdetect

    tables = [load_rumdetect(path, window_h=window_h)[0] for path in paths]
    table = tables[0] if len(tables) == 1 else CascadeTable.concat(tables)
    return table.select(split_index(list(table.ids), split, holdout=holdout, seed=split_seed))


def calibrate(data: list[Path], out: Path, *, budget_s: Optional[float] = None, device: str = "cpu", seed: int = 0,
              work_dir: Optional[Path] = None, resume: bool = False, progress: bool = True, max_steps: int = 200,
              split: str = "train", logger: str = "wandb", world: Optional[CascadeWorld] = None,
              init: Optional[Mapping[str, float]] = None, fixed: Sequence[str] = DEFAULT_FIXED,
              batch: int = 2, fit_horizon_h: float = 12.0, agents: Optional[int] = None,
              items: Optional[int] = None, debias: int = 0) -> FitResult:
    """Fit the cascade model to the cascades in ``data`` (the ``split`` part) and write ``out``.

    ``agents`` and ``items`` override the default :class:`CascadeWorld`'s size. ``debias > 0``
    corrects the mean-field fit's bias with that many rounds of :func:`correct_bias` (each a
    simulation and a refit; the budget and ``max_steps`` apply to each fit, so it takes about
    ``1 + debias`` times as long); ``out`` then holds the corrected parameters and its meta the
    plain fit and every iterate. Checkpoints and ``resume`` apply to the plain fit only."""
    table = load_cascades(data, split=split)
    observed = cascade_targets(table)
    world = world or CascadeWorld()
    world = replace(world, **{k: v for k, v in dict(agents=agents, items=items).items() if v is not None})
    meta = {"world": world.__dict__, "split": split, "cascades": table.num_cascades, "data": [str(p) for p in data],
            "fixed": list(fixed), "device": device}
    options = dict(kind="cascades", max_steps=max_steps, budget_s=budget_s, logger=logger, device=device,
                   progress=progress)
    module = CascadeCalibration(observed, world, init, fixed, batch=batch, fit_horizon_h=fit_horizon_h, seed=seed)
    plain = fit(module, out=None if debias else out, work_dir=work_dir, resume=resume, meta=meta, **options)
    if not debias:
        return plain
    free = [name for name in world.params if name not in fixed]
    fits = [plain]

    def estimate(targets: CascadeTargets, start: Mapping[str, float]) -> dict[str, float]:
        if not start:  # the plain fit on the data, already done
            return plain["averaged"]
        refit = CascadeCalibration(targets, world, start, fixed, batch=batch, fit_horizon_h=fit_horizon_h, seed=seed)
        fits.append(fit(refit, **options))
        return fits[-1]["averaged"]

    path = correct_bias(estimate, observed, world, free=free, iterations=debias, seed=seed + 1, device=device)
    corrected = path[-1]
    history = [row for result in fits for row in result["history"]]
    save_params(out, "cascades", corrected, dict(meta, loss=plain["loss"], debias={"iterations": debias, "path": path}))
    return FitResult(params=corrected, loss=plain["loss"], history=history, steps=sum(r["steps"] for r in fits),
                     averaged=corrected)


def world_from_meta(meta: Mapping) -> CascadeWorld:
    if "world" not in meta:
        return CascadeWorld()
    # fits saved before resharer audiences existed ran without them
    return CascadeWorld(**{"resharer_audience": False, **meta["world"]})


def evaluate(params: Path, data: list[Path], *, device: str = "cpu", seed: int = 0, split: str = "test",
             batch: int = 4, baseline: bool = True) -> dict[str, float]:
    """Metrics of the fitted model against the ``split`` cascades of ``data`` (exact trees, 72 h),
    and with ``baseline`` the same metrics (``ic_*``) of the Independent Cascade baseline fitted on
    the training cascades."""
    values, meta = load_params(params, kind="cascades")
    observed = cascade_targets(load_cascades(data, split=split))
    world = world_from_meta(meta)
    simulated = cascade_targets(simulate_cascades(world, values, batch=batch, seed=seed + 1, device=device))
    metrics = cascade_metrics(simulated, observed)
    metrics.update({f"observed_{k}": v for k, v in observed.summary().items()})
    metrics.update({f"simulated_{k}": v for k, v in simulated.summary().items()})
    if baseline:  # Independent Cascade with one probability, fitted on the training cascades
        train = cascade_targets(load_cascades(data, split="train"))
        p, ic = fit_independent_cascade(train, world, seed=seed + 2, device=device)
        metrics["ic_probability"] = p
        metrics.update({f"ic_{k}": v for k, v in cascade_metrics(ic, observed).items()})
    return metrics


def fit_independent_cascade(observed: CascadeTargets, world: CascadeWorld, *, batch: int = 2, seed: int = 0,
                            grid: Sequence[float] = tuple(torch.logspace(-2.5, -0.3, 12).tolist()),
                            device: str = "cpu", horizon_h: float = 6.0) -> tuple[float, CascadeTargets]:
    """The Independent Cascade baseline: one transmission probability ``p``, fitted by grid search.

    Sources are the world's highest-degree agents (an IC cascade has no out-of-graph audience), one
    chance per follower per newly activated agent; ``p`` minimises the squared error of the median
    log final size. Returns ``(p, simulated targets at p)``.
    """
    graph = world.graph(device)
    followers = torch.bincount(graph.col.long(), minlength=world.agents)
    hubs = torch.argsort(followers, descending=True)[: world.items].tolist()
    # an IC cascade is over within a few generations (one chance per follower, one step each)
    steps = math.ceil(min(float(observed.hours[-1]), horizon_h) / world.dt_h)
    target = float(observed.final_size.double().log().median())
    best = (math.inf, None, None)
    for p in grid:
        model = Model(cascade=Cascade.independent_cascade([Item(source=s) for s in hubs], p), dt=world.dt_h)
        state = world.initial_state(batch, device)
        with torch.no_grad():
            final = simulate(model, state, graph, steps=steps, record={}, seed=[seed + b for b in range(batch)],
                             estimator=Hard()).final
        table = CascadeTable.from_state(final.to("cpu"), [0.0] * world.items)
        targets = cascade_targets(table, observed.hours.tolist())
        error = (float(targets.final_size.double().log().median()) - target) ** 2
        if error < best[0]:
            best = (error, p, targets)
    return best[1], best[2]


# ----------------------------------------------------------------------------------------- forecasting
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


def _nearest_growth(features: Tensor, ensemble_features: Tensor, growth: Tensor, neighbours: int) -> Tensor:
    """``(M, k)`` growth after the observation window of the ``k`` ensemble members whose first-hour
    features are nearest each cascade's (approximate Bayesian computation by nearest neighbours)."""
    distance = torch.cdist(features, ensemble_features)  # (M, R)
    nearest = distance.topk(min(neighbours, distance.size(1)), largest=False).indices
    return growth[nearest]


def forecast(params: Path, data: list[Path], *, observe_h: float = 1.0, horizon_h: float = 72.0,
             split: str = "test", batch: int = 24, neighbours: int = 32, device: str = "cpu",
             seed: int = 0, postprocess: str = "emos") -> dict[str, float]:
    """Forecast each cascade's size at ``horizon_h`` from its first ``observe_h`` hours.

    The fitted model is conditioned on the observed prefix by simulation (approximate Bayesian
    computation): an ensemble of ``batch x C`` cascades is simulated on the device to the horizon;
    for each observed cascade the ``neighbours`` ensemble members whose prefix (log sizes every
    step up to ``observe_h`` and the share attached to the root) is closest are kept, and each
    contributes the growth it had after ``observe_h``, ``log S(horizon) - log S(observe_h)``, on top
    of the observed size: the model's forecast distribution.

    ``postprocess="emos"`` (default) calibrates that distribution on the training cascades, as
    weather centres post-process their ensembles (ensemble model output statistics, Gneiting et al.
    2005, Mon. Weather Rev. 133): ``log S(horizon)`` is regressed on the log observed size, the
    ensemble's median growth and the ensemble's spread (its 10-90% range of growth) over the
    training cascades, and the 80% interval is the forecast plus the 10% and 90% quantiles of the
    training residuals, widened in proportion to the ensemble spread. This removes the model's
    systematic errors (e.g. growth too concentrated in the first hour) while keeping what its
    simulated cascades know beyond the observed size. ``"none"`` reports the ensemble as it is.
    Both sets of metrics are returned (``model_*``: the ensemble before post-processing).

    The baseline regresses ``log S(horizon)`` on ``log S(observe_h)`` over the same training
    cascades (Szabo & Huberman 2010).

    A stronger baseline regresses on every first-hour feature the ensemble is conditioned on
    (``features_baseline_rmsle_size``), so what the simulated cascades add can be seen.

    Returns:
        ``rmsle_size``, ``medape_size``, ``coverage80``, ``model_rmsle_size``, ``model_medape_size``,
        ``model_coverage80``, ``baseline_rmsle_size``, ``baseline_medape_size``,
        ``features_baseline_rmsle_size``, ``rmsle_minus_baseline_lo`` / ``_hi`` (90% paired bootstrap
        interval over cascades of ``rmsle_size - baseline_rmsle_size``), ``cascades``, ``ensemble``.
    """
    if not 0 < observe_h < horizon_h:
        raise ConfigError(f"Expected 0 < observe_h < horizon_h (got {observe_h}, {horizon_h})")
    if postprocess not in ("emos", "none"):
        raise ConfigError(f"Expected postprocess 'emos' or 'none' (got {postprocess!r})")
    values, meta = load_params(params, kind="cascades")
    world = world_from_meta(meta)
    observe_hours = [world.dt_h * k for k in range(1, round(observe_h / world.dt_h) + 1)]
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
    model = world.model(values).to(device)
    model.cascade.record_trees = False
    steps = math.ceil(horizon_h / world.dt_h)
    with torch.no_grad():
        trajectory = simulate(model, world.initial_state(batch, device), graph, steps=steps, record=RECORD,
                              seed=[seed * 1_000_003 + 17 + b for b in range(batch)], estimator=Hard())
    sizes = trajectory["size"].reshape(steps + 1, -1).T.double().cpu()  # (R, S+1)
    at = [round(h / world.dt_h) for h in observe_hours]
    direct = trajectory["direct"][1 : at[-1] + 1].sum(0).reshape(-1).double().cpu()
    ensemble_root = direct / (sizes[:, at[-1]] - 1).clamp_min(1.0)
    ensemble_features = _first_hour_features(sizes[:, at], ensemble_root)
    growth = sizes[:, -1].clamp_min(1.0).log() - sizes[:, at[-1]].clamp_min(1.0).log()  # (R,)
    levels = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)

    def model_forecast(size_at: Tensor, root: Tensor) -> tuple[Tensor, Tensor]:
        """log observed size, and the ensemble's 10/50/90% growth quantiles ``(3, M)``."""
        grown = _nearest_growth(_first_hour_features(size_at, root), ensemble_features, growth, neighbours)
        return size_at[:, -1].clamp_min(1.0).log(), torch.quantile(grown, levels, dim=1)

    def design(log_observed: Tensor, q: Tensor) -> Tensor:
        return torch.stack([torch.ones_like(log_observed), log_observed, q[1], q[2] - q[0]], 1)

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
        train_log_obs, train_q = model_forecast(train_size, train_root)
        x_train = design(train_log_obs, train_q)
        target = train_final.clamp_min(1.0).log()
        coef = torch.linalg.lstsq(x_train, target[:, None]).solution[:, 0]
        # residuals scaled by the ensemble spread (plus its training median, so a zero spread still
        # gets an interval): wider ensembles get wider intervals
        typical_spread = float((train_q[2] - train_q[0]).median())

        def spread(qs: Tensor) -> Tensor:
            return (qs[2] - qs[0]) + typical_spread

        scaled = (target - x_train @ coef) / spread(train_q)
        low_r, high_r = torch.quantile(scaled, torch.tensor([0.1, 0.9], dtype=torch.float64))
        centre = design(log_obs, q) @ coef
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
    def with_features(size_at: Tensor, root: Tensor) -> Tensor:
        return torch.cat([torch.ones_like(root)[:, None], _first_hour_features(size_at, root)], 1)

    rich = torch.linalg.lstsq(with_features(train_size, train_root), train_target[:, None]).solution[:, 0]
    rich_forecast = (with_features(test_size, test_root) @ rich).exp()
    metrics["features_baseline_rmsle_size"] = float(squared_log_errors(rich_forecast).mean().sqrt())
    # 90% paired bootstrap interval (over cascades) of rmsle_size - baseline_rmsle_size
    own, base = squared_log_errors(forecast_median), squared_log_errors(baseline)
    draw = torch.randint(0, truth.numel(), (2000, truth.numel()), generator=torch.Generator().manual_seed(seed))
    gap = own[draw].mean(1).sqrt() - base[draw].mean(1).sqrt()
    low, high = torch.quantile(gap, torch.tensor([0.05, 0.95], dtype=torch.float64))
    metrics["rmsle_minus_baseline_lo"], metrics["rmsle_minus_baseline_hi"] = float(low), float(high)
    metrics.update({"cascades": float(truth.numel()), "ensemble": float(sizes.size(0)), "observe_h": observe_h,
                    "horizon_h": horizon_h, "postprocess": postprocess})
    return metrics


# ------------------------------------------------------------------------------ gradient-free baseline
def set_params(model: Model, values: Mapping[str, float]) -> None:
    """Write constrained parameter values into a world model's raw parameters (in place)."""
    c = model.cascade
    with torch.no_grad():
        for name, value in values.items():
            attribute, transform = _RAW[name]
            getattr(c, attribute).fill_(transform(float(value)))


#: search box of the gradient-free baseline (log-uniform where a parameter spans orders of magnitude)
TPE_BOUNDS = {"transmissibility": (1e-4, 0.2, True), "audience": (1e2, 1e6, True), "audience_spread": (0.05, 3.0, False),
              "attention": (0.02, 0.98, False), "attention_spread": (0.05, 4.0, False),
              "feed_half_life_h": (0.02, 10.0, True), "feed_tail": (1.05, 5.0, False),
              "resharer_audience": (1.0, 1e4, True), "resharer_audience_spread": (0.05, 3.0, False)}


def fit_tpe(module: CascadeCalibration, *, budget_s: float, seed: int = 0) -> FitResult:
    """The gradient-free baseline: optuna's TPE sampler minimising the same loss (same simulation,
    same seeds per evaluation index) over :data:`TPE_BOUNDS` for the parameters ``module`` fits,
    starting from ``module``'s current values, for ``budget_s`` seconds of wall time."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    free = [name for name in module.world.params if name not in module.fixed]
    start_values = module.fitted_params()
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial({name: start_values[name] for name in free})
    history: list[tuple[float, int, float]] = []
    start = time.perf_counter()

    def objective(trial) -> float:
        values = {name: trial.suggest_float(name, low, high, log=log)
                  for name, (low, high, log) in TPE_BOUNDS.items() if name in free}
        set_params(module.model, values)
        with torch.no_grad():
            loss = float(module.loss_terms(trial.number)["loss"])
        history.append((time.perf_counter() - start, trial.number + 1, loss))
        return loss

    study.optimize(objective, timeout=budget_s)
    best = dict(start_values, **study.best_params)
    set_params(module.model, best)
    return FitResult(params=best, loss=study.best_value, history=history, steps=len(study.trials))


def compare_with_tpe(data: list[Path], out_dir: Path, *, budget_s: float, split: str = "train", seed: int = 0,
                     evaluations: int = 4, world: Optional[CascadeWorld] = None) -> dict:
    """Gradient descent vs TPE on the same loss at the same wall-time budget.

    Both start from :data:`DEFAULTS`. Each method's training losses are single noisy simulations,
    so the final comparison re-evaluates both fitted parameter sets on ``evaluations`` common seeds
    never used in training. Writes ``out_dir/compare.json`` with both loss-vs-time histories.
    """
    from lpm.calibration.common import atomic_write_json

    observed = cascade_targets(load_cascades(data, split=split))
    world = world or CascadeWorld()
    gradient = CascadeCalibration(observed, world, seed=seed)
    grad_result = fit(gradient, kind="cascades", max_steps=10_000, budget_s=budget_s, out=out_dir / "gradient.json",
                      work_dir=out_dir / "gradient_work", logger="csv", progress=False)
    tpe = CascadeCalibration(observed, world, seed=seed)
    tpe_result = fit_tpe(tpe, budget_s=budget_s, seed=seed)
    save_params(out_dir / "tpe.json", "cascades", tpe_result["params"], {"world": world.__dict__, "loss": tpe_result["loss"]})

    def held_out_loss(module: CascadeCalibration, params: Mapping[str, float]) -> float:
        set_params(module.model, params)
        with torch.no_grad():
            return sum(float(module.loss_terms(10**6 + k)["loss"]) for k in range(evaluations)) / evaluations

    report = {"budget_s": budget_s, "world": world.__dict__,
              "gradient": {"steps": grad_result["steps"], "params": grad_result["params"],
                           "eval_loss": held_out_loss(gradient, grad_result["params"]), "history": grad_result["history"]},
              "tpe": {"trials": tpe_result["steps"], "params": tpe_result["params"],
                      "eval_loss": held_out_loss(tpe, tpe_result["params"]), "history": tpe_result["history"]}}
    atomic_write_json(out_dir / "compare.json", report)
    return report


def apply_params(model: Model, values: Mapping[str, float]) -> list[str]:
    """Set a scenario model's cascade parameters to fitted values; returns the names applied.

    A fitted parameter applies where the scenario's :class:`~lpm.dynamics.Cascade` has that
    ingredient (e.g. ``feed_tail`` only with a power-law feed); the others are left as the scenario
    set them, and the caller reports which.
    """
    cascade = getattr(model, "cascade", None)
    if not isinstance(cascade, Cascade):
        raise ConfigError(f"Expected a scenario model with a Cascade to take cascade parameters (got {type(cascade).__name__})")
    applicable = {name: value for name, value in values.items()
                  if name in _RAW and getattr(cascade, _RAW[name][0], None) is not None}
    set_params(model, applicable)
    return sorted(applicable)


# ------------------------------------------------------------------------------ posterior-predictive check
#: metrics of :func:`lpm.targets.cascade_metrics`, in report order
CHECK_METRICS = ("nrmse_size", "nrmse_depth", "nrmse_breadth", "ks_size", "ks_delay", "root_share_error")


def check(params: Path, data: list[Path], *, split: str = "test", device: str = "cpu", seed: int = 0,
          simulated_per_observed: float = 2.0, draws: int = 200, window_h: float = 72.0, select_like_data: bool = True):
    """Posterior-predictive check of a cascade fit: exact (sampled) cascades at the fitted parameters
    against the ``split`` cascades, beside the naive reference of copying other observed cascades.

    The model's metrics (:data:`CHECK_METRICS`) come from ``simulated_per_observed`` times as many
    simulated cascades as there are observed ones (exact reshare trees, ``window_h`` hours). The
    reference ``copy_data`` uses other real cascades of the same collection as the prediction: the
    training split when checking ``test``, the test split when checking ``train``, and one random
    half against the other for ``all``. With ``select_like_data`` the simulated cascades pass the
    collection's size filter (at least the 1% quantile of the reference cascades' final sizes). Noise: ``model_noise`` is the bootstrap SD of each metric over
    the simulated cascades (the simulation's own sampling), ``reference_noise`` that of the reference
    over the observed cascades (which cascades happened to be observed); the verdict compares the
    model with the reference within their sum.

    Returns:
        a :class:`~lpm.calibration.check.CheckReport` with figures ``sizes`` (CCDFs of final size,
        depth and breadth), ``timing`` (delay CDF and mean growth curve) and ``root`` (root share).
    """
    from lpm.calibration.check import CheckReport, rows_from

    if split not in ("train", "test", "all"):
        raise ConfigError(f"Expected split 'train', 'test' or 'all' (got {split!r})")
    if not simulated_per_observed > 0:
        raise ConfigError(f"Expected simulated_per_observed > 0 (got {simulated_per_observed})")
    values, meta = load_params(params, kind="cascades")
    world = world_from_meta(meta)
    hours = [h for h in GROWTH_HOURS if h <= window_h]
    if split == "all":
        table = load_cascades(data, split="all", window_h=window_h)
        half = torch.randperm(table.num_cascades, generator=torch.Generator().manual_seed(seed))
        observed_table, other_table = table.select(half[: table.num_cascades // 2]), table.select(half[table.num_cascades // 2:])
        reference_source = "a random half of all cascades, against the other half"
    else:
        other = "test" if split == "train" else "train"
        observed_table = load_cascades(data, split=split, window_h=window_h)
        other_table = load_cascades(data, split=other, window_h=window_h)
        reference_source = f"the {other} split's cascades"
    observed = cascade_targets(observed_table, hours)
    copy = cascade_targets(other_table, hours)
    # The collection kept only cascades of some minimum size (Twitter15: >= 56 nodes over all time),
    # so simulated cascades pass the same filter, its threshold read off the reference cascades
    # (never the checked split): the 1% quantile of their final sizes in the window (Twitter15
    # training split: 58 at 72 h; the minimum is 1, a few cascades growing only after the window).
    min_size = float(torch.quantile(copy.final_size.double(), 0.01)) if select_like_data else 0.0
    batch = max(1, math.ceil(simulated_per_observed * observed.num_cascades / world.items))
    simulated_all = cascade_targets(simulate_cascades(world, values, hours=hours, batch=batch, seed=seed + 1,
                                                      device=device), hours)
    kept = torch.nonzero(simulated_all.final_size >= min_size).squeeze(1)
    if kept.numel() < 2:
        raise ConfigError(f"Expected simulated cascades of at least {min_size:g} nodes, as in the data (got "
                          f"{kept.numel()} of {simulated_all.num_cascades}); the fitted model spreads too little")
    simulated = simulated_all.resample(kept)

    model = cascade_metrics(simulated, observed)
    reference = cascade_metrics(copy, observed)

    def spread(metric_of: Callable[[Tensor], dict[str, float]], units: int) -> dict[str, float]:
        samples = [metric_of(index) for index in _bootstrap_indices(units, draws, seed)]
        return {m: float(torch.tensor([s[m] for s in samples], dtype=torch.float64).std()) for m in CHECK_METRICS}

    model_noise = spread(lambda i: cascade_metrics(simulated.resample(i), observed), simulated.num_cascades)
    reference_noise = spread(lambda i: cascade_metrics(copy, observed.resample(i)), observed.num_cascades)
    rows = rows_from(model, model_noise, {"copy_data": reference}, reference_noise, CHECK_METRICS)
    report = CheckReport("cascades", split, rows, ["copy_data"], meta={
        "params": str(params), "observed_cascades": observed.num_cascades, "simulated_cascades": simulated.num_cascades,
        "simulated_before_size_filter": simulated_all.num_cascades, "size_filter_min_nodes": min_size,
        "reference": reference_source, "window_h": window_h, "bootstrap_draws": draws, "fitted": dict(values),
        "observed_summary": observed.summary(), "simulated_summary": simulated.summary(),
        "reference_summary": copy.summary()})
    report.figures.update(_check_figures(observed, simulated, copy, draws=min(draws, 100), seed=seed))
    return report


def _bootstrap_indices(units: int, draws: int, seed: int) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, units, (units,), generator=generator) for _ in range(draws)]


def _check_figures(observed: CascadeTargets, simulated: CascadeTargets, copy: CascadeTargets, *, draws: int,
                   seed: int) -> dict:
    """Observed, simulated (with a 90% bootstrap band over simulated cascades) and the copy reference."""
    from matplotlib.figure import Figure

    def ccdf(values: Tensor, grid: Tensor) -> Tensor:
        values = values.double().sort().values
        return 1.0 - torch.searchsorted(values, grid, right=True).double() / values.numel()

    def band(statistic: Callable[[CascadeTargets], Tensor]) -> tuple[Tensor, Tensor]:
        curves = torch.stack([statistic(simulated.resample(i)) for i in _bootstrap_indices(simulated.num_cascades, draws, seed)])
        return torch.quantile(curves, 0.05, dim=0), torch.quantile(curves, 0.95, dim=0)

    def panel(ax, grid: Tensor, statistic: Callable[[CascadeTargets], Tensor], title: str, xlabel: str,
              ylabel: str, log: bool) -> None:
        low, high = band(statistic)
        ax.fill_between(grid.numpy(), low.numpy(), high.numpy(), color="tab:blue", alpha=0.25, label="simulated 90% band")
        ax.plot(grid.numpy(), statistic(simulated).numpy(), color="tab:blue", label="simulated")
        ax.plot(grid.numpy(), statistic(copy).numpy(), color="tab:gray", linestyle="--", label="copy reference")
        ax.plot(grid.numpy(), statistic(observed).numpy(), color="black", label="observed")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")

    figures = {}
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    top = float(max(observed.final_size.max(), simulated.final_size.max()))
    size_grid = torch.logspace(0, math.log10(max(top, 10.0)), 60, dtype=torch.float64)
    panel(axes[0], size_grid, lambda t: ccdf(t.final_size, size_grid), "final size", "nodes", "share of cascades > x", True)
    depth_grid = torch.arange(0, int(max(observed.depth[:, -1].max(), simulated.depth[:, -1].max())) + 2, dtype=torch.float64)
    panel(axes[1], depth_grid, lambda t: ccdf(t.depth[:, -1], depth_grid), "final depth", "depth", "share > x", False)
    top = float(max(observed.breadth[:, -1].max(), simulated.breadth[:, -1].max()))
    breadth_grid = torch.logspace(0, math.log10(max(top, 10.0)), 60, dtype=torch.float64)
    panel(axes[2], breadth_grid, lambda t: ccdf(t.breadth[:, -1], breadth_grid), "max breadth", "nodes at one depth",
          "share > x", True)
    axes[0].legend(fontsize=8)
    figures["sizes"] = fig

    fig = Figure(figsize=(9, 3.8))
    axes = fig.subplots(1, 2)
    delay_grid = torch.logspace(-2, math.log10(float(observed.hours[-1])), 60, dtype=torch.float64)
    panel(axes[0], delay_grid, lambda t: 1.0 - ccdf(t.delays, delay_grid), "reshare delays", "hours since the source",
          "share of reshares <= x", False)
    axes[0].set_xscale("log")
    hours = observed.hours
    panel(axes[1], hours, lambda t: t.size.mean(0), "mean size over time", "hours", "nodes", False)
    axes[1].set_xscale("log")
    axes[0].legend(fontsize=8)
    figures["timing"] = fig

    fig = Figure(figsize=(4.5, 3.8))
    ax = fig.subplots()
    grid = torch.linspace(0, 1, 41, dtype=torch.float64)
    panel(ax, grid, lambda t: 1.0 - ccdf(t.root_share.nan_to_num(1.0), grid), "reshares attached to the root",
          "share per cascade", "share of cascades <= x", False)
    ax.legend(fontsize=8)
    figures["root"] = fig
    return figures
