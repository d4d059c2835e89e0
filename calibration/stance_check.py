"""Posterior-predictive check of a stance fit against naive references (see :mod:`lpm.calibration.fit_stance`)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor

from lpm.calibration.check import CheckReport
from lpm.calibration.common import load_params
from lpm.calibration.stance_data import load_posts
from lpm.calibration.stance_evaluation import _config_from, metrics
from lpm.calibration.stance_memory import ThreadMemory, ThreadReplies, thread_replies
from lpm.calibration.stance_model import KIND, MEMORY, StanceModel, VERACITIES
from lpm.errors import DataFormatError
from lpm.targets_series import STANCES, stance_kl, stance_shares

#: Rows of :func:`check`, in display order.
CHECK_METRICS = ("mae_stance", "kl_stance", "mae_stance_forecast", "mae_stance_thread", "kl_stance_thread")
_REFERENCES = ("train_veracity_bin", "train_bin", "train_constant")


def _reference_shares(counts: Tensor) -> dict[str, Tensor]:
    """The constant references from training counts per veracity, bin and stance: shares per
    (veracity, bin), per bin pooled over veracities, and one share vector; an empty cell falls back
    to the coarser reference, so a reference never predicts NaN. Shapes: ``(3, K, 4)`` each."""
    constant = stance_shares(counts.sum((0, 1))).expand_as(counts)
    per_bin = stance_shares(counts.sum(0)).expand_as(counts)
    per_bin = torch.where(torch.isnan(per_bin), constant, per_bin)
    per_cell = stance_shares(counts)
    per_cell = torch.where(torch.isnan(per_cell), per_bin, per_cell)
    return {"train_veracity_bin": per_cell, "train_bin": per_bin, "train_constant": constant}


def _check_metrics(every_shares: Tensor, later_shares: Tensor, replies: ThreadReplies) -> dict[str, float]:
    """The :data:`CHECK_METRICS` of one prediction on ``replies``.

    ``mae_stance`` / ``kl_stance``: :func:`metrics` on the pooled shares per (veracity, bin) of all
    replies; ``mae_stance_forecast``: the same MAE on the later replies (after each thread's first
    ``observe_replies``); ``mae_stance_thread``: per thread, the mean absolute error of the four shares
    of its later replies, weighted by those replies (a thread with one reply is mostly noise);
    ``kl_stance_thread``: the count-weighted KL of the later replies per thread and bin.

    Shapes:
        every_shares, later_shares: ``(T, K, 4)`` predicted shares per thread and bin.
    """
    out = {}
    for prefix, shares, counts in (("", every_shares, replies.every), ("_forecast", later_shares, replies.later)):
        # expected counts sum into pooled predictions; a cell without replies predicts nothing
        pooled = stance_shares(replies.pooled(shares * counts.sum(-1, keepdim=True)))
        found = metrics(torch.nan_to_num(pooled, nan=1.0 / len(STANCES)), replies.pooled(counts))
        out[f"mae_stance{prefix}"] = found["mae_stance"]
        if not prefix:
            out["kl_stance"] = found["kl_stance"]
    later = replies.later
    predicted = (later_shares * later.sum(-1, keepdim=True)).sum(1)  # (T, 4) expected later replies
    observed = later.sum(1)
    total = float(observed.sum())
    out["mae_stance_thread"] = float((predicted - observed).abs().sum() / len(STANCES) / total) if total else float("nan")
    out["kl_stance_thread"] = float(stance_kl(later_shares, later)) if total else float("nan")
    return out


def _noise_floor(shares: dict[str, Tensor], replies: ThreadReplies, draws: int, seed: int) -> dict[str, float]:
    """Mean of each metric when the replies are redrawn, independently, from the predicted shares
    themselves (same counts per thread and bin): what even a perfect model of those shares scores."""
    generator = torch.Generator().manual_seed(seed)
    found: dict[str, list[float]] = {m: [] for m in CHECK_METRICS}
    n_every, n_later = replies.every.sum(-1), replies.later.sum(-1)  # (T, K)
    for _ in range(draws):
        redrawn = []
        for key, n in (("every", n_every), ("later", n_later)):
            cells = torch.repeat_interleave(torch.arange(n.numel()), n.flatten().long())
            probs = shares[key].reshape(-1, len(STANCES))[cells]
            stance = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            counts = torch.zeros(n.numel() * len(STANCES), dtype=torch.float64)
            counts.index_add_(0, cells * len(STANCES) + stance, torch.ones_like(stance, dtype=torch.float64))
            redrawn.append(counts.reshape(replies.every.shape))
        fake = ThreadReplies(replies.veracity, replies.early, redrawn[1], redrawn[0])
        for m, v in _check_metrics(shares["every"], shares["later"], fake).items():
            found[m].append(v)
    return {m: float(torch.tensor(v, dtype=torch.float64).nanmean()) for m, v in found.items()}


def _shares_figure(title: str, observed: Tensor, lines: Mapping[str, Tensor], edges_h: Sequence[float]):
    """Stance shares per bin, one panel per (veracity, stance): observed points, predicted lines."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 8), constrained_layout=True)
    axes = figure.subplots(len(VERACITIES), len(STANCES), sharex=True)
    x = torch.arange(len(edges_h) - 1)
    labels = [f"{a:g}-{b:g}" for a, b in zip(edges_h, edges_h[1:])]
    obs = stance_shares(observed)
    for i, veracity in enumerate(VERACITIES):
        for j, stance in enumerate(STANCES):
            ax = axes[i, j]
            ax.plot(x, obs[i, :, j], "ko", label="observed")
            for (name, shares), style in zip(lines.items(), ("C0-", "C1--", "C2:")):
                ax.plot(x, shares[i, :, j], style, label=name)
            ax.set_title(f"{veracity}: {stance}", fontsize=9)
            ax.set_xticks(x, labels, rotation=45, fontsize=7)
    axes[0, 0].legend(fontsize=7)
    figure.supxlabel("hours since the source")
    figure.supylabel("share of replies")
    figure.suptitle(title)
    return figure


def check(params: Path, data: list[Path], *, split: str = "test", device: str = "cpu", seed: int = 0) -> CheckReport:
    """Posterior-predictive check of a fitted stance model on the threads of ``split``.

    Rows (:data:`CHECK_METRICS`, lower is better; see :func:`_check_metrics`): ``mae_stance`` and
    ``kl_stance`` on all replies, pooled per (veracity, bin), predicted by the population model;
    ``mae_stance_forecast``, ``mae_stance_thread`` and ``kl_stance_thread`` on the replies after each
    thread's first ``observe_replies``, predicted by the population model with the thread memory.
    Columns: ``model``; ``model_noise`` = 0 (the model is mean-field: its shares are expectations,
    with no sampling noise); the references ``train_veracity_bin``, ``train_bin``, ``train_constant``
    (shares of the training threads' replies of the same kind: all, or later); ``reference_noise``
    (bootstrap SD over the split's threads of the best reference's metric). ``meta["noise_floor"]``
    holds each metric of the best reference on replies redrawn from that reference itself.

    Args:
        params: fitted-parameter file of :func:`calibrate`.
        data: the RumourEval ``posts.csv`` (or its folder).
        split: threads to check on (``train``, ``test`` or ``all``); references always come from
            ``train``.
        device: where the population model runs.
        seed: simulation seed (the mean-field shares do not depend on it) and bootstrap seed.

    Returns:
        The report, with figures ``shares`` (all replies) and ``forecast`` (later replies).

    Raises:
        DataFormatError: no replies in ``split`` or in the training threads.
    """
    from lpm.calibration.check import bootstrap_sd, rows_from

    values, meta = load_params(params, KIND)
    concentration = values.pop(MEMORY, None)
    config = _config_from(meta)
    posts = load_posts(data)
    replies, train = thread_replies(posts, config, split), thread_replies(posts, config, "train")
    for name, part in ((split, replies), ("train", train)):
        if part.veracity.numel() < 2 or float(part.every.sum()) == 0:
            raise DataFormatError(f"Expected replies in at least 2 threads of split {name!r} "
                                  f"(got {part.veracity.numel()} threads, {int(part.every.sum())} replies)")
    model = StanceModel(config, values, seed=int(meta.get("seed", seed))).to(device)
    with torch.no_grad():
        population = stance_shares(model.simulate_counts(seed)).cpu().double()  # (3, K, 4)
    base = population[replies.veracity]
    if concentration is not None and config.observe_replies > 0:
        with torch.no_grad():
            forecast = ThreadMemory(concentration)(base, replies.early)
    else:  # a file fitted without the memory: the forecast is the population's shares
        forecast = base
    references = {name: (every[replies.veracity], later[replies.veracity]) for (name, every), later in
                  zip(_reference_shares(train.pooled(train.every)).items(),
                      _reference_shares(train.pooled(train.later)).values())}
    model_metrics = _check_metrics(base, forecast, replies)
    reference_metrics = {name: _check_metrics(e, l, replies) for name, (e, l) in references.items()}

    units = replies.veracity.numel()
    reference_noise, floor = {}, {}
    # every bootstrap_sd call with one seed draws the same resamples: compute each resample's metrics once
    resampled: dict[tuple[str, bytes], dict[str, float]] = {}
    floors: dict[str, dict[str, float]] = {}

    def resample(best: str, index: Tensor) -> dict[str, float]:
        key = (best, index.numpy().tobytes())
        if key not in resampled:
            every, later = references[best]
            resampled[key] = _check_metrics(every[index], later[index], replies.select(index))
        return resampled[key]

    for metric in CHECK_METRICS:
        best = min(_REFERENCES, key=lambda r: reference_metrics[r][metric])
        reference_noise[metric] = bootstrap_sd(lambda index: resample(best, index)[metric], units, seed=seed)
        if best not in floors:
            every, later = references[best]
            floors[best] = _noise_floor({"every": every, "later": later}, replies, draws=50, seed=seed)
        floor[metric] = floors[best][metric]
    # model_noise is 0: mean-field shares are expectations (no simulated sampling to bootstrap)
    rows = rows_from(model_metrics, {m: 0.0 for m in CHECK_METRICS}, reference_metrics, reference_noise,
                     metrics=CHECK_METRICS)

    observed_every, observed_later = replies.pooled(replies.every), replies.pooled(replies.later)
    pooled = {name: stance_shares(replies.pooled(shares * counts.sum(-1, keepdim=True)))
              for name, shares, counts in (("model", base, replies.every), ("model_forecast", forecast, replies.later))}
    report = CheckReport(kind=KIND, split=split, rows=rows, references=list(_REFERENCES),
                         meta={"params": str(params), "threads": units, "replies": int(replies.every.sum()),
                               "later_replies": int(replies.later.sum()), "train_threads": train.veracity.numel(),
                               "observe_replies": config.observe_replies, MEMORY: concentration,
                               "estimator": "mean-field", "noise_floor": floor})
    best_all = report.best_reference("mae_stance")[0]
    best_later = report.best_reference("mae_stance_forecast")[0]
    report.figures = {
        "shares": _shares_figure(f"stance shares of all replies, split {split}", observed_every,
                                 {"model": pooled["model"], best_all: _reference_shares(train.pooled(train.every))[best_all]},
                                 config.edges_h),
        "forecast": _shares_figure(f"replies after each thread's first {config.observe_replies}, split {split}",
                                   observed_later,
                                   {"model (thread memory)": pooled["model_forecast"],
                                    best_later: _reference_shares(train.pooled(train.later))[best_later]},
                                   config.edges_h),
    }
    return report
