"""Bootstrap intervals of differences (lpm.uncertainty.difference_interval): coverage, pairing, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from lpm.errors import ConfigError
from lpm.uncertainty import difference_interval


def coverage(draw, truth: float, paired: bool, repetitions: int = 300, seeds: int = 24) -> float:
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(repetitions):
        arm, base = draw(rng, seeds)
        low, high = difference_interval(arm, base, paired=paired, level=0.9, resamples=1500, rng=rng)
        hits += low <= truth <= high
    return hits / repetitions


def test_paired_interval_covers_the_true_difference():
    """Paired normal differences (a shared per-seed baseline of large spread, an effect of 0.5 with
    unit noise): the 90% interval covers the true mean difference 85-95% of the time."""
    def draw(rng, n):
        base = rng.normal(10.0, 5.0, n)
        return base + rng.normal(0.5, 1.0, n), base
    assert 0.85 <= coverage(draw, 0.5, paired=True) <= 0.95


def test_unpaired_interval_covers_the_true_difference():
    """Two independent normal samples of unequal spread (each resampled on its own: more seeds are
    needed, 0.84 at 24 seeds each, percentile and BCa alike)."""
    def draw(rng, n):
        return rng.normal(1.5, 2.0, n), rng.normal(1.0, 1.0, n)
    assert 0.85 <= coverage(draw, 0.5, paired=False, seeds=48) <= 0.95


def test_pairing_narrows_the_interval_of_correlated_runs():
    rng = np.random.default_rng(1)
    base = rng.normal(10.0, 5.0, 32)
    arm = base + rng.normal(0.5, 1.0, 32)
    paired = difference_interval(arm, base, paired=True, rng=np.random.default_rng(0))
    unpaired = difference_interval(arm, base, paired=False, rng=np.random.default_rng(0))
    assert paired[0] < arm.mean() - base.mean() < paired[1]
    assert (unpaired[1] - unpaired[0]) > 3 * (paired[1] - paired[0])


def test_degenerate_samples_give_the_point():
    base = np.array([3.0, 5.0, 4.0])
    assert difference_interval(base + 2.0, base, paired=True, rng=np.random.default_rng(0)) == (2.0, 2.0)
    assert difference_interval(np.full(4, 2.0), np.ones(4), paired=False, rng=np.random.default_rng(0)) == (1.0, 1.0)
    assert difference_interval(np.array([7.0]), np.array([4.0]), paired=True, rng=np.random.default_rng(0)) == (3.0, 3.0)


def test_seeded():
    rng = np.random.default_rng(2)
    arm, base = rng.lognormal(0, 1, 10), rng.lognormal(0, 1, 10)
    first = difference_interval(arm, base, paired=True, rng=np.random.default_rng(5))
    assert first == difference_interval(arm, base, paired=True, rng=np.random.default_rng(5))


@pytest.mark.parametrize("kwargs", [dict(level=1.0), dict(level=0.0), dict(resamples=0), dict(resamples=1.5),
                                    dict(arm=np.ones(3), base=np.ones(4)), dict(arm=np.ones((2, 2)), base=np.ones((2, 2))),
                                    dict(arm=np.array([]), base=np.array([]))])
def test_bad_input(kwargs):
    args = dict(arm=np.arange(4.0), base=np.ones(4), paired=True, rng=np.random.default_rng(0)) | kwargs
    with pytest.raises(ConfigError, match="Expected"):
        difference_interval(**args)
