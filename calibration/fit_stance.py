"""Calibrate the stance of replies to rumours over time, by veracity (RumourEval 2017, PHEME threads).

Mechanism. Each veracity (true / false / unverified) is a scenario of the batch: a population of
potential repliers on a follower graph, who see the source post at ``t = 0``.

* Belief (lpm opinion, one topic in [-1, 1]; +1 = the claim is true): at the source post, beliefs are
  ``tanh(atanh(initial_belief) + z_i)`` with ``z_i ~ N(0, 1)`` (veracity is not known yet, so the
  initial belief is shared). Afterwards repliers average the beliefs of the repliers they saw
  (DeGroot, gated by who posted) and evidence and corrections pull every belief toward the truth
  (+1 for true, -1 for false, 0 for unverified) at a rate ``evidence_rate_<veracity>`` per hour: an
  :class:`Evidence` intervention, the only veracity-specific parameters.
* Engagement (lpm emotion, one dimension: arousal): the source post arouses the users it reached
  (half of them, arousal 1); arousal spreads from seen replies (``coupling``) and decays
  (``arousal_decay`` per hour). Aroused users take a stance; calm ones chat.
* Replies: a network Hawkes process (who replies when). A reply's stance is a softmax over
  ``support: a_s + b x + k u``, ``deny: a_d - b x + k u``, ``query: a_q + k u``, ``comment: 0`` given
  the replier's belief ``x`` and arousal ``u``.

Targets: stance shares of replies per time bin since the source (default bins 0-15 min, 15-60 min,
1-3 h, 3-6 h, 6-12 h, 12-24 h, 1-3 days), per veracity, pooled over threads. Loss: count-weighted KL
of simulated from observed shares (the multinomial log-likelihood of the observed stances, 0 at a
perfect fit), so a bin weighs as much as it holds replies.

Estimator: mean-field (:class:`lpm.targets_series.ExpectedEvents`): the target is a share over
hundreds of replies per bin, so the simulated target is the ratio of expected stance counts; its
gradient is exact. The simulation is seeded with the global step all the same (a sampled estimator
could be swapped in, and a resumed fit replays its draws).

Thread memory (per-thread forecasts). Replies on one thread are not independent draws from the
population shares: a thread has its own audience and framing, so its stance mix persists. Given the
stances of a thread's first ``observe_replies`` annotated replies (``e``, counts per stance, ``n`` of
them), the later replies of that thread are forecast with the Dirichlet-multinomial posterior mean
``(c p + e) / (c + n)``, ``p`` being the population model's shares for the thread's veracity and bin
and ``c`` (``thread_concentration``) how strongly threads follow the population (large ``c``: not at
all; small: each thread repeats its first replies). ``c`` is fitted after the population model, on
the training threads' later replies (:func:`fit_thread_memory`), by the same count-weighted KL.

Check (:func:`check`): on the chosen split, the pooled shares per (veracity, bin) of all replies
(``mae_stance``, ``kl_stance``: the population model alone, since there is nothing to condition on),
and on the replies after each thread's first ``observe_replies`` (``mae_stance_forecast`` pooled,
``mae_stance_thread`` and ``kl_stance_thread`` per thread), each beside constant shares taken from the
training threads. The pooled per-bin metric has a floor set by multinomial noise that no model of
per-bin shares can pass (the check reports it in ``meta["noise_floor"]``); only per-thread
information can move below the references there.

Fixed (not identifiable from pooled shares): the Hawkes rates (shares are ratios within a bin), the
DeGroot self-weight and the belief spread (both shape the belief distribution, which the shares see
only through the softmax's curvature), the share of users the source reaches and their arousal (only
``k * arousal`` enters the stance). ``coupling`` is learnable but weakly identifiable (contagion
spreads arousal but barely changes its mean).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Optional, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor

from lpm.calibration.common import CalibrationModule, FitResult, fit, load_params, save_params
from lpm.calibration.stance_check import CHECK_METRICS, check
from lpm.calibration.stance_data import load_posts, observed_counts
from lpm.calibration.stance_evaluation import evaluate, metrics
from lpm.calibration.stance_memory import ThreadMemory, ThreadReplies, fit_thread_memory, thread_replies
from lpm.calibration.stance_model import (
    DEFAULT_INIT, Evidence, KIND, LEARNABLE, MEMORY, StanceConfig, StanceLink, StanceModel, VERACITIES,
)
from lpm.errors import ConfigError, DataFormatError
from lpm.targets_series import STANCES, stance_kl, stance_shares

__all__ = ["VERACITIES", "StanceConfig", "StanceModel", "StanceCalibration", "Evidence", "StanceLink", "LEARNABLE",
           "MEMORY", "ThreadMemory", "ThreadReplies", "thread_replies", "fit_thread_memory", "load_posts",
           "observed_counts", "metrics", "calibrate", "evaluate", "check", "CHECK_METRICS", "DEFAULT_INIT"]


class StanceCalibration(CalibrationModule, pl.LightningModule):
    """Lightning module fitting :class:`StanceModel` to observed stance counts.

    Args:
        observed: ``(3, K, 4)`` replies per veracity (:data:`VERACITIES` order), bin and stance.
        config: fixed model settings.
        init: starting values (defaults: :data:`DEFAULT_INIT`).
        learn: parameters to fit; the biases (and the evidence rates) are one tensor each, so naming
            any of them fits all three.
        seed: population seed and base of the per-step simulation seeds.
        learning_rate: Adam step on the unconstrained parameters.
    """

    def __init__(self, observed: Tensor, config: StanceConfig = StanceConfig(), *,
                 init: Optional[Mapping[str, float]] = None, learn: Sequence[str] = LEARNABLE, seed: int = 0,
                 learning_rate: float = 0.05) -> None:
        super().__init__()
        expected = (len(VERACITIES), config.bins, len(STANCES))
        if tuple(observed.shape) != expected:
            raise DataFormatError(f"Expected observed counts of shape {expected} (got {tuple(observed.shape)})")
        bad = sorted(set(learn) - set(LEARNABLE))
        if bad:
            raise ConfigError(f"Expected learnable parameters among {list(LEARNABLE)} (got {bad})")
        self.config, self.seed, self.learning_rate = config, int(seed), float(learning_rate)
        self.register_buffer("observed", observed.float())
        self.sim = StanceModel(config, init, seed=seed)
        raw = self.sim.raw_parameters()
        chosen = {id(raw[name]) for name in learn}
        for param in raw.values():
            param.requires_grad_(id(param) in chosen)
        self.params_before_step: dict[str, float] = self.sim.fitted_params()

    def loss(self, seed: int = 0) -> Tensor:
        counts = self.sim.simulate_counts(seed)
        return stance_kl(stance_shares(counts), self.observed.to(counts.dtype))

    def fitted_params(self) -> dict[str, float]:
        return self.sim.fitted_params()


def calibrate(data: list[Path], out: Path, *, budget_s: float | None = None, device: str = "cpu", seed: int = 0,
              work_dir: Path | None = None, resume: bool = False, progress: bool = True, max_steps: int = 200,
              split: str = "all", logger: str = "wandb", config: StanceConfig = StanceConfig()) -> FitResult:
    """Fit the stance model to RumourEval replies and write the best parameters to ``out``.

    Args:
        data: the RumourEval ``posts.csv`` (or its folder).
        out: fitted-parameter JSON (meta holds the config, split and thread count); it holds the
            population parameters (:data:`LEARNABLE`) and, when ``config.observe_replies > 0``, the
            thread memory's :data:`MEMORY`, fitted afterwards on the same threads.
        split: ``"all"``, or ``"train"`` / ``"test"`` of the thread-level hold-out split
            (:func:`lpm.calibration.common.split_index` on the thread ids).
        Other arguments: as :func:`lpm.calibration.common.fit`.
    """
    posts = load_posts(data)
    counts, threads = observed_counts(posts, config, split)
    if threads == 0 or float(counts.sum()) == 0:
        raise DataFormatError(f"Expected replies in split {split!r} (got {threads} threads, {int(counts.sum())} replies)")
    module = StanceCalibration(counts, config, seed=seed)
    meta = {"split": split, "threads": threads, "replies": int(counts.sum()), "seed": seed,
            "config": dataclasses.asdict(config), "estimator": "mean-field"}
    result = fit(module, kind=KIND, max_steps=max_steps, budget_s=budget_s, out=out, work_dir=work_dir, resume=resume,
                 logger=logger, device=device, progress=progress, meta=meta)
    if config.observe_replies == 0:
        return result
    # second stage: the thread memory on the same threads, given the population model's best shares
    params, written = load_params(out, KIND)
    replies = thread_replies(posts, config, split)
    with torch.no_grad():
        shares = stance_shares(StanceModel(config, params, seed=seed).simulate_counts(seed)).double()
    concentration = fit_thread_memory(shares[replies.veracity], replies)
    save_params(out, KIND, {**params, MEMORY: concentration}, written)
    result["params"] = {**result["params"], MEMORY: concentration}
    return result
