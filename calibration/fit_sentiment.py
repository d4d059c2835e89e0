"""Calibrate collective sentiment and posting volume around disasters (Meng & Dong 2020 series).

Mechanism (the disaster scenario's ingredients, fitted). An event's *news intensity* rises before the
peak day (forecasts, warnings) and decays after it:

    I(t) = exp(-(t0 - t) / rise)  for t < t0,    exp(-(t - t0) / decay)  for t >= t0,

with ``t0`` at noon of the aligned peak day. It drives two things on one follower graph:

* posting: a network Hawkes process whose baseline rate is multiplied by ``1 + burst_size I(t)``;
* emotion: users in the hit region (30%) are pushed along valence with force ``shock_valence I(t)``
  (signed: negative = distress; positive = the flood of warnings, updates and solidarity that dilutes
  negativity at the peak, as in Sandy and Harvey) and toward high arousal with force ``I(t)``; emotions
  spread from seen posts (``coupling``) and relax (``emotion_decay``).

A post is labelled negative with probability ``sigmoid(logit(baseline_negative_share) - k valence)``:
the data is keyword-filtered, so even at rest most posts are negative (base rate ~0.75).

Targets per event, aligned on the peak-volume day (7 days before to 14 after by default): daily volume
normalised by the peak day (keyword-collected volumes are not comparable across events; shapes are)
and the daily share of negative posts. Loss: NRMSE of the volume curve + pseudo-Huber MAE of the
negative share, averaged over training events. One parameter set is shared by all events, so a fit
on some events predicts held-out ones.

Estimator: mean-field (:class:`lpm.targets_series.ExpectedEvents`): every target is an aggregate of
thousands of posts per day, so the simulated target is the expected count; gradients are exact (no
straight-through bias, no relaxation temperature) and the loss is smooth. Agents stay heterogeneous
(posting rates, susceptibility, region, graph position). The simulation is still seeded with the
global step, so a sampled estimator could be swapped in and a resumed fit would replay its draws.

Fixed (not identifiable from these targets): the Hawkes baseline ``mu`` (cancels in the peak
normalisation), the branching ratio (its kernel, ~1 h, is far below the daily resolution, and it
scales baseline and burst alike), the label sensitivity ``k`` (only ``k * shock_valence`` is seen: the
emotion dynamics are linear in the shock) and the region share. ``coupling`` is learnable but only
weakly identifiable: contagion moves negativity from the region to its followers but nearly conserves
mean valence, which is what the aggregate negative share measures.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lpm.calibration.common import CalibrationModule, FitResult, SeriesModel, config_from_meta, fit, load_params, split_index
from lpm.dynamics.activity import Hawkes
from lpm.dynamics.base import inverse_softplus, logit, softplus
from lpm.dynamics.emotion import EmotionContagion
from lpm.errors import ConfigError, DataFormatError
from lpm.graph import Graph
from lpm.model import Model, StepEvents
from lpm.observables import posts as posts_observable
from lpm.simulate import simulate
from lpm.state import PopulationState, Traits
from lpm.targets_series import (ExpectedEvents, SeriesTargets, daily_totals, mae, nrmse, pearson, sentiment_targets,
                                smooth_mae)

__all__ = ["SentimentConfig", "SentimentModel", "SentimentCalibration", "LEARNABLE", "load_events",
           "observed_targets", "sentiment_loss", "calibrate", "evaluate"]

KIND = "sentiment"

#: Fitted parameters (constrained values), in the order they are reported.
LEARNABLE = ("burst_size", "burst_rise_h", "burst_decay_h", "shock_valence", "emotion_decay", "coupling",
             "baseline_negative_share")

DEFAULT_INIT = {"burst_size": 10.0, "burst_rise_h": 12.0, "burst_decay_h": 24.0, "shock_valence": -0.1,
                "emotion_decay": 0.05, "coupling": 0.5, "baseline_negative_share": 0.75}

# value = unit * softplus(raw): Adam's steps on ``raw`` are then relative to the parameter's scale
_UNITS = {"burst_size": 10.0, "burst_rise_h": 24.0, "burst_decay_h": 24.0}


@dataclass(frozen=True)
class SentimentConfig:
    """Fixed settings of the sentiment model (stored in the fitted file's meta, so ``evaluate``
    rebuilds the same model).

    Args:
        agents: population size N.
        days_before, days_after: the aligned window around the peak day (day ``days_before``).
        dt: step length in hours (a divisor of 24). The emotion update is explicit Euler: keep
            ``coupling * dt`` below ~1 (dt <= 2 h for fitted couplings up to ~0.5-1 per hour).
        onset_h: hour of the peak day at which the news intensity peaks.
        region_share: share of users in the hit region (they receive the emotional shock).
        label_sensitivity: ``k``, logit change of the negative label per unit of valence.
        min_posts: observed days with fewer posts are left out of the negative-share target.
        mu, alpha, beta: fixed Hawkes baseline (posts/h), excitation and decay (1/h).
        negative_weight: weight of the negative-share term in the loss.
    """

    agents: int = 400
    days_before: int = 7
    days_after: int = 14
    dt: float = 1.0
    onset_h: float = 12.0
    region_share: float = 0.3
    label_sensitivity: float = 4.0
    min_posts: float = 20.0
    mu: float = 0.05
    alpha: float = 0.5
    beta: float = 1.0
    negative_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.agents < 2:
            raise ConfigError(f"Expected at least 2 agents (got {self.agents})")
        if self.days_before < 0 or self.days_after < 0:
            raise ConfigError(f"Expected non-negative days_before/days_after (got {self.days_before}, {self.days_after})")
        per_day = 24.0 / self.dt if self.dt > 0 else float("nan")
        if not (self.dt > 0 and abs(per_day - round(per_day)) < 1e-9):
            raise ConfigError(f"Expected a step dt (hours) that divides 24 (got {self.dt})")
        if not 0.0 <= self.onset_h < 24.0:
            raise ConfigError(f"Expected onset_h in [0, 24) (got {self.onset_h})")
        if not 0.0 < self.region_share <= 1.0:
            raise ConfigError(f"Expected region_share in (0, 1] (got {self.region_share})")

    @property
    def days(self) -> int:
        return self.days_before + self.days_after + 1

    @property
    def steps_per_day(self) -> int:
        return int(round(24.0 / self.dt))

    @property
    def steps(self) -> int:
        return self.days * self.steps_per_day

    @property
    def peak_h(self) -> float:
        return 24.0 * self.days_before + self.onset_h


class NewsIntensity(nn.Module):
    """``I(t)``: exponential rise to 1 at ``peak_h``, exponential decay after (see the module docstring)."""

    def __init__(self, peak_h: float, rise_h: float, decay_h: float) -> None:
        super().__init__()
        self.peak_h = float(peak_h)
        self.raw_rise = nn.Parameter(torch.tensor(inverse_softplus(rise_h / _UNITS["burst_rise_h"])))
        self.raw_decay = nn.Parameter(torch.tensor(inverse_softplus(decay_h / _UNITS["burst_decay_h"])))

    @property
    def rise_h(self) -> Tensor:
        return _UNITS["burst_rise_h"] * softplus(self.raw_rise)

    @property
    def decay_h(self) -> Tensor:
        return _UNITS["burst_decay_h"] * softplus(self.raw_decay)

    def forward(self, time_h: float) -> Tensor:
        lag = time_h - self.peak_h  # a Python float: the branch is decided on the host
        return torch.exp(lag / self.rise_h) if lag < 0 else torch.exp(-lag / self.decay_h)


class NewsHawkes(Hawkes):
    """Hawkes activity whose baseline is multiplied by ``1 + burst_size * I(t)``."""

    def __init__(self, intensity: NewsIntensity, burst_size: float, *, mu: float, alpha: float, beta: float) -> None:
        super().__init__(mu, alpha, beta, rhythm_amplitude=None)  # a daily rhythm averages out in daily bins
        self.news = intensity
        self.raw_burst_size = nn.Parameter(torch.tensor(inverse_softplus(burst_size / _UNITS["burst_size"])))

    @property
    def burst_size(self) -> Tensor:
        return _UNITS["burst_size"] * softplus(self.raw_burst_size)

    def exogenous_factor(self, time_h: float) -> Tensor:
        return 1 + self.burst_size * self.news(time_h)


class NewsEmotion(EmotionContagion):
    """Emotion contagion whose shock is ``(valence, 1) * I(t)`` on the agents of ``region``: a signed,
    learnable valence drive and a unit arousal drive (arousal is not observed, so its scale is fixed).
    The inherited ``shock_gain`` stays at 1 and is not fitted (it would only rescale ``valence``)."""

    def __init__(self, intensity: NewsIntensity, region: Tensor, *, coupling: float, decay: float,
                 valence: float) -> None:
        super().__init__(coupling, decay, order=1)
        self.news = intensity
        self.raw_shock_gain.requires_grad_(False)
        self.valence = nn.Parameter(torch.tensor(float(valence)))
        self.register_buffer("region", region.double()[:, None])  # (N, 1), moved with the module

    def shock_drive(self, time_h: float, like: Tensor) -> Tensor:
        impulse = torch.stack([self.valence, torch.ones_like(self.valence)]).to(like.dtype)  # (valence, arousal)
        return self.region.to(like.dtype) * impulse * self.news(time_h).to(like.dtype)


class NegativeLabel(nn.Module):
    """Observable: expected negative posts in the step, ``sum_i posts_i sigmoid(c - k valence_i)``."""

    def __init__(self, baseline_share: float, sensitivity: float) -> None:
        super().__init__()
        self.raw_baseline = nn.Parameter(torch.tensor(logit(baseline_share)))
        self.sensitivity = float(sensitivity)

    @property
    def baseline_share(self) -> Tensor:
        return torch.sigmoid(self.raw_baseline)

    def forward(self, state: PopulationState, events: StepEvents) -> Tensor:
        if events.posts is None:
            return state.activity.new_zeros(state.batch_size)
        negative = torch.sigmoid(self.raw_baseline - self.sensitivity * state.emotion[..., 0])
        return (events.posts * negative).sum(1)


class SentimentModel(SeriesModel, nn.Module):
    """The population, its graph and the sentiment dynamics, with named constrained parameters.

    ``simulate_targets`` runs :func:`lpm.simulate` over the aligned window and returns the daily
    targets of the simulated posts, computed like the observed ones.
    """

    def __init__(self, config: SentimentConfig, params: Optional[Mapping[str, float]] = None, *, seed: int = 0) -> None:
        super().__init__()
        values = {**DEFAULT_INIT, **(params or {})}
        unknown = sorted(set(values) - set(LEARNABLE))
        if unknown:
            raise ConfigError(f"Expected sentiment parameters among {list(LEARNABLE)} (got {unknown})")
        self.config = config
        n = config.agents
        self.graph = Graph.holme_kim(n, min(3, n - 1), 0.3, seed=seed)
        gen = torch.Generator().manual_seed(seed + 101)
        region = torch.rand(n, generator=gen) < config.region_share
        traits = Traits.sample(n, seed=seed + 1, batch=1, dtype=torch.float64)
        for name in ("susceptibility", "stubbornness", "confidence", "baseline_rate"):
            self.register_buffer(f"trait_{name}", getattr(traits, name).clone())
        news = NewsIntensity(config.peak_h, values["burst_rise_h"], values["burst_decay_h"])
        self.model = Model(
            emotion=NewsEmotion(news, region, coupling=values["coupling"], decay=values["emotion_decay"],
                                valence=values["shock_valence"]),
            activity=NewsHawkes(news, values["burst_size"], mu=config.mu, alpha=config.alpha, beta=config.beta),
            dt=config.dt,
        )
        for fixed in (self.model.activity.raw_mu, self.model.activity.raw_alpha, self.model.activity.raw_beta):
            fixed.requires_grad_(False)
        self.label = NegativeLabel(values["baseline_negative_share"], config.label_sensitivity)
        self._graphs: dict[str, Graph] = {}

    def raw_parameters(self) -> dict[str, nn.Parameter]:
        """``{name: unconstrained parameter}`` of the fitted parameters."""
        emotion, activity = self.model.emotion, self.model.activity
        return {"burst_size": activity.raw_burst_size, "burst_rise_h": activity.news.raw_rise,
                "burst_decay_h": activity.news.raw_decay, "shock_valence": emotion.valence,
                "emotion_decay": emotion.raw_decay, "coupling": emotion.raw_coupling,
                "baseline_negative_share": self.label.raw_baseline}

    def values(self) -> dict[str, Tensor]:
        """``{name: constrained value}`` (0-dim tensors, differentiable)."""
        emotion, activity = self.model.emotion, self.model.activity
        return {"burst_size": activity.burst_size, "burst_rise_h": activity.news.rise_h,
                "burst_decay_h": activity.news.decay_h, "shock_valence": emotion.valence,
                "emotion_decay": emotion.decay, "coupling": emotion.coupling,
                "baseline_negative_share": self.label.baseline_share}

    def initial_state(self) -> PopulationState:
        """Everyone at neutral emotion and no recent posts; dtype and device of the parameters."""
        like = self.label.raw_baseline
        n = self.config.agents
        traits = Traits(*[getattr(self, f"trait_{f.name}").to(like.dtype) for f in dataclasses.fields(Traits)])
        return PopulationState.create(like.new_zeros(1, n, 1), like.new_zeros(1, n, 2), traits=traits)

    def simulate_targets(self, seed: int = 0) -> SeriesTargets:
        """Daily targets of one simulated window. Shapes: each field ``(D,)``."""
        state = self.initial_state()
        trajectory = simulate(self.model, state, self.graph_on(state.device), steps=self.config.steps, seed=seed,
                              estimator=ExpectedEvents(),
                              record={"posts": posts_observable, "negative_posts": self.label})
        per_step = {k: trajectory[k][1:, 0] for k in ("posts", "negative_posts")}  # row 0 is the initial state
        days = {k: daily_totals(v, self.config.steps_per_day) for k, v in per_step.items()}
        return sentiment_targets(days["posts"], days["negative_posts"], anchor=self.config.days_before)


def sentiment_loss(sim: SeriesTargets, volume: Tensor, negative_share: Tensor, negative_weight: float = 1.0) -> Tensor:
    """Mean over events of ``NRMSE(volume) + negative_weight * pseudo-Huber MAE(negative share)``.

    Shapes: ``sim`` fields ``(D,)``; observed ``volume``, ``negative_share`` ``(V, D)`` (NaN = missing).
    """
    vol = nrmse(sim.volume.expand_as(volume), volume)
    neg = smooth_mae(sim.negative_share.expand_as(negative_share), negative_share)
    return (vol + negative_weight * neg).mean()


# ---------------------------------------------------------------------------- data


def _csv_files(data: Sequence[Path | str]) -> list[Path]:
    files: list[Path] = []
    for item in data:
        path = Path(item)
        if path.is_dir():
            found = sorted(path.glob("*.csv"))
            if not found:
                raise DataFormatError(f"Expected event CSV files in {path} (got none)")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataFormatError(f"Expected an event CSV file or a folder of them (got {path}, which does not exist)")
    names = [f.stem for f in files]
    if len(set(names)) != len(names):
        raise DataFormatError(f"Expected distinct event names (got {sorted(names)})")
    return files


def load_events(data: Sequence[Path | str]) -> dict[str, object]:
    """``{event name: DisasterSeries}`` for the CSV files (or folders of CSV files) in ``data``."""
    from lpm.data.disaster import load_disaster

    return {f.stem: load_disaster(f) for f in _csv_files(data)}


def observed_targets(series, config: SentimentConfig) -> SeriesTargets:
    """Targets of one observed event (a ``DisasterSeries``) on the config's aligned window."""
    volume, share = series.aligned(config.days_before, config.days_after)
    posts = torch.as_tensor(volume, dtype=torch.float64)
    negative = posts * torch.as_tensor(share, dtype=torch.float64)
    return sentiment_targets(posts, negative, anchor=config.days_before, min_posts=config.min_posts)


def _select(events: Mapping[str, object], split: str) -> list[str]:
    names = sorted(events)
    keep = [names[i] for i in split_index(names, split)]
    if not keep:
        raise DataFormatError(f"Expected at least one event in split {split!r} of {names} (got none)")
    return keep


# ---------------------------------------------------------------------------- Lightning module


class SentimentCalibration(CalibrationModule, pl.LightningModule):
    """Lightning module fitting :class:`SentimentModel` to observed event targets.

    Args:
        observed: ``{event: SeriesTargets}`` (each field ``(D,)`` on the config's window).
        config: fixed model settings.
        init: starting values of the learnable parameters (defaults: :data:`DEFAULT_INIT`).
        learn: names of the parameters to fit; the others stay at their ``init`` values.
        seed: population seed (graph, traits, region) and base of the per-step simulation seeds.
        learning_rate: Adam step on the unconstrained parameters.
    """

    def __init__(self, observed: Mapping[str, SeriesTargets], config: SentimentConfig = SentimentConfig(), *,
                 init: Optional[Mapping[str, float]] = None, learn: Sequence[str] = LEARNABLE, seed: int = 0,
                 learning_rate: float = 0.05) -> None:
        super().__init__()
        if not observed:
            raise DataFormatError("Expected at least one observed event (got none)")
        bad = sorted(set(learn) - set(LEARNABLE))
        if bad:
            raise ConfigError(f"Expected learnable parameters among {list(LEARNABLE)} (got {bad})")
        self.config, self.seed, self.learning_rate = config, int(seed), float(learning_rate)
        self.events = sorted(observed)
        for name in self.events:
            if observed[name].volume.shape != (config.days,):
                raise DataFormatError(f"Expected observed series of {config.days} days for {name} "
                                      f"(got shape {tuple(observed[name].volume.shape)})")
        self.register_buffer("obs_volume", torch.stack([observed[e].volume for e in self.events]).float())
        self.register_buffer("obs_negative", torch.stack([observed[e].negative_share for e in self.events]).float())
        self.sim = SentimentModel(config, init, seed=seed)
        for name, raw in self.sim.raw_parameters().items():
            raw.requires_grad_(name in learn)
        self.params_before_step: dict[str, float] = self.sim.fitted_params()

    def loss(self, seed: int = 0) -> Tensor:
        sim = self.sim.simulate_targets(seed)
        return sentiment_loss(sim, self.obs_volume.to(sim.volume.dtype), self.obs_negative.to(sim.volume.dtype),
                              self.config.negative_weight)

    def fitted_params(self) -> dict[str, float]:
        return self.sim.fitted_params()


# ---------------------------------------------------------------------------- entry points


def _config_from(meta: Mapping[str, object]) -> SentimentConfig:
    return config_from_meta(meta, SentimentConfig)


def calibrate(data: list[Path], out: Path, *, budget_s: float | None = None, device: str = "cpu", seed: int = 0,
              work_dir: Path | None = None, resume: bool = False, progress: bool = True, max_steps: int = 200,
              split: str = "all", logger: str = "wandb", config: SentimentConfig = SentimentConfig()) -> FitResult:
    """Fit the sentiment model to disaster events and write the best parameters to ``out``.

    Args:
        data: event CSV files and/or folders of them (one event per file, named by the file stem).
        out: fitted-parameter JSON (rewritten at every improvement; meta holds the config and events).
        split: ``"all"``, or ``"train"`` / ``"test"`` of the event-level hold-out split
            (:func:`lpm.calibration.common.split_index` on the event names).
        Other arguments: as :func:`lpm.calibration.common.fit`.

    Returns:
        The :class:`~lpm.calibration.common.FitResult`.
    """
    events = load_events(data)
    names = _select(events, split)
    observed = {name: observed_targets(events[name], config) for name in names}
    module = SentimentCalibration(observed, config, seed=seed)
    meta = {"events": names, "split": split, "seed": seed, "config": dataclasses.asdict(config),
            "estimator": "mean-field"}
    return fit(module, kind=KIND, max_steps=max_steps, budget_s=budget_s, out=out, work_dir=work_dir, resume=resume,
               logger=logger, device=device, progress=progress, meta=meta)


def metrics(sim: SeriesTargets, observed: Mapping[str, SeriesTargets]) -> dict[str, float]:
    """``pearson_volume``, ``mae_negative_share`` and ``nrmse_volume``: means over events, and per
    event under ``<metric>/<event>``."""
    out: dict[str, float] = {}
    for name, obs in observed.items():
        out[f"pearson_volume/{name}"] = float(pearson(sim.volume.double(), obs.volume.double()))
        out[f"nrmse_volume/{name}"] = float(nrmse(sim.volume.double(), obs.volume.double()))
        out[f"mae_negative_share/{name}"] = float(mae(sim.negative_share.double(), obs.negative_share.double()))
    for metric in ("pearson_volume", "nrmse_volume", "mae_negative_share"):
        values = [out[f"{metric}/{name}"] for name in observed]
        out[metric] = float(sum(values) / len(values))
    return out


def evaluate(params: Path, data: list[Path], *, device: str = "cpu", seed: int = 0, split: str = "all") -> dict[str, float]:
    """Simulate the fitted model once and compare it with every event of ``split`` in ``data``.

    Returns:
        ``pearson_volume`` (mean Pearson correlation of the normalised daily volume),
        ``mae_negative_share`` (mean absolute error of the daily negative share, days with at least
        ``min_posts`` posts), ``nrmse_volume``, each also per event as ``<metric>/<event>``.
    """
    values, meta = load_params(params, KIND)
    config = _config_from(meta)
    events = load_events(data)
    names = _select(events, split)
    observed = {name: observed_targets(events[name], config) for name in names}
    model = SentimentModel(config, values, seed=int(meta.get("seed", seed))).to(device)
    with torch.no_grad():
        sim = model.simulate_targets(seed)
    return metrics(sim, observed)
