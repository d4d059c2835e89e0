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

__all__ = ["VISIBLE", "feed_visibility", "aged_visibility"]

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
