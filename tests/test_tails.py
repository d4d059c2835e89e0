"""Heavy tails: CCDFs and power-law fits against hand cases, brute force, scipy and the ``powerlaw`` package."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import optimize, stats
from scipy.special import zeta

from lpm import metrics
from lpm.errors import ConfigError, DataFormatError
from lpm.metrics.tail_scan import candidate_fits
from lpm.metrics.tail_tests import sample_power_law


def approx_discrete_power_law(alpha: float, x_min: int, n: int, seed: int) -> np.ndarray:
    """Clauset et al. (2009) appendix D: ``floor((x_min - 1/2) (1 - r)**(-1/(alpha-1)) + 1/2)``."""
    r = np.random.default_rng(seed).random(n)
    return np.floor((x_min - 0.5) * (1 - r) ** (-1 / (alpha - 1)) + 0.5)


def exact_discrete_power_law(alpha: float, x_min: int, n: int, seed: int) -> np.ndarray:
    """By inversion on a table of the exact survival function ``zeta(alpha, x) / zeta(alpha, x_min)``
    (draws beyond the table's end, a 1e-4 share or less here, are dropped)."""
    grid = np.arange(x_min, x_min + 10**6, dtype=np.float64)
    survival = zeta(alpha, grid) / zeta(alpha, x_min)
    u = np.random.default_rng(seed).random(2 * n)
    u = u[u > survival[-1]][:n]
    # the largest x with survival(x) > u
    return grid[np.searchsorted(-survival, -u, side="left") - 1]


def exact_mle(data: np.ndarray, x_min: float) -> float:
    """The discrete power law's maximum-likelihood exponent by scipy's bounded scalar minimiser."""
    tail = data[data >= x_min]
    total = np.log(tail).sum()
    result = optimize.minimize_scalar(lambda a: a * total + tail.size * np.log(zeta(a, x_min)),
                                      bounds=(1.0001, 20.0), method="bounded", options=dict(xatol=1e-11))
    return float(result.x)


def fit(data, **kwargs) -> metrics.PowerLawFit:
    kwargs.setdefault("resamples", 0)
    return metrics.fit_power_law(data, **kwargs)


# ====================================================================== ccdf
def test_ccdf_hand():
    x, p = metrics.ccdf(torch.tensor([[3, 1], [1, 7]]))
    np.testing.assert_array_equal(x, [1, 3, 7])
    np.testing.assert_allclose(p, [1.0, 0.5, 0.25])
    x, p = metrics.ccdf([2.5])
    np.testing.assert_array_equal(x, [2.5])
    np.testing.assert_array_equal(p, [1.0])


def test_ccdf_random_vs_brute():
    values = np.random.default_rng(0).integers(0, 30, 500)
    x, p = metrics.ccdf(values)
    np.testing.assert_array_equal(x, np.unique(values))
    np.testing.assert_allclose(p, [(values >= v).mean() for v in x])


def test_ccdf_bad_input():
    for bad in ([], [float("inf")], torch.tensor([True])):
        with pytest.raises(DataFormatError, match="Expected"):
            metrics.ccdf(bad)


# ====================================================================== exponent and x_min
def test_power_law_given_x_min_hand():
    data = np.array([1, 2, 2, 4, 8, 100])
    result = fit(torch.from_numpy(data), x_min=2)
    assert result.n_tail == 5 and result.x_min == 2.0
    assert result.alpha == pytest.approx(exact_mle(data, 2), rel=1e-7)
    assert result.alpha_stderr == pytest.approx((result.alpha - 1) / math.sqrt(5))
    cont = fit(data.astype(float), x_min=2.0, discrete=False)
    assert cont.alpha == pytest.approx(1 + 5 / sum(math.log(v / 2.0) for v in (2, 2, 4, 8, 100)))


@pytest.mark.parametrize("x_min", [1, 2, 3, 6, 20])
def test_discrete_exponent_is_the_exact_mle(x_min):
    """Exact at every x_min; the closed-form approximation (CSN eq. 3.7), used before, gave 2.02 for
    a true 2.5 at x_min = 1 and 2.37 at x_min = 2."""
    data = exact_discrete_power_law(2.5, x_min, 20000, seed=x_min)
    result = fit(data, x_min=x_min)
    # the likelihood is flat to 1e-16 within about 1e-8 of its maximum: both optimisers stop there
    assert result.alpha == pytest.approx(exact_mle(data, x_min), rel=1e-7)
    assert abs(result.alpha - 2.5) < 3 * result.alpha_stderr


@pytest.mark.parametrize("x_min", [5, 10])
def test_power_law_recovers_alpha(x_min):
    data = approx_discrete_power_law(2.5, x_min, 20000, seed=x_min)
    result = fit(torch.from_numpy(data), x_min=x_min)
    assert abs(result.alpha - 2.5) < 0.1 and result.n_tail == 20000
    assert result.alpha_stderr == pytest.approx((result.alpha - 1) / math.sqrt(20000))
    assert result.ks_distance < 0.02
    zipf = np.random.default_rng(1).zipf(2.5, 20000)  # exact discrete power law, x_min = 1
    assert abs(fit(zipf, x_min=1).alpha - 2.5) < 0.03
    pareto = 3.0 * (1 - np.random.default_rng(2).random(20000)) ** (-1 / 1.5)
    assert abs(fit(pareto, x_min=3.0, discrete=False).alpha - 2.5) < 0.05


def test_power_law_ks_vs_brute():
    """KS distance: supremum over every integer x >= x_min, with the fitted CDF from scipy's zeta."""
    data = np.random.default_rng(3).zipf(2.2, 3000)
    for x_min in (1, 3, 7):
        result = fit(data, x_min=x_min)
        tail = np.sort(data[data >= x_min])
        grid = np.arange(x_min, tail.max() + 1)
        empirical = np.searchsorted(tail, grid, side="right") / tail.size
        model = 1 - zeta(result.alpha, grid + 1) / zeta(result.alpha, x_min)
        assert result.ks_distance == pytest.approx(np.abs(empirical - model).max(), rel=1e-9)
    data = 2.0 * (1 - np.random.default_rng(4).random(2000)) ** (-1 / 1.8)
    result = fit(data, x_min=2.0, discrete=False)
    tail = np.sort(data)
    model = 1 - (tail / 2.0) ** (1 - result.alpha)
    upper = np.arange(1, tail.size + 1) / tail.size
    ks = max(np.abs(upper - model).max(), np.abs(upper - 1 / tail.size - model).max())
    assert result.ks_distance == pytest.approx(ks, rel=1e-9)


def test_candidate_scan_equals_one_fit_per_candidate():
    """The chunked scan over all candidates at once (chunks skip the columns below their first
    candidate) gives each candidate's fit alone, continuous and discrete, ties included."""
    rng = np.random.default_rng(5)
    for data, discrete in ((np.floor(rng.lognormal(1.5, 1.2, 3000)) + 1, True),
                           (rng.lognormal(0.0, 1.0, 3000), False)):
        candidates = np.unique(data)[:-12]
        alpha, n_tail, ks = candidate_fits(data, candidates, discrete)
        for k in rng.choice(candidates.size, 25, replace=False):
            one = candidate_fits(data[data >= candidates[k]], candidates[k:k + 1], discrete)
            assert (alpha[k], n_tail[k]) == pytest.approx((one[0][0], one[1][0]), rel=1e-12)
            assert ks[k] == pytest.approx(one[2][0], rel=1e-9, abs=1e-15)


def test_power_law_selects_x_min():
    """A uniform body on 1..19 below a power-law tail from 20: the KS scan skips the body."""
    rng = np.random.default_rng(7)
    data = np.concatenate([rng.integers(1, 20, 10000), approx_discrete_power_law(2.5, 20, 10000, seed=8)])
    result = fit(data)
    assert 20 <= result.x_min <= 50
    assert abs(result.alpha - 2.5) < 0.1
    # the selected x_min is the best of all candidates
    for other in (1, 10, 19, 20, 100):
        assert fit(data, x_min=other).ks_distance >= result.ks_distance
    pure = fit(exact_discrete_power_law(2.5, 6, 20000, seed=9))
    assert 6 <= pure.x_min <= 20 and abs(pure.alpha - 2.5) < 0.1


@pytest.mark.parametrize("discrete", [True, False])
def test_fit_matches_the_powerlaw_package(discrete):
    """The same x_min and exponent as ``powerlaw.Fit`` (exact discrete likelihood there too)."""
    powerlaw = pytest.importorskip("powerlaw")
    rng = np.random.default_rng(11)
    if discrete:
        data = np.concatenate([rng.integers(1, 8, 1500), exact_discrete_power_law(2.3, 8, 1500, seed=12)])
    else:
        data = np.concatenate([rng.uniform(0.5, 3.0, 1500), 3.0 * (1 - rng.random(1500)) ** (-1 / 1.4)])
    ours = fit(data, discrete=discrete)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = powerlaw.Fit(data, discrete=discrete, estimate_discrete=False, verbose=0)
        their_alpha, their_ks = theirs.power_law.alpha, theirs.power_law.D
    assert ours.x_min == theirs.xmin
    # powerlaw maximises the discrete likelihood by Nelder-Mead to 1e-4
    assert ours.alpha == pytest.approx(their_alpha, abs=1e-4 if discrete else 1e-10)
    if discrete:
        assert ours.ks_distance == pytest.approx(their_ks, abs=1e-4)
    else:  # powerlaw's D compares the CDFs at the observations only, not also just below each of them
        assert their_ks - 1e-12 <= ours.ks_distance < their_ks + 1.0 / ours.n_tail


# ====================================================================== goodness of fit and alternatives
@pytest.mark.parametrize("x_min", [1, 4, 50])
def test_discrete_sampler_is_exact(x_min):
    """The rejection sampler's frequencies against the exact law ``k**-alpha / zeta(alpha, x_min)``:
    the first 30 values and the rest pooled, by a chi-square test; and its far tail."""
    alpha = 2.2
    draws = sample_power_law(alpha, float(x_min), 400_000, True, np.random.default_rng(x_min))
    assert draws.min() >= x_min and np.array_equal(draws, np.round(draws))
    k = np.arange(x_min, x_min + 30)
    expected = np.append(k**-alpha / zeta(alpha, x_min), zeta(alpha, x_min + 30) / zeta(alpha, x_min))
    observed = np.append([(draws == v).sum() for v in k], (draws >= x_min + 30).sum())
    assert stats.chisquare(observed, expected * draws.size).pvalue > 0.001
    far = 100 * x_min
    share = (draws >= far).mean()
    exact = zeta(alpha, far) / zeta(alpha, x_min)
    assert abs(share - exact) < 4 * math.sqrt(exact / draws.size)


def test_continuous_sampler_is_pareto():
    draws = sample_power_law(2.5, 3.0, 50_000, False, np.random.default_rng(0))
    assert stats.kstest(draws, stats.pareto(b=1.5, scale=3.0).cdf).pvalue > 0.01


@pytest.mark.parametrize("discrete", [True, False])
def test_power_law_data_pass_and_beat_the_exponential(discrete):
    """Exact power-law samples (x_min selected): bootstrap p-values not small (at most one of four at
    0.1 or below, the median above 0.2), no alternative favoured over the power law, the exponential
    rejected."""
    p_values = []
    for seed in range(4):
        rng = np.random.default_rng(20 + seed)
        data = sample_power_law(2.5, 3.0, 2000, discrete, rng) if discrete else 2.0 * (1 - rng.random(1000)) ** -0.625
        result = metrics.fit_power_law(data, discrete=discrete, resamples=100, seed=seed)
        assert result.resamples == 100 and 0.0 <= result.p_value <= 1.0
        p_values.append(result.p_value)
        assert result.vs_lognormal.favours() != "lognormal", result.vs_lognormal
        assert result.vs_exponential.favours() == "power_law" and result.vs_exponential.ratio > 0, result
    assert sum(p <= 0.1 for p in p_values) <= 1 and np.median(p_values) > 0.2, p_values


def test_bootstrap_p_value_is_roughly_uniform_under_the_null():
    """Over 12 exact power-law data sets (given x_min) the p-values spread over (0, 1), as a p-value
    of a true null must: mean near 1/2, few at 0.1 or below."""
    values = [metrics.fit_power_law(sample_power_law(2.0, 2.0, 400, True, np.random.default_rng(100 + s)), x_min=2,
                                    resamples=60, seed=s).p_value for s in range(12)]
    assert 0.25 < np.mean(values) < 0.75 and sum(v <= 0.1 for v in values) <= 3, values


def test_lognormal_data_fail_and_favour_the_lognormal():
    """Lognormal samples with the tail taken from below the median: the power law is rejected by
    the bootstrap and the lognormal favoured by the likelihood ratio."""
    data = np.random.default_rng(30).lognormal(1.0, 0.8, 3000)
    result = metrics.fit_power_law(data, x_min=1.0, discrete=False, resamples=100, seed=0)
    assert result.p_value < 0.05, result
    assert result.vs_lognormal.favours() == "lognormal" and result.vs_lognormal.ratio < 0
    integer = np.ceil(data)
    discrete = metrics.fit_power_law(integer, x_min=2, resamples=100, seed=0)
    assert discrete.p_value < 0.05 and discrete.vs_lognormal.favours() == "lognormal", discrete


def test_likelihood_ratio_matches_an_independent_vuong_test():
    """The lognormal alternative fitted by scipy on the truncated likelihood and Vuong's statistic by
    hand (CSN eq. 5.2-5.3) give the same ratio and p-value as the fit reports (continuous data)."""
    data = np.random.default_rng(40).lognormal(0.5, 1.5, 2000)
    x_min = 2.0
    result = fit(data, x_min=x_min, discrete=False)
    tail = data[data >= x_min]

    def lognormal_loglik(params):
        mu, sigma = params
        return stats.norm.logpdf(np.log(tail), mu, sigma) - np.log(tail) - stats.norm.logsf(np.log(x_min), mu, sigma)

    best = optimize.minimize(lambda p: -lognormal_loglik(p).sum() if p[1] > 0 else np.inf,
                             x0=[np.log(tail).mean(), np.log(tail).std()], method="Nelder-Mead",
                             options=dict(xatol=1e-9, fatol=1e-11, maxiter=20000))
    power = np.log((result.alpha - 1) / x_min) - result.alpha * np.log(tail / x_min)
    diff = power - lognormal_loglik(best.x)
    ratio = diff.sum() / (math.sqrt(tail.size) * diff.std())
    p_value = math.erfc(abs(ratio) / math.sqrt(2))
    assert result.vs_lognormal.ratio == pytest.approx(ratio, rel=1e-3)
    assert result.vs_lognormal.p_value == pytest.approx(p_value, rel=1e-2, abs=1e-12)
    rate = 1 / (tail - x_min).mean()  # the exponential's closed-form MLE on the shifted tail
    assert result.vs_exponential.parameters[0] == pytest.approx(rate, rel=1e-3)


def test_p_value_is_seeded_and_optional():
    data = exact_discrete_power_law(2.5, 2, 500, seed=50)
    one = metrics.fit_power_law(data, resamples=30, seed=3)
    assert one == metrics.fit_power_law(data, resamples=30, seed=3)
    assert math.isnan(fit(data).p_value) and fit(data).resamples == 0


@pytest.mark.parametrize(
    "kwargs,error",
    [
        (dict(sizes=[]), DataFormatError),
        (dict(sizes=[1.0, float("nan")]), DataFormatError),
        (dict(sizes=[1.5, 2.0, 3.0]), DataFormatError),
        (dict(sizes=["a"]), DataFormatError),
        (dict(sizes=[1, 2, 3], x_min=0), ConfigError),
        (dict(sizes=[1.0, 2.0], x_min=-1.0, discrete=False), ConfigError),
        (dict(sizes=[1, 2, 3], x_min=float("inf")), ConfigError),
        (dict(sizes=[1, 2, 3], x_min=3), DataFormatError),
        (dict(sizes=[2.0, 2.0], x_min=2.0, discrete=False), DataFormatError),
        (dict(sizes=[2, 2, 2], x_min=2), DataFormatError),
        (dict(sizes=[1, 2, 3]), DataFormatError),
        (dict(sizes=[1, 2, 3], min_tail=1), ConfigError),
        (dict(sizes=[1, 2, 3], discrete=1), ConfigError),
        (dict(sizes=[1, 2, 3], resamples=-1), ConfigError),
        (dict(sizes=[1, 2, 3], resamples=2.5), ConfigError),
        (dict(sizes=[1, 2, 3], seed="0"), ConfigError),
    ],
)
def test_power_law_bad_input(kwargs, error):
    with pytest.raises(error, match="Expected"):
        metrics.fit_power_law(**kwargs)
