"""Sentiment and stance targets: one code path for data and simulations, and their losses."""

from __future__ import annotations

import math

import pytest
import torch

from lpm.errors import ConfigError, DataFormatError
from lpm.targets_series import (STANCES, ExpectedEvents, bin_membership, binned_counts, daily_totals, mae, nrmse,
                                pearson, sentiment_targets, smooth_mae, stance_kl, stance_mae, stance_shares)

NAN = float("nan")


def test_daily_totals_sums_whole_days():
    per_step = torch.arange(12.0).reshape(2, 6)  # 2 series, 3 days of 2 steps
    assert torch.equal(daily_totals(per_step, 2), torch.tensor([[1.0, 5.0, 9.0], [13.0, 17.0, 21.0]]))
    with pytest.raises(ConfigError, match="whole number of days"):
        daily_totals(per_step, 4)


def test_sentiment_targets_normalise_by_anchor_and_mask_thin_days():
    posts = torch.tensor([10.0, 40.0, 20.0, NAN, 2.0])
    negative = torch.tensor([5.0, 30.0, 10.0, NAN, 2.0])
    out = sentiment_targets(posts, negative, anchor=1, min_posts=5)
    assert torch.allclose(out.volume[[0, 1, 2, 4]], torch.tensor([0.25, 1.0, 0.5, 0.05]))
    assert math.isnan(out.volume[3])
    assert torch.allclose(out.negative_share[:3], torch.tensor([0.5, 0.75, 0.5]))
    assert math.isnan(out.negative_share[3]) and math.isnan(out.negative_share[4])  # missing; too few posts
    with pytest.raises(ConfigError, match="anchor"):
        sentiment_targets(posts, negative, anchor=5)
    with pytest.raises(ConfigError, match="one shape"):
        sentiment_targets(posts, negative[:3], anchor=0)


def test_binned_counts_same_statistic_for_data_and_simulation():
    edges = (0.0, 1.0, 3.0)
    # data: four replies with one-hot stances, two groups; one reply past the last edge is dropped
    times = torch.tensor([0.2, 0.9, 2.0, 2.5, 7.0], dtype=torch.float64)
    stance = torch.tensor([0, 3, 1, 3, 0])
    groups = torch.tensor([0, 0, 0, 1, 1])
    onehot = torch.nn.functional.one_hot(stance, 4).double()
    counts = binned_counts(times, onehot, edges, groups=groups, num_groups=2)
    expected = torch.zeros(2, 2, 4, dtype=torch.float64)
    expected[0, 0, 0] = expected[0, 0, 3] = expected[0, 1, 1] = expected[1, 1, 3] = 1
    assert torch.equal(counts, expected)
    # simulation: expected replies per step (batch of 2 scenarios) at step mid-times
    steps = torch.tensor([0.5, 1.5, 2.5], dtype=torch.float64)
    weights = torch.rand(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sim = binned_counts(steps, weights, edges)
    assert torch.allclose(sim[:, 0], weights[:, 0]) and torch.allclose(sim[:, 1], weights[:, 1] + weights[:, 2])
    assert bin_membership(torch.tensor([-0.1, 3.0, NAN]), edges).sum() == 0
    with pytest.raises(ConfigError, match="increasing"):
        bin_membership(times, (0.0, 0.0))


def test_stance_shares_nan_for_empty_bins():
    counts = torch.tensor([[1.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    shares = stance_shares(counts)
    assert torch.allclose(shares[0], torch.tensor([0.25, 0.25, 0.0, 0.5]))
    assert torch.isnan(shares[1]).all()
    assert STANCES == ("support", "deny", "query", "comment")


def test_series_metrics_hand_computed():
    sim = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    obs = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)
    # r = cov / sqrt(var var) = 0.5 / sqrt(2/3 * 1/2) = sqrt(3) / 2
    assert float(pearson(sim, obs)) == pytest.approx(math.sqrt(3) / 2)
    assert float(nrmse(sim, obs)) == pytest.approx(math.sqrt(0.25 / 3) / 1.0)
    gappy = torch.tensor([0.5, NAN, 0.2], dtype=torch.float64)
    assert float(mae(sim, gappy)) == pytest.approx((0.5 + 0.2) / 2)
    delta = 0.01
    expected = (math.sqrt(0.25 + delta**2) - delta + math.sqrt(0.04 + delta**2) - delta) / 2
    assert float(smooth_mae(sim, gappy, delta)) == pytest.approx(expected)
    with pytest.raises(DataFormatError, match="one shape"):
        mae(sim, gappy[:2])


def test_losses_have_finite_gradients_at_a_perfect_fit_and_ignore_missing():
    obs = torch.tensor([0.2, NAN, 1.0, 0.4], dtype=torch.float64)
    sim = torch.tensor([0.2, 0.7, 1.0, 0.4], dtype=torch.float64, requires_grad=True)
    loss = nrmse(sim, obs) + smooth_mae(sim, obs)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-8)
    assert torch.isfinite(sim.grad).all() and float(sim.grad[1]) == 0.0


def test_stance_kl_is_zero_at_a_perfect_fit_and_weighs_bins_by_replies():
    counts = torch.tensor([[[1.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    perfect = torch.nan_to_num(stance_shares(counts), nan=0.25)
    assert float(stance_kl(perfect, counts)) == pytest.approx(0.0, abs=1e-12)
    sim = torch.tensor([[[0.25, 0.25, 0.0, 0.5], [0.25, 0.25, 0.25, 0.25]]], dtype=torch.float64)
    # 3 comments at 0.75 observed vs 0.5 simulated; the empty bin does not count
    assert float(stance_kl(sim, counts)) == pytest.approx(3 * math.log(1.5) / 4)
    assert float(stance_mae(sim, counts)[0]) == pytest.approx((0.25 + 0.25) / 4)


def test_expected_events_is_the_mean():
    prob = torch.tensor([0.1, 0.9], requires_grad=True)
    events, log_prob = ExpectedEvents().sample(prob, torch.tensor([0.5, 0.5]))
    assert events is prob and log_prob is None
