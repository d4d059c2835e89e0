"""Heavy tails: empirical CCDFs and power-law fits with their tests (see :mod:`lpm.metrics`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from lpm.errors import ConfigError, DataFormatError
from lpm.metrics.tail_scan import select
from lpm.metrics.tail_tests import LikelihoodRatio, compare, goodness_of_fit

__all__ = ["ccdf", "PowerLawFit", "LikelihoodRatio", "fit_power_law"]

ArrayLike = Union[Tensor, np.ndarray, Sequence[float]]

# ====================================================================== heavy tails
def _as_array(values: ArrayLike, name: str) -> np.ndarray:
    """Flatten to a finite, non-empty float64 numpy array."""
    if isinstance(values, Tensor):
        if values.dtype == torch.bool or values.dtype.is_complex:
            raise DataFormatError(f"Expected '{name}' of real type (got {values.dtype})")
        array = values.detach().cpu().to(torch.float64).numpy().reshape(-1)
    else:
        try:
            array = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise DataFormatError(f"Expected '{name}' to be an array of numbers (got {type(values).__name__})") from err
    if array.size == 0:
        raise DataFormatError(f"Expected at least one value in '{name}' (got an empty array)")
    if not np.isfinite(array).all():
        raise DataFormatError(f"Expected finite '{name}' (got {int((~np.isfinite(array)).sum())} NaN or Inf)")
    return array


def ccdf(values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Empirical complementary CDF ``P(X >= x)`` at each distinct observed value.

    Args:
        values: observations (a tensor of any shape is flattened), e.g. final cascade sizes.

    Returns:
        ``(x, p)`` float64 numpy arrays: the sorted distinct values and the fraction of observations
        at least as large; ``p[0] == 1`` and ``p`` decreases. Plot on log-log axes.

    Raises:
        DataFormatError: no values, or NaN/Inf.

    Shapes:
        values: any; x, p: ``(U,)`` with ``U`` distinct values.
    """
    array = _as_array(values, "values")
    x, counts = np.unique(array, return_counts=True)
    at_least = array.size - np.concatenate([[0], np.cumsum(counts)[:-1]])
    return x, at_least / array.size



@dataclass(frozen=True)
class PowerLawFit:
    """A power-law fit ``p(x) ~ x**-alpha`` for ``x >= x_min`` (Clauset, Shalizi & Newman 2009).

    Attributes:
        alpha: maximum-likelihood exponent: exact for discrete data (their eq. 3.5, maximised
            numerically) and for continuous data (eq. 3.1).
        x_min: lower bound of the power-law tail.
        n_tail: number of observations ``>= x_min``.
        ks_distance: Kolmogorov-Smirnov distance between the tail's empirical CDF and the fit.
        alpha_stderr: asymptotic standard error ``(alpha - 1) / sqrt(n_tail)``.
        p_value: goodness of fit, the fraction of ``resamples`` synthetic data sets drawn from the
            fit (semi-parametric bootstrap, §4.1) whose KS distance is at least ``ks_distance``;
            ``p <= 0.1`` rules the power law out. NaN when fitted with ``resamples=0``.
        resamples: how many synthetic data sets ``p_value`` comes from.
        vs_lognormal, vs_exponential: Vuong's likelihood-ratio test of the power law against each
            alternative on the same tail (§5); see :class:`LikelihoodRatio`.

    A power law is supported only when ``p_value`` is not small *and* no alternative is favoured;
    a lognormal that cannot be told apart (``vs_lognormal.favours() is None``) is common and means
    the data do not decide between them.
    """

    alpha: float
    x_min: float
    n_tail: int
    ks_distance: float
    alpha_stderr: float
    p_value: float
    resamples: int
    vs_lognormal: LikelihoodRatio
    vs_exponential: LikelihoodRatio


def fit_power_law(sizes: ArrayLike, x_min: Optional[float] = None, discrete: bool = True,
                  *, min_tail: int = 10, resamples: int = 1000, seed: int = 0) -> PowerLawFit:
    """Fit a power-law tail to cascade sizes (or any positive data), after Clauset, Shalizi & Newman 2009.

    For a given ``x_min`` the exponent is the maximum-likelihood estimate over the ``n`` observations
    ``x_i >= x_min``: for discrete data the maximum of ``-alpha sum(ln x_i) - n ln zeta(alpha, x_min)``
    (their eq. 3.5, found from the closed-form approximation eq. 3.7, which is biased below
    ``x_min`` of about 6), ``alpha = 1 + n / sum(ln(x_i / x_min))`` for continuous data (eq. 3.1).
    When ``x_min`` is None it is chosen among the distinct observed values that leave at least
    ``min_tail`` observations in the tail, minimising the Kolmogorov-Smirnov distance between the
    tail's empirical CDF and the fitted CDF (section 3.3; the discrete fitted CDF is
    ``1 - zeta(alpha, x + 1) / zeta(alpha, x_min)``, with the Hurwitz zeta function of
    :func:`scipy.special.zeta`). All candidates are scored at once with numpy. Observations below
    ``x_min`` are ignored by the fit.

    The fit is then judged as the method requires: a bootstrap goodness-of-fit p-value (each
    synthetic set refitted, ``x_min`` included; cost: ``resamples`` fits) and likelihood-ratio
    tests against the lognormal and the exponential (fitted by the ``powerlaw`` package).

    Args:
        sizes: observations, a tensor (any shape, flattened) or array-like.
        x_min: lower bound of the tail, or None to select it.
        discrete: integer data (cascade sizes) or continuous data.
        min_tail: the least number of tail observations a selected ``x_min`` must leave, ``>= 2``.
        resamples: synthetic data sets of the goodness-of-fit bootstrap, ``>= 0`` (0: skip it,
            ``p_value`` is NaN); CSN use 2500 for p to within about 0.01.
        seed: seed of the bootstrap's draws.

    Returns:
        The :class:`PowerLawFit`.

    Raises:
        DataFormatError: NaN/Inf, non-integer values in a discrete fit, or too few observations in
            the tail (fewer than 2 at the given ``x_min``, fewer than ``min_tail`` for every candidate,
            or a tail of one repeated value).
        ConfigError: ``x_min < 1`` (discrete) or ``<= 0`` (continuous), ``min_tail < 2``,
            ``resamples < 0``, a seed that is not an int.

    Shapes:
        sizes: any.
    """
    data = _as_array(sizes, "sizes")
    if not isinstance(discrete, bool):
        raise ConfigError(f"Expected 'discrete' to be a bool (got {discrete!r})")
    for name, value, least in (("min_tail", min_tail, 2), ("resamples", resamples, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ConfigError(f"Expected '{name}' to be an int >= {least} (got {value!r})")
    if discrete and not np.array_equal(data, np.round(data)):
        example = data[data != np.round(data)][0]
        raise DataFormatError(f"Expected integer-valued 'sizes' for a discrete fit (got {example})")
    if x_min is not None:
        if isinstance(x_min, bool) or not isinstance(x_min, (int, float, np.number)) or not math.isfinite(x_min):
            raise ConfigError(f"Expected 'x_min' to be a finite number or None (got {x_min!r})")
        if (discrete and x_min < 1) or (not discrete and x_min <= 0):
            bound = ">= 1 for a discrete fit" if discrete else "> 0 for a continuous fit"
            raise ConfigError(f"Expected 'x_min' {bound} (got {x_min})")
        x_min = float(x_min)
    fit = select(data, discrete, x_min, int(min_tail))
    p_value = (goodness_of_fit(data, fit, discrete, x_min is not None, int(min_tail), int(resamples), int(seed))
               if resamples > 0 else math.nan)
    vs_lognormal, vs_exponential = compare(data[data >= fit.x_min], fit, discrete)
    return PowerLawFit(alpha=fit.alpha, x_min=fit.x_min, n_tail=fit.n_tail, ks_distance=fit.ks,
                       alpha_stderr=(fit.alpha - 1) / math.sqrt(fit.n_tail), p_value=float(p_value),
                       resamples=int(resamples), vs_lognormal=vs_lognormal, vs_exponential=vs_exponential)
