"""PopulationState and Traits: validation at the boundary, samplers, views."""

from __future__ import annotations

import pytest
import torch

from lpm.errors import StateError
from lpm.state import PopulationState, Traits


def test_sample_is_seeded_and_in_range():
    a = PopulationState.sample(1000, seed=3, batch=2, topics=3, opinion="bimodal")
    b = PopulationState.sample(1000, seed=3, batch=2, topics=3, opinion="bimodal")
    assert torch.equal(a.opinion, b.opinion) and torch.equal(a.traits.baseline_rate, b.traits.baseline_rate)
    assert a.opinion.shape == (2, 1000, 3) and a.emotion.shape == (2, 1000, 2) and a.activity.shape == (2, 1000)
    assert a.opinion.abs().max() <= 1
    assert torch.equal(a.opinion[0], a.opinion[1])  # scenarios share a population
    rate = a.traits.baseline_rate[0]
    assert abs(float(rate.mean()) - 1) < 0.15 and float(rate.max()) > 5 * float(rate.median())  # heavy tail
    assert 0 <= float(a.traits.susceptibility.min()) and float(a.traits.susceptibility.max()) <= 1
    # bimodal: two camps, few agents near 0
    assert float((a.opinion[0, :, 0].abs() < 0.1).float().mean()) < 0.2


def test_views_expand_select_permute_flat():
    s = PopulationState.sample(50, seed=0)
    big = s.expand_batch(4)
    assert big.batch_size == 4 and torch.equal(big.select(2).opinion, s.opinion)
    perm = torch.randperm(50)
    p = s.permute(perm)
    assert torch.equal(p.opinion[0, perm], s.opinion[0])
    assert torch.equal(p.traits.stubbornness[0, perm], s.traits.stubbornness[0])
    again = PopulationState.from_flat(s.flat())
    assert all(torch.equal(x, y) for x, y in zip(again.flat(), s.flat()))
    assert s.to(dtype=torch.float64).opinion.dtype == torch.float64


def _opinion(*shape, value=0.5, dtype=torch.float32):
    return torch.full(shape, value, dtype=dtype)


@pytest.mark.parametrize("make, match", [
    (lambda: PopulationState.create(_opinion(5, 3), _opinion(1, 5, 2)), r"shape \(B, N, T\)"),
    (lambda: PopulationState.create(_opinion(1, 5, 1, value=1.5), _opinion(1, 5, 2)), r"'opinion' in \[-1.0, 1.0\]"),
    (lambda: PopulationState.create(_opinion(1, 5, 1, value=float("nan")), _opinion(1, 5, 2)), "finite"),
    (lambda: PopulationState.create(_opinion(1, 5, 1), _opinion(1, 4, 2)), r"'emotion' of shape \(1, 5, E\)"),
    (lambda: PopulationState.create(_opinion(1, 5, 1), _opinion(1, 5, 2, dtype=torch.float64)), "dtype"),
    (lambda: PopulationState.create(_opinion(1, 5, 1).long(), _opinion(1, 5, 2)), "floating point"),
    (lambda: PopulationState.create(_opinion(1, 5, 1), _opinion(1, 5, 2), activity=_opinion(1, 5, value=-1.0)), "'activity' in"),
    (lambda: PopulationState.create(_opinion(1, 5, 1), _opinion(1, 5, 2), activity=_opinion(1, 4)), r"'activity' of shape \(1, 5\)"),
    (lambda: PopulationState.create(_opinion(1, 5, 1), _opinion(1, 5, 2), traits=Traits.uniform(5, susceptibility=2.0)), "susceptibility"),
    (lambda: PopulationState.create(_opinion(1, 5, 1), _opinion(1, 5, 2), traits=Traits.uniform(4)), r"traits.susceptibility' of shape \(1, 5\)"),
    (lambda: PopulationState.create(_opinion(1, 5, 1), _opinion(1, 5, 2), traits="x"), "lpm.Traits"),
    (lambda: PopulationState.sample(0, seed=0), "positive"),
    (lambda: PopulationState.sample(10, seed=0, opinion="gaussian"), "uniform' or 'bimodal"),
])
def test_bad_state_raises_typed_error(make, match):
    with pytest.raises(StateError, match=match):
        make()
