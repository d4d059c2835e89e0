"""Constrained learnable parameters: stored unconstrained, read through an explicit transform."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lpm.errors import ConfigError

__all__ = ["positive", "positive_value", "log_scale", "unit_interval", "inverse_softplus", "logit", "softplus"]


def inverse_softplus(value: float) -> float:
    """``y`` such that ``softplus(y) == value`` (value > 0)."""
    return value + math.log(-math.expm1(-value))


def logit(value: float) -> float:
    """``y`` such that ``sigmoid(y) == value`` (0 < value < 1)."""
    return math.log(value) - math.log1p(-value)


def positive_value(name: str, value: float) -> float:
    """``value`` as a float, checked to be a number > 0 and finite (a ConfigError naming ``name`` if not)."""
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ConfigError(f"Expected '{name}' > 0 (got {value!r})")
    return float(value)


def positive(name: str, value: float) -> nn.Parameter:
    """A parameter read as ``softplus(raw)``, initialised so that it reads ``value`` (> 0)."""
    return nn.Parameter(torch.tensor(inverse_softplus(positive_value(name, value))))


def log_scale(name: str, value: float) -> nn.Parameter:
    """A parameter read as ``exp(raw)``, initialised so that it reads ``value`` (> 0): for values that
    span orders of magnitude, where a gradient step should change them by a ratio."""
    return nn.Parameter(torch.tensor(math.log(positive_value(name, value))))


def unit_interval(name: str, value: float) -> nn.Parameter:
    """A parameter read as ``sigmoid(raw)``, initialised so that it reads ``value`` in (0, 1)."""
    if not (isinstance(value, (int, float)) and 0 < value < 1):
        raise ConfigError(f"Expected '{name}' in the open interval (0, 1) (got {value!r})")
    return nn.Parameter(torch.tensor(logit(float(value))))


def softplus(raw: Tensor) -> Tensor:
    return torch.nn.functional.softplus(raw)
