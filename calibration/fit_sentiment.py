"""Calibrate collective sentiment and posting volume around disasters (Meng & Dong 2020 series).

Mechanism (the disaster scenario's ingredients, fitted). An event's *news intensity* rises before the
peak day (forecasts, warnings) and decays after it:

    I(t) = exp(-(t0 - t) / rise)  for t < t0,    exp(-(t - t0) / decay)  for t >= t0,

with ``t0`` at noon of the aligned peak day. It drives two things on one follower graph:

* posting: a network Hawkes process whose baseline rate is multiplied by ``1 + burst_size I(t)``;
* emotion: users in the hit region (30%) are pushed along valence with force ``shock_valence I(t)``
  (signed: negative = distress; positive = the flood of warnings, updates and solidarity that dilutes
  negativity at the peak, as in Sandy and Harvey) and toward high arousal with force ``I(t)``; emotions
  spread from seen posts (``coupling``) and relax (``emotion_decay``). :func:`calibrate` keeps this
  shock off (``shock_valence = 0``, see :data:`FITTED`): held-out events are forecast better without it.

A post is labelled negative with probability ``sigmoid(logit(baseline_negative_share) - k valence)``:
the data is keyword-filtered, so even at rest most posts are negative (base rate ~0.75).

Targets per event, aligned on the peak-volume day (7 days before to 14 after by default): daily volume
normalised by the peak day (keyword-collected volumes are not comparable across events; shapes are)
and the daily share of negative posts. Loss: NRMSE of the volume curve + pseudo-Huber MAE of the
negative share, averaged over training events; with ``observe_days > 0`` (forecast mode, the default) the
share is forecast from each event's first observed days and scored on the later ones (see
:class:`NegativeLabel` and :meth:`SentimentCalibration.loss`). One parameter set is shared by all events, so a fit
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
from pathlib import Path
from typing import Mapping, Optional, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor

from lpm.calibration.check import CheckReport
from lpm.calibration.common import CalibrationModule, FitResult, fit
from lpm.calibration.sentiment_check import REFERENCES, check, references
from lpm.calibration.sentiment_data import _csv_files, _select, forecast_split, load_events, observed_targets
from lpm.calibration.sentiment_evaluation import evaluate, metrics
from lpm.calibration.sentiment_model import (
    DEFAULT_INIT, FITTED, KIND, LEARNABLE, NegativeLabel, NewsEmotion, NewsHawkes, NewsIntensity, SentimentConfig,
    SentimentModel, sentiment_loss,
)
from lpm.errors import ConfigError, DataFormatError
from lpm.targets_series import SeriesTargets, smooth_mae

__all__ = ["SentimentConfig", "SentimentModel", "SentimentCalibration", "LEARNABLE", "FITTED", "load_events",
           "observed_targets", "forecast_split", "sentiment_loss", "calibrate", "evaluate", "metrics", "references",
           "check", "leave_one_event_out", "REFERENCES", "DEFAULT_INIT", "NewsIntensity", "NewsHawkes", "NewsEmotion",
           "NegativeLabel"]


class SentimentCalibration(CalibrationModule, pl.LightningModule):
    """Lightning module fitting :class:`SentimentModel` to observed event targets.

    Args:
        observed: ``{event: SeriesTargets}`` (each field ``(D,)`` on the config's window).
        config: fixed model settings.
        evidence: ``{event: (2,) tensor}`` observed (posts, negative posts) of the event's first days
            (:func:`forecast_split`); ``None``: no conditioning (every event at the shared baseline).
        init: starting values of the learnable parameters (defaults: :data:`DEFAULT_INIT`).
        learn: names of the parameters to fit; the others stay at their ``init`` values.
        seed: population seed (graph, traits, region) and base of the per-step simulation seeds.
        learning_rate: Adam step on the unconstrained parameters.
    """

    def __init__(self, observed: Mapping[str, SeriesTargets], config: SentimentConfig = SentimentConfig(), *,
                 evidence: Optional[Mapping[str, Tensor]] = None, init: Optional[Mapping[str, float]] = None, learn: Sequence[str] = LEARNABLE, seed: int = 0,
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
        if evidence is not None and sorted(evidence) != self.events:
            raise DataFormatError(f"Expected evidence for the events {self.events} (got {sorted(evidence)})")
        rows = [torch.as_tensor(evidence[e], dtype=torch.float64) if evidence is not None else torch.zeros(2, dtype=torch.float64)
                for e in self.events]
        self.register_buffer("evidence", torch.stack(rows))  # (E, 2); float64: post counts are exact
        self.sim = SentimentModel(config, init, seed=seed)
        for name, raw in self.sim.raw_parameters().items():
            raw.requires_grad_(name in learn)
        self.params_before_step: dict[str, float] = self.sim.fitted_params()

    def loss(self, seed: int = 0) -> Tensor:
        """Forecast loss (:func:`sentiment_loss` of the conditioned rows) plus the prior term: the
        unconditioned share (an extra evidence row of zeros, same simulation) against every event's
        scored days.

        Why the prior term: it makes the baseline ``c`` the empirical-Bayes prior mean, the level of
        an event nothing is known about, estimated from all events alike. Without it only the
        conditioned rows see ``c``, through the events with the fewest observed posts (the largest
        ``1 - w_e``): with six training events a couple of thin first days then set the level every
        held-out event is shrunk toward (leave-one-event-out MAE 0.125 instead of 0.107).
        """
        rows = torch.cat([self.evidence, self.evidence.new_zeros(1, 2)])
        sim = self.sim.simulate_targets(seed, evidence=rows)
        dtype = sim.volume.dtype
        volume, negative = self.obs_volume.to(dtype), self.obs_negative.to(dtype)
        conditioned = SeriesTargets(sim.volume[:-1], sim.negative_share[:-1], sim.posts[:-1])
        prior = smooth_mae(sim.negative_share[-1].expand_as(negative), negative).mean()
        return sentiment_loss(conditioned, volume, negative, self.config.negative_weight) + \
            self.config.negative_weight * prior

    def fitted_params(self) -> dict[str, float]:
        return self.sim.fitted_params()


def calibrate(data: list[Path], out: Path, *, budget_s: float | None = None, device: str = "cpu", seed: int = 0,
              work_dir: Path | None = None, resume: bool = False, progress: bool = True, max_steps: int = 200,
              split: str = "all", logger: str = "wandb", config: SentimentConfig = SentimentConfig()) -> FitResult:
    """Fit the sentiment model to disaster events and write the best parameters to ``out``.

    Args:
        data: event CSV files and/or folders of them (one event per file, named by the file stem).
        out: fitted-parameter JSON (rewritten at every improvement; meta holds the config and events).
        split: ``"all"``, or ``"train"`` / ``"test"`` of the event-level hold-out split
            (:func:`lpm.calibration.common.split_index` on the event names).
        config: fixed settings; the parameters in :data:`FITTED` are fitted, the others stay at
            :data:`DEFAULT_INIT`.
        Other arguments: as :func:`lpm.calibration.common.fit`.

    Returns:
        The :class:`~lpm.calibration.common.FitResult`.
    """
    events = load_events(data)
    names = _select(events, split)
    split_events = {name: forecast_split(events[name], config) for name in names}
    observed = {name: pair[1] for name, pair in split_events.items()}
    evidence = {name: pair[0] for name, pair in split_events.items()}
    module = SentimentCalibration(observed, config, evidence=evidence, learn=FITTED, seed=seed)
    meta = {"events": names, "split": split, "seed": seed, "config": dataclasses.asdict(config),
            "estimator": "mean-field"}
    return fit(module, kind=KIND, max_steps=max_steps, budget_s=budget_s, out=out, work_dir=work_dir, resume=resume,
               logger=logger, device=device, progress=progress, meta=meta)


def leave_one_event_out(data: list[Path], work_dir: Path, *, max_steps: int = 60, device: str = "cpu", seed: int = 0,
                        config: SentimentConfig = SentimentConfig()) -> dict[str, CheckReport]:
    """Leave-one-event-out cross-validation: for each event, fit on all the others and check on it.

    With seven events an event split holds out one or two; every event held out once gives the
    more honest estimate (average the reports' rows over the folds).

    Args:
        data: event CSV files and/or folders (all events; each is held out once).
        work_dir: one fitted file per fold, ``<event>.json``, and the fits' checkpoints.
        max_steps, device, seed, config: as :func:`calibrate`.

    Returns:
        ``{held-out event: CheckReport on that event}``.
    """
    files = _csv_files(data)
    work_dir = Path(work_dir)
    reports = {}
    for held_out in files:
        out = work_dir / f"{held_out.stem}.json"
        calibrate([f for f in files if f != held_out], out, max_steps=max_steps, device=device, seed=seed,
                  work_dir=work_dir / held_out.stem, logger="none", progress=False, config=config)
        reports[held_out.stem] = check(out, files, device=device, seed=seed, events=[held_out.stem])
    return reports
