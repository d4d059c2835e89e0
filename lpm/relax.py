"""Estimators for discrete Bernoulli events (posts, reshares, follows).

Every estimator turns event probabilities ``p`` and uniform draws ``u`` (drawn by the caller from an
explicit generator, so the same draws can be shared between arms or replayed by gradient
checkpointing) into events ``y`` with the event ``u < p``:

* :class:`Hard` - exact 0/1 samples, no gradient (evaluation).
* :class:`StraightThrough` - exact samples forward, ``dy/dp = 1`` backward (biased, low variance).
* :class:`RelaxedBernoulli` - the binary Concrete / Gumbel-softmax relaxation
  ``y = sigmoid((logit p - logit u) / temperature)``, which tends to the hard sample from the same
  ``u`` as the temperature goes to 0; ``hard=True`` uses the exact sample forward and the
  relaxation's gradient backward.
* :class:`ScoreFunction` - exact samples forward and no pathwise gradient; returns
  ``log P(y)`` so that :func:`lpm.simulate` can attach the score-function (REINFORCE / DiCE)
  gradient to recorded observables. Unbiased, higher variance.

Shapes: ``prob`` and ``uniform`` are any matching shape ``(B, ...)``; ``events`` has that shape and
``log_prob`` is ``(B,)`` (summed over everything but the batch), or ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from lpm.errors import ConfigError

__all__ = ["Hard", "StraightThrough", "RelaxedBernoulli", "Expected", "ScoreFunction", "Estimator", "exact_events",
           "magic_box"]

_EPS = 1e-6


def _logit(p: Tensor) -> Tensor:
    p = p.clamp(_EPS, 1 - _EPS)
    return torch.log(p) - torch.log1p(-p)


@dataclass(frozen=True)
class Hard:
    """Exact Bernoulli samples; the gradient is zero."""

    def sample(self, prob: Tensor, uniform: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        return (uniform < prob.detach()).to(prob.dtype), None


@dataclass(frozen=True)
class StraightThrough:
    """Exact samples forward; the identity gradient ``dy/dp = 1`` backward."""

    def sample(self, prob: Tensor, uniform: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        hard = (uniform < prob.detach()).to(prob.dtype)
        return hard + (prob - prob.detach()), None


@dataclass(frozen=True)
class RelaxedBernoulli:
    """Binary Concrete relaxation with a temperature (Maddison et al. 2017; Jang et al. 2017)."""

    temperature: float = 0.5
    hard: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"Expected a positive finite temperature (got {self.temperature!r})")

    def sample(self, prob: Tensor, uniform: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        soft = torch.sigmoid((_logit(prob) - _logit(uniform)) / self.temperature)
        if not self.hard:
            return soft, None
        hard = (uniform < prob.detach()).to(prob.dtype)
        return hard + (soft - soft.detach()), None


@dataclass(frozen=True)
class Expected:
    """Mean-field "estimator": an event of probability ``p`` counts as ``p`` (its expectation).

    The simulation becomes the deterministic expected-value dynamics of the same model (agents stay
    heterogeneous; only each event's Bernoulli noise is replaced by its mean), a smooth function of
    the parameters with exact gradients and no estimator bias or variance. Calibration uses it where
    targets aggregate many events. The ``uniform`` draws are ignored.
    """

    def sample(self, prob: Tensor, uniform: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        return prob, None


@dataclass(frozen=True)
class ScoreFunction:
    """Exact samples with their log-probability, for the score-function gradient."""

    def sample(self, prob: Tensor, uniform: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        events = (uniform < prob.detach()).to(prob.dtype)
        p = prob.clamp(_EPS, 1 - _EPS)
        log_prob = events * torch.log(p) + (1 - events) * torch.log1p(-p)
        return events, log_prob.reshape(log_prob.size(0), -1).sum(1)


Estimator = Union[Hard, StraightThrough, RelaxedBernoulli, Expected, ScoreFunction]


def exact_events(estimator: Estimator) -> bool:
    """Whether ``estimator``'s forward values are exact 0/1 samples (so a run's recorded trees are
    its events), rather than probabilities or relaxed values."""
    return isinstance(estimator, (Hard, StraightThrough, ScoreFunction)) or (
        isinstance(estimator, RelaxedBernoulli) and estimator.hard)


def magic_box(log_prob: Tensor) -> Tensor:
    """``exp(L - stop_gradient(L))``: equals 1, and its gradient is ``dL`` (Foerster et al. 2018, DiCE).

    Multiplying an observable ``f`` by ``magic_box(L)``, with ``L`` the summed log-probability of
    the events that ``f`` depends on, leaves its value unchanged and adds ``f * dL`` to its
    gradient: the score-function estimator of ``d E[f]``.
    """
    return torch.exp(log_prob - log_prob.detach())
