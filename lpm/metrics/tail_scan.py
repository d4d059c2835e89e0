"""The power-law fit's core: exponents, KS distances and the choice of ``x_min``, vectorised over candidates.

Shared by :func:`lpm.metrics.fit_power_law` and its bootstrap (:mod:`lpm.metrics.tail_tests`), which
refits every synthetic data set exactly as the data were fitted (Clauset, Shalizi & Newman 2009, §4.1).
Inputs are trusted here: the public function checks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from lpm.errors import DataFormatError

# Elements of one chunk of the KS scan: a few such float64 arrays stay in a core's cache.
_CHUNK_ELEMENTS = 2**17
# The exponent's search interval: zeta(alpha, x) diverges at 1; no empirical tail is steeper than 50.
_ALPHA_LOW, _ALPHA_HIGH = 1.0 + 1e-9, 50.0


@dataclass(frozen=True)
class TailFit:
    """The selected candidate: exponent, lower bound, tail size and KS distance."""

    alpha: float
    x_min: float
    n_tail: int
    ks: float


def _neg_loglik_per_point(alpha: np.ndarray, mean_log: np.ndarray, x_min: np.ndarray) -> np.ndarray:
    """``-(1/n) log L`` of the discrete power law ``x**-alpha / zeta(alpha, x_min)`` (CSN eq. 3.5)."""
    from scipy.special import zeta  # scipy is imported on first use, not by ``import lpm``

    return alpha * mean_log + np.log(zeta(alpha, x_min))


def _discrete_mle(approx: np.ndarray, mean_log: np.ndarray, x_min: np.ndarray) -> np.ndarray:
    """The exact discrete maximum-likelihood exponent per candidate, from the approximate one.

    The approximation (CSN eq. 3.7) is biased for small ``x_min`` (about 2.0 for a true 2.5 at
    ``x_min = 1``); the exact likelihood is concave in ``alpha``, so a bracket around the
    approximation and Chandrupatla's minimisation (:mod:`scipy.optimize.elementwise`, all candidates
    at once) find its maximum.
    """
    from scipy.optimize import elementwise

    start = np.clip(approx, 1.0 + 1e-3, _ALPHA_HIGH - 1.0)
    bracket = elementwise.bracket_minimum(_neg_loglik_per_point, start, xl0=1.0 + (start - 1.0) / 2,
                                          xmin=_ALPHA_LOW, xmax=_ALPHA_HIGH, args=(mean_log, x_min))
    found = elementwise.find_minimum(_neg_loglik_per_point, bracket.bracket, args=(mean_log, x_min),
                                     tolerances=dict(xatol=1e-9))
    # no bracket: the maximum sits at the search interval's edge, the best point the bracketing reached
    points, values = np.stack(bracket.bracket), np.stack(bracket.f_bracket)
    edge = np.take_along_axis(points, np.nanargmin(values, axis=0)[None], axis=0)[0]
    return np.where(bracket.success, found.x, edge)


def candidate_fits(data: np.ndarray, x_min: np.ndarray, discrete: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(alpha, n_tail, ks)`` for each candidate ``x_min`` (``K,``, ascending), vectorised over candidates.

    ``alpha`` is the maximum-likelihood exponent of the observations ``>= x_min``: exact for
    continuous data (CSN eq. 3.1) and for discrete data (eq. 3.5, maximised numerically from the
    closed-form approximation eq. 3.7). ``inf`` where the tail is one repeated value.

    The KS distance is the supremum over all ``x >= x_min`` of ``|S(x) - F(x)|``. Both CDFs are
    right-continuous; between two distinct observations ``u_{k-1} < u_k`` the empirical ``S`` is flat,
    so the supremum is reached at ``u_k`` or just before it: at ``u_k - 1`` for the discrete model
    (an integer step function, ``F(u) = 1 - zeta(alpha, u + 1) / zeta(alpha, x_min)``), at ``u_k``
    from the left for the continuous one.
    """
    x = np.sort(data)
    total = x.size
    below = np.searchsorted(x, x_min, side="left")  # (K,) observations < x_min
    n_tail = total - below
    log_x = np.log(x)
    suffix = np.concatenate([np.cumsum(log_x[::-1])[::-1], [0.0]])  # suffix[i] = sum(log_x[i:])
    shift = x_min - 0.5 if discrete else x_min
    denom = suffix[below] - n_tail * np.log(shift)
    degenerate = x[-1] <= x_min  # every tail observation equals x_min: no finite MLE
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(denom > 0, 1 + n_tail / np.where(denom > 0, denom, 1.0), np.inf)
    alpha = np.where(degenerate, np.inf, alpha)
    if discrete:
        fit = np.isfinite(alpha)
        if fit.any():
            mean_log = suffix[below[fit]] / n_tail[fit]
            alpha[fit] = _discrete_mle(alpha[fit], mean_log, x_min[fit])
    return alpha, n_tail, _ks_distances(x, alpha, below, n_tail, x_min, discrete)


def _ks_distances(x: np.ndarray, alpha: np.ndarray, below: np.ndarray, n_tail: np.ndarray, x_min: np.ndarray,
                  discrete: bool) -> np.ndarray:
    """The KS distance of each candidate's fit (``inf`` where ``alpha`` is not finite); ``x`` sorted.

    At each distinct value ``u_k >= x_min`` the empirical CDF is ``S_hi`` and just before it ``S_lo``
    (the previous value's ``S_hi``); the model's CDF is ``F_hi`` there and ``F_lo`` just before.
    Since ``F`` increases and ``S`` is flat between observations, ``F_hi(u_k) - S_hi(u_k)`` is at most
    ``F_lo(u_{k+1}) - S_lo(u_{k+1})`` and ``S_lo(u_k) - F_lo(u_k)`` at most ``S_hi(u_{k-1}) -
    F_hi(u_{k-1})`` (both ends give 0), so the supremum is ``max_k max(S_hi - F_hi, F_lo - S_lo)``.
    Rows come in chunks that stay in cache, computed in place: the continuous scan is
    ``O(K U)`` for ``K`` candidates and ``U`` distinct values.
    """
    from scipy.special import zeta

    u, counts = np.unique(x, return_counts=True)
    at_most = np.cumsum(counts).astype(np.float64)  # observations <= u_k
    log_u = np.log(u)
    ks = np.full(x_min.size, np.inf)
    usable = np.isfinite(alpha) & (n_tail > 0)
    first_column = np.searchsorted(u, x_min, side="left")  # (K,) first distinct value >= x_min
    start = 0
    while start < x_min.size:
        # columns below the chunk's smallest candidate are invalid for every row of it: skip them
        lo_col = int(first_column[start])
        rows = max(1, _CHUNK_ELEMENTS // max(u.size - lo_col, 1))
        sl = slice(start, start + rows)
        start += rows
        a = np.where(usable[sl], alpha[sl], 2.0)[:, None]
        n = np.maximum(n_tail[sl], 1)[:, None].astype(np.float64)
        lo, xm = below[sl, None], x_min[sl, None]
        s_hi = (at_most[None, lo_col:] - lo) / n
        s_lo = s_hi - counts[None, lo_col:] / n
        if discrete:
            # zeta(a, u) = zeta(a, u + 1) + u**-a: one zeta evaluation per cell gives both CDF values
            norm = zeta(a, xm)
            z_next = zeta(a, u[None, lo_col:] + 1)
            gap = s_hi - 1 + z_next / norm  # S_hi - F_hi
            z_next += np.exp(-a * log_u[None, lo_col:])
            f_lo = np.where(u[None, lo_col:] > xm, 1 - z_next / norm, 0.0)  # F just below x_min is 0
            np.maximum(gap, f_lo - s_lo, out=gap)
        else:
            power = log_u[None, lo_col:] - np.log(xm)
            power *= 1 - a
            np.expm1(power, out=power)  # -F = (u / x_min)**(1 - a) - 1
            gap = s_hi + power  # S_hi - F
            power += s_lo
            np.negative(power, out=power)  # F - S_lo
            np.maximum(gap, power, out=gap)
        gap[u[None, lo_col:] < xm] = -np.inf
        ks[sl] = np.where(usable[sl], gap.max(1), np.inf)
    return ks


def candidates_for(data: np.ndarray, discrete: bool, min_tail: int) -> tuple[np.ndarray, np.ndarray]:
    """The usable observations and the candidate ``x_min`` values (distinct usable values that leave
    at least ``min_tail`` observations in the tail), ascending."""
    usable = data[data >= 1] if discrete else data[data > 0]
    candidates = np.unique(usable)
    in_tail = usable.size - np.searchsorted(np.sort(usable), candidates, side="left")
    return usable, candidates[in_tail >= min_tail]


def select(data: np.ndarray, discrete: bool, x_min: Optional[float], min_tail: int) -> TailFit:
    """Fit at ``x_min``, or choose it among the candidates by the least KS distance (ties: the smallest).

    Raises:
        DataFormatError: fewer than 2 observations ``>= x_min``, a tail of one repeated value, or no
            candidate leaving ``min_tail`` observations.
    """
    if x_min is not None:
        tail = data[data >= x_min]
        if tail.size < 2:
            raise DataFormatError(f"Expected at least 2 observations >= x_min={x_min} (got {tail.size})")
        alpha, n_tail, ks = candidate_fits(tail, np.array([float(x_min)]), discrete)
        if not np.isfinite(alpha[0]):
            raise DataFormatError(f"Expected observations above x_min={x_min} (got all {tail.size} equal to it)")
        return TailFit(float(alpha[0]), float(x_min), int(n_tail[0]), float(ks[0]))
    usable, candidates = candidates_for(data, discrete, min_tail)
    if candidates.size == 0:
        raise DataFormatError(f"Expected at least {min_tail} positive observations to select x_min (got {usable.size})")
    alpha, n_tail, ks = candidate_fits(usable, candidates, discrete)
    if not np.isfinite(ks).any():
        raise DataFormatError("Expected observations spread over more than one value (got a constant tail)")
    best = int(np.argmin(ks))
    return TailFit(float(alpha[best]), float(candidates[best]), int(n_tail[best]), float(ks[best]))
