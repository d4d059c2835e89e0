"""Is a power-law tail plausible, and is it better than the alternatives? (see :func:`lpm.metrics.fit_power_law`)

Clauset, Shalizi & Newman (2009), "Power-law distributions in empirical data", SIAM Review 51(4):661:
a fitted power law is judged by the semi-parametric bootstrap of its Kolmogorov-Smirnov distance
(§4.1, :func:`goodness_of_fit`) and compared with other heavy-tailed laws by Vuong's normalized
log-likelihood ratio (§5, :func:`compare`). The alternatives' maximum-likelihood fits and the ratio
test come from the ``powerlaw`` package (Alstott, Bullmore & Plenz 2014, PLoS ONE 9:e85777); its
bootstrap is not provided there, so it is here, on :mod:`lpm.metrics.tail_scan`'s vectorised refit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from lpm.errors import DataFormatError
from lpm.metrics.tail_scan import TailFit, select

__all__ = ["LikelihoodRatio", "ALTERNATIVES", "compare", "goodness_of_fit", "sample_power_law"]

#: The alternatives every fit is compared with, by their name in ``powerlaw``.
ALTERNATIVES = ("lognormal", "exponential")
_EXACT_BELOW = 2.0**53


@dataclass(frozen=True)
class LikelihoodRatio:
    """Vuong's test of the power law against one alternative, on the tail ``x >= x_min``.

    Attributes:
        alternative: the other law (``"lognormal"`` or ``"exponential"``), fitted by maximum
            likelihood to the same tail (discrete data: its mass rounded to the integers).
        ratio: the normalized log-likelihood ratio ``R / (sqrt(n) sigma)``; positive favours the
            power law, negative the alternative (CSN eq. 5.2-5.3).
        p_value: two-sided significance of the sign of ``ratio``: when large (above 0.1, say) the
            data cannot tell the two laws apart.
        parameters: the alternative's fitted parameters (``mu, sigma`` of the logarithm for the
            lognormal, the rate ``lambda`` for the exponential).
    """

    alternative: str
    ratio: float
    p_value: float
    parameters: tuple[float, ...]

    def favours(self, level: float = 0.1) -> Optional[str]:
        """``"power_law"`` or the alternative's name when the sign of the ratio is significant at
        ``level``, else None (inconclusive)."""
        if not self.p_value < level:
            return None
        return "power_law" if self.ratio > 0 else self.alternative


def _power_law_loglik(tail: np.ndarray, alpha: float, x_min: float, discrete: bool) -> np.ndarray:
    """Per-observation log-likelihoods of the fitted power law on the tail."""
    from scipy.special import zeta

    if discrete:
        return -alpha * np.log(tail) - np.log(zeta(alpha, x_min))
    return np.log((alpha - 1) / x_min) - alpha * np.log(tail / x_min)


def compare(tail: np.ndarray, fit: TailFit, discrete: bool) -> tuple[LikelihoodRatio, ...]:
    """The power law ``fit`` against each of :data:`ALTERNATIVES` on ``tail`` (observations ``>= x_min``).

    The power law's likelihood is the exact one at the fitted exponent; each alternative is
    truncated at ``x_min`` and fitted there by ``powerlaw`` (Nelder-Mead on the exact truncated
    likelihood), and ``powerlaw.loglikelihood_ratio`` turns the per-observation differences into
    Vuong's statistic and its p-value.
    """
    import powerlaw

    ours = _power_law_loglik(tail, fit.alpha, fit.x_min, discrete)
    results = []
    for name, law in (("lognormal", powerlaw.Lognormal), ("exponential", powerlaw.Exponential)):
        with warnings.catch_warnings():
            # powerlaw warns when a fitted parameter nears its range's edge (a lognormal of huge
            # sigma is its power-law limit): a legitimate maximum here, reported by the ratio itself
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            other = law(data=tail, xmin=fit.x_min, discrete=discrete, verbose=0)
            theirs = other.loglikelihoods(tail)
        ratio, p_value = powerlaw.loglikelihood_ratio(ours.copy(), np.asarray(theirs, dtype=np.float64).copy(),
                                                      normalized_ratio=True)
        parameters = tuple(float(v) for v in other.parameters.values())
        results.append(LikelihoodRatio(name, float(ratio), float(p_value), parameters))
    return tuple(results)


def sample_power_law(alpha: float, x_min: float, size: int, discrete: bool, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of the power law ``p(x) ~ x**-alpha``, ``x >= x_min``.

    Continuous: by inversion, ``x_min * u**(-1 / (alpha - 1))``. Discrete (``p(k) = k**-alpha /
    zeta(alpha, x_min)``): by rejection from ``floor(Y)``, ``Y`` continuous with the same exponent
    and lower bound (Devroye 1986, "Non-Uniform Random Variate Generation", X.6, for Zipf's law;
    any ``x_min`` here). ``floor(Y) = k`` has probability proportional to
    ``c(k) = (k**(1-alpha) - (k+1)**(1-alpha)) / (alpha - 1)``, and ``k**-alpha / c(k)`` lies in
    ``[1, (1 + 1/k)**alpha]``, so accepting ``k`` with probability ``k**-alpha / (c(k) M)``,
    ``M = (1 + 1/x_min)**alpha``, gives the exact law; the rejected are redrawn (a share
    ``(alpha - 1) zeta(alpha, x_min) x_min**(alpha - 1) / M`` is accepted per round: a quarter or
    more for ``alpha <= 3.5``, nearly all for large ``x_min``).
    """
    if not discrete:
        return x_min * (1.0 - rng.random(size)) ** (-1.0 / (alpha - 1.0))
    out = np.empty(size)
    todo = np.arange(size)
    bound = (1.0 + 1.0 / x_min) ** alpha
    while todo.size:
        with np.errstate(over="ignore"):
            k = np.floor(x_min * (1.0 - rng.random(todo.size)) ** (-1.0 / (alpha - 1.0)))
        k = np.minimum(k, _EXACT_BELOW)  # integers stay exact in float64
        # c(k) (alpha - 1) / k**(1-alpha) = 1 - (1 + 1/k)**(1-alpha), computed without cancellation
        cell = -np.expm1((1.0 - alpha) * np.log1p(1.0 / k))
        accept = rng.random(todo.size) * bound * cell <= (alpha - 1.0) / k
        out[todo[accept]] = k[accept]
        todo = todo[~accept]
    return out


def goodness_of_fit(data: np.ndarray, fit: TailFit, discrete: bool, fixed_x_min: bool, min_tail: int,
                    resamples: int, seed: int) -> float:
    """The semi-parametric bootstrap p-value of the fit's KS distance (CSN §4.1).

    Each synthetic data set has the data's size: with probability ``n_tail / n`` a value is drawn
    from the fitted power law, otherwise uniformly from the observations below ``x_min``. It is fitted
    exactly as the data were (``x_min`` chosen again unless it was given), and the p-value is the
    fraction of synthetic KS distances at least the observed one. CSN reject the power law when
    ``p <= 0.1``; 2500 resamples give p to about +-0.01. A synthetic set that cannot be fitted (a
    constant tail: vanishingly rare) counts as at least as far, which can only raise ``p``.
    """
    rng = np.random.default_rng(seed)
    usable = data[data >= 1] if discrete else data[data > 0]
    if fixed_x_min:
        usable = usable[usable >= fit.x_min]
    body = np.sort(usable[usable < fit.x_min])
    n = usable.size
    at_least = 0
    for _ in range(resamples):
        from_tail = int(rng.binomial(n, fit.n_tail / n))
        synthetic = np.concatenate([sample_power_law(fit.alpha, fit.x_min, from_tail, discrete, rng),
                                    body[rng.integers(0, body.size, n - from_tail)] if body.size else []])
        try:
            ks = select(synthetic, discrete, fit.x_min if fixed_x_min else None, min_tail).ks
        except DataFormatError:
            ks = np.inf
        at_least += ks >= fit.ks
    return at_least / resamples
