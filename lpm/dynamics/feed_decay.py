"""How a reshare's weight in followers' feeds decays with its age: the two laws :class:`Cascade` uses.

Exponential: ``2^(-age / h)``, cut below 1%. Power law with exponent ``a``: ``(1 + age / tau)^(-a)``
with ``tau = h / (2^(1/a) - 1)``, so it also halves at ``h`` but keeps a long tail, as the attention
paid to tweets decays (Wu & Huberman 2007; Zhao et al. 2015). Pure functions of tensors: the visibility
of a post and the step's ageing of a frontier (every estimator's, the mean field's too) share one
definition of each law.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["VISIBLE", "feed_visibility", "aged_visibility", "lifetime_visibility", "item_pace"]

VISIBLE = 0.01  # a reshare decayed below this weight has left the feed (exponential law)


def _power_law_scale(half_life: Tensor, tail: Tensor) -> Tensor:
    return half_life / torch.expm1(math.log(2.0) / tail)


def feed_visibility(age_h: Tensor, half_life: Tensor, tail: Optional[Tensor] = None) -> Tensor:
    """Weight in followers' feeds of a post ``age_h`` hours old (``inf``: never posted).

    ``half_life`` broadcasts against ``age_h`` (one value, or one per item); ``tail``: the power
    law's exponent (> 1), ``None`` for the exponential law. Same shape as the broadcast inputs.
    """
    age = age_h.clamp_min(0.0)
    if tail is None:
        weight = torch.exp(-math.log(2.0) * age / half_life)
        return torch.where(weight < VISIBLE, torch.zeros_like(weight), weight)
    scale = _power_law_scale(half_life, tail)
    return torch.where(torch.isfinite(age), (1.0 + age.nan_to_num(posinf=0.0) / scale) ** (-tail),
                       torch.zeros_like(age))


def aged_visibility(frontier: Tensor, reshared: Tensor, dt: float, half_life: Tensor,
                    tail: Optional[Tensor] = None) -> Tensor:
    """The visibility of earlier reshares one step of ``dt`` hours later, ``reshared * g(frontier / reshared)``.

    ``frontier``: summed visibility of the ``reshared`` posts (same shape). Visibility ``v``
    determines a post's age, so one step maps it to ``g(v) = feed_visibility(age(v) + dt)``:
    ``v 2^(-dt/h)`` (exponential) or ``(v^(-1/a) + dt/tau)^(-a)`` (power law). Exact for exact
    events; for relaxed or expected events (fractions of a reshare spread over several steps) it ages
    their mean visibility, so no event time is needed and gradients flow.
    """
    has = reshared > 0
    mean_visibility = frontier / torch.where(has, reshared, torch.ones_like(reshared))
    if tail is None:
        aged = mean_visibility * torch.exp(-math.log(2.0) * dt / half_life)
        aged = torch.where(aged < VISIBLE, torch.zeros_like(aged), aged)
    else:
        scale = _power_law_scale(half_life, tail)
        safe = torch.where(mean_visibility > 0, mean_visibility, torch.ones_like(mean_visibility))
        aged = torch.where(mean_visibility > 0, (safe ** (-1.0 / tail) + dt / scale) ** (-tail),
                           torch.zeros_like(mean_visibility))
    return torch.where(has, reshared * aged, torch.zeros_like(aged))


def lifetime_visibility(half_life: Tensor, dt: float, tail: Optional[Tensor] = None, terms: int = 512) -> Tensor:
    """A post's visibility summed over the steps it shows in, ``sum_n v(n dt)`` for ``n >= 0``: the
    exposures it gives a follower who reads every step. Exponential law: the geometric sum of the
    terms above the cut, in closed form. Power law: the first ``terms`` terms, the rest as an integral
    from ``(terms - 1/2) dt`` (midpoint rule; relative error ~1e-8 for half-lives up to days). Same
    shape as ``half_life``; differentiable in it and in ``tail``."""
    if tail is None:
        ratio = torch.exp(-math.log(2.0) * dt / half_life)
        shown = torch.floor(half_life * math.log2(1.0 / VISIBLE) / dt).detach() + 1.0  # terms above the cut
        return -torch.expm1(shown * torch.log(ratio)) / -torch.expm1(torch.log(ratio))
    ages = torch.arange(terms, dtype=half_life.dtype, device=half_life.device).reshape((terms,) + (1,) * half_life.dim())
    head = feed_visibility(ages * dt, half_life, tail).sum(0)
    scale = _power_law_scale(half_life, tail)
    return head + scale / (tail - 1.0) * (1.0 + (terms - 0.5) * dt / scale) ** (1.0 - tail) / dt


def item_pace(half_life: Tensor, item_half_life: Tensor, dt: float, tail: Optional[Tensor] = None) -> Tensor:
    """The factor on an item's exposures that makes its posts' summed visibility over their lifetime
    the one at ``half_life`` whatever ``item_half_life`` is: ``lifetime_visibility(half_life) /
    lifetime_visibility(item_half_life)``. Items then differ in pace (when their posts are read),
    not in how many exposures each post gives. Shape of ``item_half_life``."""
    return lifetime_visibility(half_life, dt, tail) / lifetime_visibility(item_half_life, dt, tail)
