"""Discrete-event estimators: values, and gradients against exact derivatives of expectations."""

from __future__ import annotations

import pytest
import torch

from lpm import relax
from lpm.errors import ConfigError


def _draws(shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("estimator", [relax.Hard(), relax.StraightThrough(), relax.ScoreFunction(),
                                       relax.RelaxedBernoulli(0.5, hard=True)])
def test_forward_is_the_exact_sample(estimator):
    p = _draws((3, 1000), 1)
    u = _draws((3, 1000), 2)
    y, _ = estimator.sample(p, u)
    assert torch.equal(y.detach(), (u < p).double())
    assert relax.exact_events(estimator)


@pytest.mark.parametrize("estimator", [relax.Expected(), relax.RelaxedBernoulli(0.5)])
def test_probabilities_and_relaxed_values_are_not_exact_events(estimator):
    p = _draws((3, 1000), 1)
    y, _ = estimator.sample(p, _draws((3, 1000), 2))
    assert not torch.equal(y.detach(), (y.detach() > 0.5).double())  # values strictly between 0 and 1
    assert not relax.exact_events(estimator)


def test_relaxed_tends_to_hard_sample_from_same_draws():
    p = _draws((2, 5000), 3)
    u = _draws((2, 5000), 4)
    y, _ = relax.RelaxedBernoulli(1e-3).sample(p, u)
    hard = (u < p).double()
    # away from the decision boundary logit(p) = logit(u) the relaxation is saturated
    margin = (torch.logit(p) - torch.logit(u)).abs() > 0.05
    assert torch.allclose(y[margin], hard[margin], atol=1e-6)


def test_relaxed_gradcheck():
    p = _draws((2, 7), 5).clamp(0.05, 0.95).requires_grad_()
    u = _draws((2, 7), 6)
    assert torch.autograd.gradcheck(lambda p: relax.RelaxedBernoulli(0.7).sample(p, u)[0], (p,))


def test_straight_through_gradient_is_identity():
    p = _draws((4, 6), 7).requires_grad_()
    y, _ = relax.StraightThrough().sample(p, _draws((4, 6), 8))
    (y * torch.arange(6.0, dtype=torch.float64)).sum().backward()
    assert torch.equal(p.grad, torch.arange(6.0, dtype=torch.float64).expand(4, 6))


def test_score_function_gradient_unbiased():
    """d/dp E[f(y)] = f(1) - f(0) for y ~ Bernoulli(p); the DiCE estimate converges to it."""
    draws = 200_000
    p = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    u = _draws((draws, 1), 9)
    y, log_prob = relax.ScoreFunction().sample(p.expand(draws, 1), u)
    f = 3.0 * y[:, 0] + 1.0  # f(1) - f(0) = 3
    (f * relax.magic_box(log_prob)).mean().backward()
    # per-draw estimator variance = Var(f * dlogp) <= 9 / (p (1 - p)) ~ 43 -> s.e. ~ 0.015; 0.08 is > 5 s.e.
    assert abs(p.grad.item() - 3.0) < 0.08


def test_relaxed_mean_gradient_close_to_exact():
    """At moderate temperature the relaxed gradient of E[y] is close to the exact dE[y]/dp = 1."""
    p = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    y, _ = relax.RelaxedBernoulli(0.3).sample(p.expand(400_000), _draws(400_000, 10))
    y.mean().backward()
    assert 0.8 < p.grad.item() < 1.2


def test_magic_box_value_is_one():
    lp = torch.randn(5, dtype=torch.float64)
    assert torch.equal(relax.magic_box(lp), torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_relaxed_rejects_bad_temperature(bad):
    with pytest.raises(ConfigError, match="temperature"):
        relax.RelaxedBernoulli(bad)


def test_score_function_log_prob_gradcheck():
    """The score is d log P(y) / dp with y held fixed: checked against finite differences."""
    p = _draws((3, 5), 11).clamp(0.05, 0.95).requires_grad_()
    u = _draws((3, 5), 12)
    assert torch.autograd.gradcheck(lambda p: relax.ScoreFunction().sample(p, u)[1], (p,))
