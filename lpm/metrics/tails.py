"""Heavy tails: empirical CCDFs and discrete power-law fits (see :mod:`lpm.metrics`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from lpm.errors import ConfigError, DataFormatError

__all__ = ["ccdf", "PowerLawFit", "fit_power_law"]

ArrayLike = Union[Tensor, np.ndarray, Sequence[float]]

# Largest intermediate (elements) built at once by the KS scan.
_CHUNK_ELEMENTS = 2**24


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
        alpha: maximum-likelihood exponent (the discrete approximation of their eq. 3.7 for
            discrete data, the exact continuous MLE eq. 3.1 otherwise).
        x_min: lower bound of the power-law tail.
        n_tail: number of observations ``>= x_min``.
        ks_distance: Kolmogorov-Smirnov distance between the tail's empirical CDF and the fit.
        alpha_stderr: asymptotic standard error ``(alpha - 1) / sqrt(n_tail)``.
    """

    alpha: float
    x_min: float
    n_tail: int
    ks_distance: float
    alpha_stderr: float


_BERNOULLI_2J = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6)


def _hurwitz_zeta(s: np.ndarray, a: np.ndarray, terms: int = 10) -> np.ndarray:
    """``zeta(s, a) = sum_{k >= 0} (k + a)**-s`` for ``s > 1``, ``a > 0``, by Euler-Maclaurin summation.

    ``terms`` exact terms, then the integral, half the next term and seven Bernoulli corrections
    (DLMF 2.10.1 applied to ``f(k) = (k + a)**-s``; see Johansson 2015, "Rigorous high-precision
    computation of the Hurwitz zeta function", Numer. Algorithms 69:253). Relative error below 1e-12
    for ``a >= 0.5`` and ``s <= 20``.
    """
    s, a = np.broadcast_arrays(np.asarray(s, np.float64), np.asarray(a, np.float64))
    k = np.arange(terms, dtype=np.float64)
    head = ((a[..., None] + k) ** -s[..., None]).sum(-1)
    tail_at = a + terms
    total = head + tail_at ** (1 - s) / (s - 1) + 0.5 * tail_at ** -s
    rising = s.copy()  # s (s+1) ... (s + 2j - 2)
    power = tail_at ** (-s - 1)
    factorial = 2.0
    for j, bern in enumerate(_BERNOULLI_2J, start=1):  # seven correction terms
        total = total + bern / factorial * rising * power
        rising = rising * (s + 2 * j - 1) * (s + 2 * j)
        power = power / tail_at**2
        factorial *= (2 * j + 1) * (2 * j + 2)
    return total


def _fit_candidates(data: np.ndarray, x_min: np.ndarray, discrete: bool) -> tuple[np.ndarray, ...]:
    """``(alpha, n_tail, ks)`` for each candidate ``x_min`` (``K,``), vectorised over candidates.

    The KS distance is the supremum over all ``x >= x_min`` of ``|S(x) - F(x)|``. Both CDFs are
    right-continuous; between two distinct observations ``u_{k-1} < u_k`` the empirical ``S`` is flat,
    so the supremum is reached at ``u_k`` or just before it: at ``u_k - 1`` for the discrete model
    (an integer step function), at ``u_k`` from the left for the continuous one.
    """
    x = np.sort(data)
    total = x.size
    below = np.searchsorted(x, x_min, side="left")  # (K,) observations < x_min
    n_tail = total - below
    log_x = np.log(x)
    suffix = np.concatenate([np.cumsum(log_x[::-1])[::-1], [0.0]])  # suffix[i] = sum(log_x[i:])
    shift = x_min - 0.5 if discrete else x_min
    denom = suffix[below] - n_tail * np.log(shift)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(denom > 0, 1 + n_tail / np.where(denom > 0, denom, 1.0), np.inf)
    u, counts = np.unique(x, return_counts=True)
    at_most = np.cumsum(counts)  # observations <= u_k
    less = at_most - counts  # observations < u_k
    ks = np.full(x_min.size, np.inf)
    rows = max(1, _CHUNK_ELEMENTS // max(u.size, 1))
    for start in range(0, x_min.size, rows):  # a few chunks of candidates
        sl = slice(start, start + rows)
        a, lo, n, xm = alpha[sl, None], below[sl, None], n_tail[sl, None], x_min[sl, None]
        ok = np.isfinite(a[:, 0]) & (n[:, 0] > 0)
        a = np.where(np.isfinite(a), a, 2.0)
        valid = u[None, :] >= xm
        s_hi = (at_most[None, :] - lo) / np.maximum(n, 1)
        s_lo = (less[None, :] - lo) / np.maximum(n, 1)
        if discrete:
            norm = _hurwitz_zeta(a, xm)
            f_hi = 1 - _hurwitz_zeta(a, u[None, :] + 1) / norm
            f_lo = 1 - _hurwitz_zeta(a, np.maximum(u[None, :], xm)) / norm
        else:
            ratio = np.maximum(u[None, :], xm) / xm
            f_hi = 1 - ratio ** (1 - a)
            f_lo = f_hi
        gap = np.maximum(np.abs(s_hi - f_hi), np.abs(s_lo - f_lo))
        dist = np.where(valid, gap, 0.0).max(1)
        ks[sl] = np.where(ok, dist, np.inf)
    return alpha, n_tail, ks


def fit_power_law(sizes: ArrayLike, x_min: Optional[float] = None, discrete: bool = True,
                  *, min_tail: int = 10) -> PowerLawFit:
    """Fit a power-law tail to cascade sizes (or any positive data), after Clauset, Shalizi & Newman 2009.

    For a given ``x_min`` the exponent is the maximum-likelihood estimate over the ``n`` observations
    ``x_i >= x_min``: ``alpha = 1 + n / sum(ln(x_i / (x_min - 1/2)))`` for discrete data (their
    eq. 3.7, accurate for ``x_min`` of about 6 or more), ``alpha = 1 + n / sum(ln(x_i / x_min))`` for
    continuous data (eq. 3.1). When ``x_min`` is None it is chosen among the distinct observed values
    that leave at least ``min_tail`` observations in the tail, minimising the Kolmogorov-Smirnov
    distance between the tail's empirical CDF and the fitted CDF (section 3.3; the discrete fitted
    CDF is ``1 - zeta(alpha, x + 1) / zeta(alpha, x_min)``, with the Hurwitz zeta function). All
    candidates are scored at once with numpy. Observations below ``x_min`` are ignored.

    Args:
        sizes: observations, a tensor (any shape, flattened) or array-like.
        x_min: lower bound of the tail, or None to select it.
        discrete: integer data (cascade sizes) or continuous data.
        min_tail: the least number of tail observations a selected ``x_min`` must leave, ``>= 2``.

    Returns:
        The :class:`PowerLawFit`.

    Raises:
        DataFormatError: NaN/Inf, non-integer values in a discrete fit, or too few observations in
            the tail (fewer than 2 at the given ``x_min``, fewer than ``min_tail`` for every candidate).
        ConfigError: ``x_min < 1`` (discrete) or ``<= 0`` (continuous), ``min_tail < 2``.

    Shapes:
        sizes: any.
    """
    data = _as_array(sizes, "sizes")
    if not isinstance(discrete, bool):
        raise ConfigError(f"Expected 'discrete' to be a bool (got {discrete!r})")
    if isinstance(min_tail, bool) or not isinstance(min_tail, int) or min_tail < 2:
        raise ConfigError(f"Expected 'min_tail' to be an int >= 2 (got {min_tail!r})")
    lowest = 1.0 if discrete else 0.0
    if discrete and not np.array_equal(data, np.round(data)):
        example = data[data != np.round(data)][0]
        raise DataFormatError(f"Expected integer-valued 'sizes' for a discrete fit (got {example})")
    if x_min is not None:
        if isinstance(x_min, bool) or not isinstance(x_min, (int, float)) or not math.isfinite(x_min):
            raise ConfigError(f"Expected 'x_min' to be a finite number or None (got {x_min!r})")
        if x_min < lowest or (not discrete and x_min <= 0):
            bound = ">= 1 for a discrete fit" if discrete else "> 0 for a continuous fit"
            raise ConfigError(f"Expected 'x_min' {bound} (got {x_min})")
        tail = data[data >= x_min]
        if tail.size < 2:
            raise DataFormatError(f"Expected at least 2 observations >= x_min={x_min} (got {tail.size})")
        alpha, n_tail, ks = _fit_candidates(tail, np.array([float(x_min)]), discrete)
        if not np.isfinite(alpha[0]):
            raise DataFormatError(f"Expected observations above x_min={x_min} (got all {tail.size} equal to it)")
        best = 0
        chosen = np.array([float(x_min)])
    else:
        usable = data[data >= lowest] if discrete else data[data > 0]
        candidates = np.unique(usable)
        in_tail = usable.size - np.searchsorted(np.sort(usable), candidates, side="left")
        candidates = candidates[in_tail >= min_tail]
        if candidates.size == 0:
            raise DataFormatError(
                f"Expected at least {min_tail} positive observations to select x_min (got {usable.size})"
            )
        alpha, n_tail, ks = _fit_candidates(usable, candidates, discrete)
        if not np.isfinite(ks).any():
            raise DataFormatError("Expected observations spread over more than one value (got a constant tail)")
        best = int(np.argmin(ks))  # ties: the smallest x_min
        chosen = candidates
    a, n = float(alpha[best]), int(n_tail[best])
    return PowerLawFit(alpha=a, x_min=float(chosen[best]), n_tail=n, ks_distance=float(ks[best]),
                       alpha_stderr=(a - 1) / math.sqrt(n))
