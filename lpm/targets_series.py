"""Calibration targets for sentiment and stance time series, computed by the same code from data and
from simulations, and the losses and metrics that compare them.

A target is always built from *counts*: posts per day and negative posts per day (sentiment), or
replies per time bin and stance (stance). Data gives observed counts (one-hot labels, weight 1 per
post); a simulation gives expected counts (posting probabilities times label probabilities, summed
over agents and steps). Both go through :func:`sentiment_targets` / :func:`binned_counts` and
:func:`stance_shares`, so a simulated series and an observed one are the same statistic.

Missing observations are ``NaN`` and are left out of every loss and metric here.

* Sentiment: volume is normalised by the volume on the anchor (peak) day, because keyword-collected
  volumes are not comparable across events while their shape is; the anchor day is present in every
  aligned window, unlike the total, which depends on how many days the collection covered.
* Stance: shares of support / deny / query / comment per time bin since the thread's source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from lpm.data.rumoureval import STANCES
from lpm.errors import ConfigError, DataFormatError
from lpm.relax import Expected

__all__ = [
    "STANCES",
    "ExpectedEvents",
    "SeriesTargets",
    "daily_totals",
    "sentiment_targets",
    "bin_membership",
    "binned_counts",
    "stance_shares",
    "nrmse",
    "smooth_mae",
    "mae",
    "pearson",
    "stance_kl",
    "stance_mae",
]

ExpectedEvents = Expected  # the mean-field estimator lives in lpm.relax


@dataclass(frozen=True, eq=False)
class SeriesTargets:
    """Daily sentiment targets of one or more series.

    Shapes:
        volume: ``(..., D)`` posts per day divided by the posts on the anchor day (1 there).
        negative_share: ``(..., D)`` negative posts / posts; ``NaN`` where the day has fewer than
            ``min_posts`` posts (too noisy to fit) or no data.
        posts: ``(..., D)`` posts per day (unnormalised; ``NaN`` where missing).
    """

    volume: Tensor
    negative_share: Tensor
    posts: Tensor


def daily_totals(per_step: Tensor, steps_per_day: int) -> Tensor:
    """Sum per-step values into days.

    Shapes:
        per_step: ``(..., S)`` with ``S = D * steps_per_day``; returns ``(..., D)``.

    Raises:
        ConfigError: ``S`` is not a whole number of days.
    """
    if steps_per_day < 1 or per_step.size(-1) % steps_per_day:
        raise ConfigError(f"Expected a whole number of days of {steps_per_day} steps (got {per_step.size(-1)} steps)")
    return per_step.unflatten(-1, (-1, steps_per_day)).sum(-1)


def sentiment_targets(posts: Tensor, negative_posts: Tensor, *, anchor: int, min_posts: float = 0.0) -> SeriesTargets:
    """Normalised daily volume and negative share from posts and negative posts per day.

    Args:
        posts: posts per day (observed counts or expected simulated counts; ``NaN`` = no data).
        negative_posts: negative posts per day (same shape).
        anchor: index of the day the volume is normalised by (the aligned peak day).
        min_posts: days with fewer posts get a ``NaN`` negative share (binomial noise: with 20 posts
            the standard error of a share near 0.75 is already ~0.1).

    Shapes:
        posts, negative_posts: ``(..., D)``.

    Raises:
        ConfigError: shapes differ or ``anchor`` is outside ``[0, D)``.
    """
    if posts.shape != negative_posts.shape:
        raise ConfigError(f"Expected posts and negative_posts of one shape (got {tuple(posts.shape)} and {tuple(negative_posts.shape)})")
    if not 0 <= anchor < posts.size(-1):
        raise ConfigError(f"Expected an anchor day in [0, {posts.size(-1)}) (got {anchor})")
    volume = posts / posts[..., anchor : anchor + 1]
    enough = posts >= min_posts  # False for NaN too
    share = torch.where(enough, negative_posts / posts.clamp_min(1e-30), torch.full_like(posts, float("nan")))
    return SeriesTargets(volume=volume, negative_share=share, posts=posts)


def bin_membership(times_h: Tensor, edges_h: Sequence[float] | Tensor) -> Tensor:
    """``(P, K)`` one-hot membership of each time in the bins ``[edges[k], edges[k + 1])``.

    Times outside ``[edges[0], edges[-1])`` (or ``NaN``) belong to no bin (a zero row).

    Shapes:
        times_h: ``(P,)``; edges_h: ``(K + 1,)`` increasing.
    """
    edges = torch.as_tensor(edges_h, dtype=times_h.dtype, device=times_h.device)
    if edges.dim() != 1 or edges.numel() < 2 or not bool((edges[1:] > edges[:-1]).all()):
        raise ConfigError(f"Expected at least two increasing bin edges (got {edges.tolist()})")
    inside = (times_h[:, None] >= edges[None, :-1]) & (times_h[:, None] < edges[None, 1:])
    return inside.to(times_h.dtype)


def binned_counts(times_h: Tensor, weights: Tensor, edges_h: Sequence[float] | Tensor, *,
                  groups: Optional[Tensor] = None, num_groups: Optional[int] = None) -> Tensor:
    """Sum weighted events into time bins (and optionally groups, e.g. veracity).

    Data: ``times_h`` = reply delays, ``weights`` = one-hot stances, ``groups`` = veracity codes.
    Simulation: ``times_h`` = step mid-times, ``weights`` = expected replies per stance per step with
    a leading batch of scenarios (one per veracity), no ``groups``.

    Shapes:
        times_h: ``(P,)``; weights: ``(..., P, C)``; groups: ``(P,)`` int in ``[0, G)``.
        Returns ``(..., K, C)``, or ``(G, K, C)`` with groups.
    """
    if weights.size(-2) != times_h.numel():
        raise ConfigError(f"Expected weights of shape (..., {times_h.numel()}, C) (got {tuple(weights.shape)})")
    membership = bin_membership(times_h, edges_h).to(weights.dtype)  # (P, K)
    if groups is not None:
        if num_groups is None:
            raise ConfigError("Expected num_groups with groups (got None)")
        if groups.numel() != times_h.numel():
            raise ConfigError(f"Expected one group per event ({times_h.numel()}) (got {groups.numel()})")
        onehot = torch.nn.functional.one_hot(groups.long(), num_groups).to(weights.dtype)  # (P, G)
        return torch.einsum("pg,pk,pc->gkc", onehot, membership, weights)
    return torch.einsum("pk,...pc->...kc", membership, weights)


def stance_shares(counts: Tensor) -> Tensor:
    """Shares per bin: ``counts / counts.sum(-1)``; ``NaN`` rows for empty bins.

    Shapes:
        counts: ``(..., K, C)``; returns the same shape.
    """
    total = counts.sum(-1, keepdim=True)
    return torch.where(total > 0, counts / total.clamp_min(1e-30), torch.full_like(counts, float("nan")))


# ---------------------------------------------------------------------------- losses and metrics


def _masked(sim: Tensor, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(sim, obs with NaN -> 0, mask)``; the mask keeps NaNs out of values and gradients."""
    if sim.shape != obs.shape:
        raise DataFormatError(f"Expected simulated and observed series of one shape (got {tuple(sim.shape)} and {tuple(obs.shape)})")
    mask = torch.isfinite(obs)
    return sim, torch.where(mask, obs, torch.zeros_like(obs)), mask.to(sim.dtype)


def nrmse(sim: Tensor, obs: Tensor) -> Tensor:
    """Root mean squared error over observed entries divided by the observed range (max - min).

    Shapes: ``(..., D)`` -> ``(...)``.
    """
    sim, filled, mask = _masked(sim, obs)
    count = mask.sum(-1).clamp_min(1)
    # + 1e-18 keeps the gradient finite at a perfect fit (d sqrt(x) / dx is infinite at 0)
    rmse = (((sim - filled) ** 2 * mask).sum(-1) / count + 1e-18).sqrt()
    high = torch.where(mask > 0, filled, torch.full_like(filled, -float("inf"))).amax(-1)
    low = torch.where(mask > 0, filled, torch.full_like(filled, float("inf"))).amin(-1)
    return rmse / (high - low).clamp_min(1e-12)


def smooth_mae(sim: Tensor, obs: Tensor, delta: float = 0.01) -> Tensor:
    """Mean over observed entries of ``sqrt(d^2 + delta^2) - delta`` (pseudo-Huber): the absolute
    error beyond ``delta``, smooth at 0 so its gradient is defined everywhere.

    Shapes: ``(..., D)`` -> ``(...)``.
    """
    sim, filled, mask = _masked(sim, obs)
    loss = ((sim - filled) ** 2 + delta**2).sqrt() - delta
    return (loss * mask).sum(-1) / mask.sum(-1).clamp_min(1)


def mae(sim: Tensor, obs: Tensor) -> Tensor:
    """Mean absolute error over observed entries. Shapes: ``(..., D)`` -> ``(...)``."""
    sim, filled, mask = _masked(sim, obs)
    return ((sim - filled).abs() * mask).sum(-1) / mask.sum(-1).clamp_min(1)


def pearson(sim: Tensor, obs: Tensor) -> Tensor:
    """Pearson correlation over observed entries (``NaN`` when either side is constant).

    Shapes: ``(..., D)`` -> ``(...)``.
    """
    sim, filled, mask = _masked(sim, obs)
    count = mask.sum(-1, keepdim=True).clamp_min(1)
    ds = (sim - (sim * mask).sum(-1, keepdim=True) / count) * mask
    do = (filled - (filled * mask).sum(-1, keepdim=True) / count) * mask
    return (ds * do).sum(-1) / ((ds**2).sum(-1) * (do**2).sum(-1)).sqrt()


def stance_kl(sim_shares: Tensor, obs_counts: Tensor, eps: float = 1e-9) -> Tensor:
    """Count-weighted KL divergence of simulated from observed stance shares (a scalar).

    ``sum_{bin, stance} n * log(obs_share / sim_share) / sum n``: the multinomial negative
    log-likelihood of the observed replies under the simulated shares, minus its value at a perfect
    fit, so it is 0 at a perfect fit and a bin weighs as much as it holds replies.

    Shapes: ``sim_shares`` and ``obs_counts`` ``(..., K, C)``.
    """
    if sim_shares.shape != obs_counts.shape:
        raise DataFormatError(f"Expected simulated shares and observed counts of one shape "
                              f"(got {tuple(sim_shares.shape)} and {tuple(obs_counts.shape)})")
    obs_shares = torch.nan_to_num(stance_shares(obs_counts), nan=0.0)
    entropy_term = torch.where(obs_counts > 0, obs_counts * torch.log(obs_shares.clamp_min(eps)), torch.zeros_like(obs_counts))
    cross = obs_counts * torch.log(sim_shares.clamp_min(eps))
    return (entropy_term - cross).sum() / obs_counts.sum().clamp_min(1)


def stance_mae(sim_shares: Tensor, obs_counts: Tensor) -> Tensor:
    """Mean absolute error of stance shares per bin, averaged over non-empty bins and stances.

    Shapes: ``(..., K, C)`` -> ``(...)`` (averaged over the last two dimensions).
    """
    obs = stance_shares(obs_counts)  # NaN rows where a bin is empty
    err = mae(sim_shares, obs)  # (..., K); 0 for empty bins
    filled = (obs_counts.sum(-1) > 0).to(err.dtype)
    return (err * filled).sum(-1) / filled.sum(-1).clamp_min(1)
