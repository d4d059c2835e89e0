"""Posterior-predictive check of a sentiment fit against naive references (see
:mod:`lpm.calibration.fit_sentiment`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor

from lpm.calibration.check import CheckReport, bootstrap_sd, rows_from
from lpm.calibration.sentiment_data import observed_targets
from lpm.calibration.sentiment_evaluation import _prepare, metrics
from lpm.calibration.sentiment_model import KIND
from lpm.errors import DataFormatError
from lpm.targets_series import SeriesTargets

REFERENCES = ("train_mean_curve", "train_constant", "persistence")


def references(train: Sequence[SeriesTargets], evidence: Tensor, days: int, anchor: int) -> dict[str, SeriesTargets]:
    """Naive predictions built from the training events only (and, for ``persistence``, from what
    the forecaster has seen of the scored event).

    * ``train_mean_curve``: per aligned day, the mean over training events of their daily volume and
      negative share (days no training event covers: the ``train_constant`` value);
    * ``train_constant``: one negative share (the mean over all training event-days) and a constant
      volume shape (1 on the peak day, by construction of the target, and elsewhere the mean of the
      training events' off-peak volumes);
    * ``persistence``: the event's own share on its observed first days, ``m_e / n_e``, held for
      every later day; its volume is ``train_mean_curve``'s (volume is not conditioned on, for the
      model either). Events with no observed posts get ``train_constant``'s share.

    Args:
        train: the training events' full targets (fields ``(D,)``; not masked).
        evidence: ``(E, 2)`` (posts, negative posts) of the scored events' observed days.
        days, anchor: window length and peak-day index.

    Returns:
        ``{name: SeriesTargets}`` with fields ``(E, D)``.

    Raises:
        DataFormatError: no training event, or no training day with a negative share.
    """
    if not train:
        raise DataFormatError("Expected at least one training event for the references (got none)")
    share = torch.stack([t.negative_share.double() for t in train])  # (T, D)
    volume = torch.stack([t.volume.double() for t in train])
    if not bool(torch.isfinite(share).any()):
        raise DataFormatError("Expected at least one training day with a negative share (got none)")
    constant_share = share.nanmean()
    off_peak = volume.clone()
    off_peak[:, anchor] = float("nan")
    constant_volume = torch.full((days,), float(off_peak.nanmean()), dtype=torch.float64)
    constant_volume[anchor] = 1.0
    # nanmean of an all-NaN column is NaN: those days fall back to the constant
    curve_share = torch.where(torch.isfinite(share).any(0), share.nanmean(0), constant_share)
    curve_volume = torch.where(torch.isfinite(volume).any(0), volume.nanmean(0), constant_volume)
    n, m = evidence[:, 0].double(), evidence[:, 1].double()
    own = torch.where(n > 0, m / n.clamp_min(1e-30), constant_share)  # (E,)
    e = evidence.size(0)

    def rows(vol: Tensor, neg: Tensor) -> SeriesTargets:
        vol, neg = vol.expand(e, days), neg.expand(e, days)
        return SeriesTargets(volume=vol, negative_share=neg, posts=vol)

    return {"train_mean_curve": rows(curve_volume, curve_share),
            "train_constant": rows(constant_volume, constant_share.expand(days)),
            "persistence": rows(curve_volume, own[:, None])}


def _figures(names: Sequence[str], observed: Mapping[str, SeriesTargets], full: Mapping[str, SeriesTargets],
             curves: Mapping[str, SeriesTargets], anchor: int) -> dict[str, object]:
    """One figure per quantity (volume, negative share), one panel per event: observed (scored days
    solid, observed first days hollow), model and references."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no backend choice

    out = {}
    cols = min(len(names), 4)
    nrows = (len(names) + cols - 1) // cols
    for field, label in (("volume", "volume / peak-day volume"), ("negative_share", "negative share")):
        fig = Figure(figsize=(4 * cols, 3 * nrows))
        axes = fig.subplots(nrows, cols, squeeze=False).flatten()
        for i, name in enumerate(names):
            ax = axes[i]
            day = torch.arange(full[name].volume.numel()) - anchor
            ax.plot(day, getattr(full[name], field), "o", mfc="none", color="k", label="observed (all days)")
            ax.plot(day, getattr(observed[name], field), "o", color="k", label="observed (scored)")
            for j, (curve, values) in enumerate(curves.items()):
                ax.plot(day, getattr(values, field)[i].detach(), "-" if curve == "model" else "--",
                        color=f"C{j}", label=curve)
            ax.set_title(name)
            ax.set_xlabel("days from peak")
            ax.set_ylabel(label)
        for ax in axes[len(names):]:
            ax.set_visible(False)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        out[field] = fig
    return out


def check(params: Path, data: list[Path], *, split: str = "test", device: str = "cpu", seed: int = 0,
          events: Optional[Sequence[str]] = None) -> CheckReport:
    """The fitted model's metrics on the ``split`` events beside naive references from the training
    events (``lpm check sentiment``).

    Every column scores the same days with :func:`metrics`: volume on the whole window, negative
    share on the days after each event's observed first days (``observe_days`` in the fitted
    file's config). The model and ``persistence`` see those first days; the training references
    do not need them.

    Args:
        params: fitted-parameter file (its meta names the training events and the config).
        data: event CSV files and/or folders; must hold the training events and the ``split`` ones.
        split: ``train``, ``test`` or ``all`` of the event split.
        device: simulation device.
        seed: simulation seed.
        events: score these events instead of the ``split`` ones (leave-one-event-out folds).

    Returns:
        A :class:`~lpm.calibration.check.CheckReport` with rows ``mae_negative_share``,
        ``pearson_volume`` (higher is better) and ``nrmse_volume``; columns ``model``,
        ``model_noise`` (0: the mean-field simulation is deterministic, its expected counts carry no
        sampling noise), :data:`REFERENCES` and ``reference_noise`` (bootstrap SD over the window's
        days of the best reference); figures ``volume`` and ``negative_share``.

    Raises:
        DataFormatError: a training event of the fitted file is missing from ``data``.
    """
    model, config, meta, loaded, pairs = _prepare(params, data, split, device, seed, only=events)
    trained_on = list(meta.get("events", []))
    missing = sorted(set(trained_on) - set(loaded))
    if missing or not trained_on:
        raise DataFormatError(f"Expected the fitted file's training events in the data (got {sorted(loaded)}; "
                              f"missing {missing or 'the list of training events'})")
    names = list(pairs)
    observed = {name: pairs[name][1] for name in names}
    evidence = torch.stack([pairs[name][0] for name in names])
    with torch.no_grad():
        sim = model.simulate_targets(seed, evidence=evidence.to(device))
    sim = SeriesTargets(*(getattr(sim, f.name).detach().double().cpu() for f in dataclasses.fields(SeriesTargets)))
    train = [observed_targets(loaded[name], config) for name in trained_on]
    refs = references(train, evidence, config.days, config.days_before)
    model_metrics = metrics(sim, observed)
    ref_metrics = {name: metrics(ref, observed) for name, ref in refs.items()}
    rows_wanted = ("mae_negative_share", "pearson_volume", "nrmse_volume")
    higher = ("pearson_volume",)

    def resampled(values: SeriesTargets, index: Tensor) -> SeriesTargets:
        return SeriesTargets(values.volume[..., index], values.negative_share[..., index], values.posts[..., index])

    # resample days (the same days for every event): with one to three scored events, events are too
    # few to bootstrap, and day-to-day swings are the noise that decides a verdict here. Only days
    # some scored event observes (resampling the window's empty days would mostly draw nothing), and
    # the peak day is always kept: it is the volume's normaliser (1 by construction), not a sample,
    # and without it the constant-shape reference has no variance and no correlation.
    anchor = config.days_before
    seen = torch.stack([torch.isfinite(o.volume) | torch.isfinite(o.negative_share) for o in observed.values()])
    seen[:, anchor] = False
    days = torch.nonzero(seen.any(0)).flatten()
    ref_noise = {}
    for metric in rows_wanted:
        pick = max if metric in higher else min
        best = pick(REFERENCES, key=lambda r: ref_metrics[r][metric])

        def statistic(index: Tensor, best: str = best, metric: str = metric) -> float:
            picked = torch.cat([days.new_tensor([anchor]), days[index]])
            return metrics(resampled(refs[best], picked), {n: resampled(o, picked) for n, o in observed.items()})[metric]

        ref_noise[metric] = bootstrap_sd(statistic, int(days.numel()), seed=seed)
    rows = rows_from(model_metrics, {}, ref_metrics, ref_noise, metrics=rows_wanted)
    full = {name: observed_targets(loaded[name], config) for name in names}
    figures = _figures(names, observed, full, {"model": sim, **refs}, config.days_before)
    report_meta = {"params": str(params), "events": names, "training_events": trained_on,
                   "observe_days": config.observe_days, "evidence_posts": [float(n) for n in evidence[:, 0]],
                   "scored_days": int(sum(int(torch.isfinite(o.negative_share).sum()) for o in observed.values())),
                   "per_event": {k: v for k, v in model_metrics.items() if "/" in k}}
    return CheckReport(kind=KIND, split=split, rows=rows, references=list(REFERENCES), higher_is_better=higher,
                       meta=report_meta, figures=figures)
